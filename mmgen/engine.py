"""A lean inference engine for our Llama weights: static KV cache, explicit positions, rollback.

Why hand-written: at the shipped size the work per token is tiny (a few MFLOP), so on a CPU the
time of one decoding step is almost all per-call overhead. `transformers`' generic forward
rebuilds masks, walks cache objects and dispatches through many layers of Python each step
(benchmarks/generate.py measures both). Here one step is the bare maths — fused QKV and
gate/up projections, RoPE from a precomputed table, K/V written in place into a preallocated
cache, SDPA — on the very same weights (no copy but the fused matrices). The cache is a
plain tensor, so rolling back rejected speculative tokens is just moving a length.

    engine = Engine(model, batch=2, max_len=2048)
    logits = engine.prefill(ids, pad)        # ids [B, T] left-padded; pad[b] = pad slots of row b
    logits = engine.step(new_ids)            # [B, T_new, V]: appends T_new tokens to every row
    engine.rollback(3)                       # forget the last three positions (speculative rollback)

    other.lay_out(pad, length, filler)       # rows laid out for prompts copied in, not prefilled:
    other.copy_row(engine, 0, rows=range(2)) # rows 0-1 take engine's row 0 as it stands

Equivalence with `LlamaForCausalLM` is tested (tests/test_engine.py).

`weights="int8"` also keeps every projection's weight as int8 with one scale per output channel
(symmetric, absmax / 127), used by passes of a few rows: a decoding step reads each weight once,
so a quarter of fp32's bytes is what makes it fast on CPUs without native bf16 (AVX2), where
fp32 is the only other fast choice. Activations stay in the engine's dtype; only the matmul's
input is rounded to bf16, the kernel's fast path. The matmul is torch's weight-only int8 kernel
(`torch._weight_int8pack_mm`, the one torchao's int8 weight-only mode calls on CPU); written
here rather than through torchao because our projections are fused tensors, not nn.Linear
modules. benchmarks/quantization.py measures what it costs and gains per pass,
benchmarks/generate.py per picture.

`weights="fp16"` keeps every projection as fp16 packed once for FBGEMM's fp16 GEMM (Fp16Weight):
half fp32's bytes, fp32 maths, and no repacking per call. On AVX2 CPUs it is the fastest choice
for every pass of 9 rows or more and equal to fp32 in held-out loss to 4 decimals; int8 still
wins the 2-row steps of plain decoding. pipeline.pick_weights chooses.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from .model import StreamEmbedding

WEIGHTS = ("native", "int8", "fp16")
INT8_MAX_ROWS = 18     # passes of more rows (B·T) than this use the float weights (Int8Weight.full): one
                       # picture's verify pass (2 rows × 9) is int8, a batch's (8 × 9) and a prefill float
NEG_LOGIT = -1e30      # logits not computed (engine.step's `vocab`): finite, so guidance's u + s·(c − u) stays finite
INT8_MAX = 127


def int8_available() -> bool:
    """Whether this torch build has the weight-only int8 matmul (a private op; absent, we never quantize)."""
    return hasattr(torch, "_weight_int8pack_mm")


def fp16_available() -> bool:
    """Whether this torch build has FBGEMM's fp16-weight matmul (x86 builds do)."""
    return (hasattr(torch.ops.quantized, "linear_prepack_fp16")
            and "fbgemm" in torch.backends.quantized.supported_engines)


class Int8Weight:
    """A [out, in] weight as int8 rows and one bf16 scale per row: w ≈ q · scale[:, None].

    `full`, when kept, is the weight itself, for passes of more than INT8_MAX_ROWS rows: the
    int8 kernel's time grows with the rows it multiplies much faster than a float GEMM's does
    (2-3x faster than fp32 for 1-4 rows, about even at 18, 0.7x at 72: benchmarks/quantization.py),
    so a prefill or a batch's verify pass reads the float weights instead."""

    def __init__(self, w: torch.Tensor, full: torch.Tensor | None = None):
        self.full = full
        w = w.detach().float()
        # the kernel takes bf16 scales: round the scale first, so q is chosen for the scale it gets
        self.scale = (w.abs().amax(dim=1) / INT8_MAX).clamp(min=1e-30).to(torch.bfloat16)
        self.q = (w / self.scale.float()[:, None]).round().clamp(-INT8_MAX, INT8_MAX).to(torch.int8).contiguous()

    @classmethod
    def rows(cls, w: "Int8Weight", lo: int, hi: int) -> "Int8Weight":
        """Rows lo..hi-1 (their own contiguous copy; the scales are per row, so nothing changes)."""
        part = cls.__new__(cls)
        part.q, part.scale = w.q[lo:hi].contiguous(), w.scale[lo:hi].contiguous()
        part.full = None if w.full is None else w.full[lo:hi]
        return part

    def dequantize(self) -> torch.Tensor:
        return self.q.float() * self.scale.float()[:, None]


class Fp16Weight:
    """A [out, in] weight rounded to fp16 and packed for FBGEMM's fp16 GEMM, which widens it to
    fp32 inside its AVX2 kernel: fp32 maths on half the bytes.

    Why this and not F.linear on fp32 weights: for the few-row passes of decoding, the fp32 GEMM
    repacks the weight on every call and ran at 3-30 GFLOP/s here; FBGEMM packs once, at load.
    Measured on one 2048 × 384 projection (2 threads, AVX2): 0.12 / 0.34 / 0.97 ms for 2 / 18 / 72
    rows, against F.linear's 0.9 / 0.8-1.1 / 1.5 ms and the int8 kernel's 0.08 / 0.60 / 2.3 ms, so
    it is the fastest from a verify pass up; relative error 2e-4 (fp16's rounding), against int8's
    8e-3. benchmarks/quantization.py and benchmarks/generate.py measure it whole."""

    def __init__(self, w: torch.Tensor):
        self.w = w.detach().float().contiguous()            # kept for rows(): the output layer's slices
        self.packed = torch.ops.quantized.linear_prepack_fp16(self.w, None)

    @classmethod
    def rows(cls, w: "Fp16Weight", lo: int, hi: int) -> "Fp16Weight":
        return cls(w.w[lo:hi])


def linear(x: torch.Tensor, w, bias: torch.Tensor | None = None) -> torch.Tensor:
    """F.linear for a plain weight, an Int8Weight or an Fp16Weight (x [..., in] → [..., out])."""
    if isinstance(w, Fp16Weight):
        # the overload itself: the packet's __call__ checks every argument in Python first (~10 µs a call)
        y = torch.ops.quantized.linear_dynamic_fp16.default(x.float().contiguous(), w.packed).to(x.dtype)
        return y if bias is None else y + bias
    if isinstance(w, Int8Weight):
        if w.full is not None and x.numel() > INT8_MAX_ROWS * x.shape[-1]:
            return F.linear(x, w.full, bias)
        # the kernel's fast path takes bf16 inputs (fp32 ones are ~10x slower); the rest of the
        # engine stays in its own dtype, since bf16 attention and norms are slow without native bf16
        y = torch._weight_int8pack_mm(x.reshape(-1, x.shape[-1]).to(torch.bfloat16), w.q, w.scale)
        y = y.view(*x.shape[:-1], -1).to(x.dtype)
        return y if bias is None else y + bias
    return F.linear(x, w, bias)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    # as LlamaRMSNorm: normalise in fp32, scale in the input dtype (F.rms_norm: one fused op, not five)
    if x.dtype == torch.float32:
        return F.rms_norm(x, (x.shape[-1],), weight, eps=eps)     # the weight inside: one op fewer
    return weight * F.rms_norm(x.float(), (x.shape[-1],), eps=eps).to(x.dtype)


def rope(x: torch.Tensor, cos: torch.Tensor, signed_sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding, as transformers' x·cos + rotate_half(x)·sin with rotate_half(x) =
    [−x₂, x₁]: rolling x by half its width gives [x₂, x₁], and the sign lives in `signed_sin`
    (= [−sin, sin] per half), so a rotation is four ops instead of seven."""
    return x * cos + x.roll(x.shape[-1] // 2, dims=-1) * signed_sin


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Grouped-query attention: q [B, H, T, D], k/v [B, KV, S, D], bias [B, 1, T, S] (0 where a key
    is visible, -inf where not; built once per pass, not once per layer).

    SDPA with `enable_gqa` reads each key/value head for its G query heads without copying it G
    times (as transformers' repeat_kv would). q arrives already scaled by D^-0.5 (folded into the
    engine's query weights), hence scale=1. Timed against the ops written out (matmul, mask,
    softmax, matmul) on this project's CPUs, 2 threads, fp32, 300 keys: 205 against 356 µs for a
    verify pass's 9 queries, 76 against 147 µs for one; a boolean mask instead of the additive
    one costs 10 % more. Equal to transformers' SDPA forward (tests/test_engine.py)."""
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=1.0, enable_gqa=True)


class Engine:
    def __init__(self, model, *, batch: int, max_len: int | None = None, dtype: torch.dtype | None = None,
                 weights: str = "native"):
        if weights not in WEIGHTS:
            raise ValueError(f"weights must be one of {WEIGHTS}, not {weights!r}")
        if weights == "int8" and not int8_available():
            raise ValueError("this torch build has no weight-only int8 matmul (torch._weight_int8pack_mm)")
        if weights == "fp16" and not fp16_available():
            raise ValueError("this torch build has no FBGEMM fp16 matmul (torch.ops.quantized.linear_prepack_fp16)")
        cfg = model.config
        self.config = cfg
        self.device = next(model.parameters()).device
        self.weights = weights
        self.dtype = dtype or next(model.parameters()).dtype
        self.n_heads = cfg.num_attention_heads
        self.n_kv = cfg.num_key_value_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        self.eps = cfg.rms_norm_eps
        self.max_len = max_len or cfg.max_position_embeddings
        self.batch = batch
        m = model.model
        cast = lambda t: t.detach().to(self.dtype)   # noqa: E731
        # the projections: int8 rows + scales, or the model's weights in the engine's dtype
        project = {"int8": lambda t: Int8Weight(t, full=cast(t)), "fp16": Fp16Weight}.get(weights, cast)
        self.embed = cast(m.embed_tokens.weight)
        # image codes get row/column vectors (model.StreamEmbedding); a code's place in its picture
        # comes from the ids before it, so the engine keeps every row's ids
        self.image_embedding = m.embed_tokens if isinstance(m.embed_tokens, StreamEmbedding) else None
        self.lookup_tables = None if self.image_embedding is None else self.image_embedding.lookup_tables(self.dtype)
        self.lm_head = project(model.lm_head.weight)
        self.vocab_size = model.lm_head.weight.shape[0]
        self._head_slices: dict = {}          # (lo, hi) → those rows of the output layer
        self.final_norm = cast(m.norm.weight)
        self.layers = []
        # attention's 1/√D folded into the query projection (RoPE is linear, so it commutes): one
        # op less per layer and step; exact in bf16 when D is a power of 4 (64: × 0.125)
        scale = self.head_dim ** -0.5
        for layer in m.layers:
            a, mlp = layer.self_attn, layer.mlp
            self.layers.append({
                "in_norm": cast(layer.input_layernorm.weight),
                "qkv": project(torch.cat([a.q_proj.weight * scale, a.k_proj.weight, a.v_proj.weight])),
                "qkv_bias": None if a.q_proj.bias is None else cast(torch.cat([a.q_proj.bias * scale, a.k_proj.bias, a.v_proj.bias])),
                "o": project(a.o_proj.weight),
                "post_norm": cast(layer.post_attention_layernorm.weight),
                "gate_up": project(torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight])),
                "down": project(mlp.down_proj.weight),
            })
        # RoPE table for every position (default rope type, as LlamaRotaryEmbedding)
        inv_freq = model.model.rotary_emb.inv_freq.float().to(self.device)
        scaling = getattr(model.model.rotary_emb, "attention_scaling", 1.0)
        t = torch.arange(self.max_len, device=self.device, dtype=torch.float32)
        freqs = torch.outer(t, inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        self.cos = (emb.cos() * scaling).to(self.dtype)
        half = emb.shape[-1] // 2
        sign = torch.cat([-torch.ones(half, device=self.device), torch.ones(half, device=self.device)])
        self.signed_sin = (emb.sin() * scaling * sign).to(self.dtype)   # see rope()
        shape = (len(self.layers), batch, self.n_kv, self.max_len, self.head_dim)
        self.k_cache = torch.zeros(shape, dtype=self.dtype, device=self.device)
        self.v_cache = torch.zeros(shape, dtype=self.dtype, device=self.device)
        self.slots = torch.arange(self.max_len, device=self.device)
        self.length = 0                                   # cache slots filled (same for every row)
        self.ids = torch.zeros(batch, self.max_len, dtype=torch.long, device=self.device)   # what fills them
        self.pad = torch.zeros(batch, dtype=torch.long, device=self.device)
        self.prefills = 0                                 # prefills run, and the prompt tokens they read
        self.prefilled_tokens = 0

    def sibling(self) -> "Engine":
        """An engine over these very weight tensors (nothing copied) with a cache of its own: a second
        set of rows of the same batch size decoding alongside this one (generate.word_twin_engine); the
        output layer's slices are shared too."""
        other = copy.copy(self)
        other.k_cache, other.v_cache = torch.zeros_like(self.k_cache), torch.zeros_like(self.v_cache)
        other.ids, other.pad = torch.zeros_like(self.ids), torch.zeros_like(self.pad)
        other.length, other.prefills, other.prefilled_tokens = 0, 0, 0
        return other

    # --- the maths of one pass ------------------------------------------------------------------
    def _forward(self, ids: torch.Tensor, all_logits: bool, vocab: tuple[int, int] | None = None) -> torch.Tensor:
        B, T = ids.shape
        start = self.length
        if start + T > self.max_len:
            raise ValueError(f"the context holds {self.max_len} positions; {start + T} asked")
        slots = self.slots[start:start + T]                               # [T]
        positions = (slots[None, :] - self.pad[:, None]).clamp(min=0)     # [B, T]: real tokens before
        cos, sin = self.cos[positions][:, None], self.signed_sin[positions][:, None]   # [B, 1, T, D]
        # key k is visible to query q when k ≤ q (causal) and k is not a pad slot of that row;
        # a pad slot sees itself, so no row of scores is all -inf (that softmax would be NaN)
        keys = self.slots[:start + T]
        mask = (keys[None, None, :] <= slots[None, :, None]) & (
            (keys[None, None, :] >= self.pad[:, None, None]) | (keys[None, None, :] == slots[None, :, None]))
        bias = torch.zeros(mask.shape, dtype=self.dtype, device=self.device).masked_fill_(~mask, float("-inf"))
        bias = bias[:, None]                                              # [B, 1, T, S], shared by every layer
        x = F.embedding(ids, self.embed)
        if self.image_embedding is not None:
            e = self.image_embedding
            self.ids[:B, start:start + T] = ids
            x = x + e.additions(self.ids[:B, :start + T], self.dtype, last=T, tables=self.lookup_tables)
        H, KV, D = self.n_heads, self.n_kv, self.head_dim
        for i, w in enumerate(self.layers):
            h = rms_norm(x, w["in_norm"], self.eps)
            qkv = linear(h, w["qkv"], w["qkv_bias"]).view(B, T, H + 2 * KV, D).transpose(1, 2)
            qk = rope(qkv[:, :H + KV], cos, sin)                           # queries and keys rotated at once
            q, k, v = qk[:, :H], qk[:, H:], qkv[:, H + KV:]
            self.k_cache[i, :B, :, start:start + T] = k                   # written in place
            self.v_cache[i, :B, :, start:start + T] = v
            attn = attention(q, self.k_cache[i, :B, :, :start + T], self.v_cache[i, :B, :, :start + T], bias)
            x = x + linear(attn.transpose(1, 2).reshape(B, T, H * D), w["o"])
            h = rms_norm(x, w["post_norm"], self.eps)
            gate, up = linear(h, w["gate_up"]).chunk(2, dim=-1)
            x = x + linear(F.silu(gate, inplace=True).mul_(up), w["down"])   # in place: gate is a fresh tensor
        self.length = start + T
        x = rms_norm(x if all_logits else x[:, -1:], self.final_norm, self.eps)
        if vocab is None:
            return linear(x, self.lm_head)
        return self._head_slice(x, *vocab)

    def _head_slice(self, x: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
        """Logits of ids lo..hi-1 only; the rest NEG_LOGIT. Inside a picture only codes may come
        and outside one no code may, so the sampler never reads the rest: the output layer, a
        fifth of the weights, is half read."""
        head = self._head_slices.get((lo, hi))
        if head is None:
            w = self.lm_head
            head = type(w).rows(w, lo, hi) if isinstance(w, (Int8Weight, Fp16Weight)) else w[lo:hi]
            self._head_slices[(lo, hi)] = head
        out = x.new_full((*x.shape[:-1], self.vocab_size), NEG_LOGIT)
        out[..., lo:hi] = linear(x, head)
        return out

    # --- the public calls -----------------------------------------------------------------------
    @torch.inference_mode()
    def prefill(self, ids: torch.Tensor, pad: torch.Tensor | None = None, *, all_logits: bool = False,
                vocab: tuple[int, int] | None = None) -> torch.Tensor:
        """Start over with left-padded prompts `ids` [B, T]; returns the last logits [B, V]
        (with `all_logits`, every position's [B, T, V]: scoring a whole sequence). `vocab`
        (lo, hi): only those ids' logits are computed, the rest are NEG_LOGIT."""
        B = ids.shape[0]
        if B > self.batch:
            raise ValueError(f"the engine was built for {self.batch} rows, got {B}")
        self.length = 0
        self.pad = torch.zeros(B, dtype=torch.long, device=self.device) if pad is None else pad.to(self.device)
        logits = self._forward(ids.to(self.device), all_logits=all_logits, vocab=vocab).float()
        self.prefills += 1
        self.prefilled_tokens += int(ids.numel() - self.pad.sum())
        return logits if all_logits else logits[:, -1]

    @torch.inference_mode()
    def step(self, ids: torch.Tensor, vocab: tuple[int, int] | None = None) -> torch.Tensor:
        """Append `ids` [B, T] to every row; logits of each new position [B, T, V] (of `vocab`'s
        ids only when given, as in prefill)."""
        return self._forward(ids.to(self.device), all_logits=True, vocab=vocab).float()

    @torch.inference_mode()
    def extend(self, ids: torch.Tensor, vocab: tuple[int, int] | None = None) -> torch.Tensor:
        """Append `ids` [B, T] to every row as `step` does, but return only the last logits [B, V]:
        a prompt's tail read on top of a cached head."""
        return self._forward(ids.to(self.device), all_logits=False, vocab=vocab).float()[:, -1]

    def rollback(self, k: int) -> None:
        """Forget the last k positions of every row (rejected drafts; a prompt's tail to replace)."""
        if not 0 <= k <= self.length:
            raise ValueError(f"cannot roll back {k} of {self.length} positions")
        self.length -= k

    def real_length(self, row: int) -> int:
        """The tokens row `row` holds, its left padding not counted."""
        return self.length - int(self.pad[row])

    @torch.inference_mode()
    def lay_out(self, pad: torch.Tensor, length: int, filler: int) -> None:
        """Start over with rows of `length` slots, row b left-padded by pad[b], to be filled by
        copy_row rather than a prefill (the pad slots hold `filler`, the id a prefill pads with)."""
        if len(pad) > self.batch or length > self.max_len:
            raise ValueError(f"the engine holds {self.batch} rows of {self.max_len}; asked {len(pad)} of {length}")
        self.pad = pad.to(self.device)
        self.length = length
        self.ids[:len(pad), :length] = filler

    @torch.inference_mode()
    def copy_row(self, source: "Engine", source_row: int, rows: range) -> None:
        """Rows `rows` (laid out by lay_out to end where this row's tokens end) take the K/V of
        `source`'s row `source_row`: the same tokens at the same positions, so nothing is recomputed."""
        n = source.real_length(source_row)
        lo, hi = self.length - n, self.length
        if any(int(self.pad[r]) != lo for r in rows):
            raise ValueError(f"rows {list(rows)} are not laid out for {n} tokens")
        src = slice(int(source.pad[source_row]), source.length)
        dst = slice(rows.start, rows.stop)
        self.k_cache[:, dst, :, lo:hi] = source.k_cache[:, source_row, :, src][:, None]
        self.v_cache[:, dst, :, lo:hi] = source.v_cache[:, source_row, :, src][:, None]
        self.ids[dst, lo:hi] = source.ids[source_row, src]
