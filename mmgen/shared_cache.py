"""One static KV cache shared by many requests: each row at its own length, passes over packed tokens.

The engine (engine.py) keeps one length for all its rows: every row of a batch feeds the same
number of tokens each pass, which suits one request (its CFG rows, its n pictures) but not
several requests at once — each speculates on its own, so one accepts three drafts where another
accepts nine, and a request that arrives later is at another position altogether. Here every row
has its own length, and a pass takes, for each request, its own rows and its own number of
tokens:

    cache = RowCache(engine, rows=32, filler=stream.pad)      # the engine's weights, a cache of its own
    cache.load([4, 5], prefilled, ids, pad)                   # rows 4, 5 take a prompt prefilled elsewhere
    out = cache.step([Feed(rows=[4, 5], ids=new, vocab=codes), Feed(rows=[0], ids=more)])
    cache.lengths[[4, 5]] -= 2                                # rollback, row by row

How a pass runs (`step`): the new tokens of every row are laid out right-aligned in a [R, T] grid
(R rows from the lowest to the highest one fed, T the most tokens any row feeds) and packed: the
matmuls, which are most of the work, see only the N real tokens ([N, hidden]); attention sees the
grid, each row's queries against its own keys (up to its own length, its own left padding
masked), the grid's unused places seeing one key and thrown away. Rows inside the range that feed
nothing cost only their share of attention's grid.

The same request gives the same tokens here as alone up to rounding: a matmul of 32 rows may sum
in another order than one of 2 (the kernels pick their blocking by the row count), and attention
over keys masked past a row's end may too — differences of ~1e-7 in a logit, which change a
sampled id only when its random draw falls that close to a boundary (tests/test_batching.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .engine import Engine, attention, linear, rms_norm, rope

INITIAL_POSITIONS = 512     # per row at first; doubled when a row needs more (an edit's history, long replies)


@dataclass
class Feed:
    """One request's part of a pass: its cache rows, the tokens each feeds [R, T], and the vocabulary
    range (lo, hi) its next ids come from (only those logits are computed; None: all)."""
    rows: list[int]
    ids: torch.Tensor
    vocab: tuple[int, int] | None = None


class RowCache:
    """K/V for `rows` rows of up to `max_len` positions on `engine`'s weights, each row at its own length.

    `filler`: an id that means nothing where it stands (the stream's <pad>): the image embeddings of a
    row are computed with the row right-aligned behind filler, so every row's codes know their place
    (model.StreamEmbedding: where a code sits depends on the ids before it)."""

    def __init__(self, engine: Engine, rows: int, *, filler: int, max_len: int | None = None):
        self.engine = engine
        self.rows = rows
        self.max_len = max_len or engine.max_len
        self.filler = filler
        self.size = 0                    # positions allocated per row: grown on demand (_reserve) up to max_len
        self._reserve(min(INITIAL_POSITIONS, self.max_len))
        self.lengths = torch.zeros(rows, dtype=torch.long, device=engine.device)   # filled slots, per row
        self.pad = torch.zeros(rows, dtype=torch.long, device=engine.device)       # left padding, per row

    def _reserve(self, positions: int) -> None:
        """Room for `positions` per row: a new cache twice as long (or as asked), the old one copied in."""
        if positions <= self.size:
            return
        if positions > self.max_len:
            raise ValueError(f"the context holds {self.max_len} positions; {positions} asked")
        e, size = self.engine, min(self.max_len, max(positions, 2 * self.size))
        shape = (len(e.layers), self.rows, e.n_kv, size, e.head_dim)
        # zeros, not empty: a masked key still meets its query in a product, and garbage could be NaN
        k = torch.zeros(shape, dtype=e.dtype, device=e.device)
        v = torch.zeros(shape, dtype=e.dtype, device=e.device)
        ids = torch.full((self.rows, size), self.filler, dtype=torch.long, device=e.device)
        if self.size:
            k[..., :self.size, :], v[..., :self.size, :] = self.k, self.v
            ids[:, :self.size] = self.ids
        self.k, self.v, self.ids, self.size = k, v, ids, size

    def room(self, rows: list[int]) -> int:
        """How many more positions the fullest of `rows` can take."""
        return self.max_len - int(self.lengths[rows].max())

    @torch.inference_mode()
    def load(self, rows: list[int], prefilled: Engine, ids: torch.Tensor, pad: torch.Tensor) -> None:
        """Rows `rows` take the prompts `ids` [R, L] (left-padded by `pad` [R]) whose K/V `prefilled`
        holds in its first R rows — "prefill once, then copy"."""
        R, L = ids.shape
        self._reserve(L)
        index = torch.tensor(rows, dtype=torch.long, device=self.engine.device)
        self.k[:, index, :, :L] = prefilled.k_cache[:, :R, :, :L]
        self.v[:, index, :, :L] = prefilled.v_cache[:, :R, :, :L]
        self.ids[index, :L] = ids.to(self.ids.device)
        self.lengths[index] = L
        self.pad[index] = pad.to(self.pad.device)

    @torch.inference_mode()
    def copy(self, source: int, rows: list[int]) -> None:
        """Rows `rows` take row `source` as it stands: its K/V, ids, length and padding."""
        if not rows:
            return
        index = torch.tensor(rows, dtype=torch.long, device=self.engine.device)
        n = int(self.lengths[source])
        self.k[:, index, :, :n] = self.k[:, source, :, :n][:, None].clone()     # the same tensor on both sides
        self.v[:, index, :, :n] = self.v[:, source, :, :n][:, None].clone()
        self.ids[index, :n] = self.ids[source, :n].clone()
        self.lengths[index] = n
        self.pad[index] = int(self.pad[source])

    # --- one pass ---------------------------------------------------------------------------
    @torch.inference_mode()
    def step(self, feeds: list[Feed]) -> list[torch.Tensor]:
        """Append each feed's tokens to its rows; the logits of every new position, one [R, T, V] a feed."""
        grid = self._grid(feeds)
        x = self._embed(grid)
        for i, w in enumerate(self.engine.layers):
            x = self._layer(i, w, x, grid)
        self.lengths[grid.lo:grid.hi] = grid.ends
        x = rms_norm(x, self.engine.final_norm, self.engine.eps)
        return self._logits(x, feeds, grid)

    def _grid(self, feeds: list[Feed]) -> "Grid":
        """Where every fed token goes: its row, its slot, its position, its place among the packed tokens."""
        dev = self.engine.device
        rows = torch.tensor([r for f in feeds for r in f.rows], dtype=torch.long, device=dev)
        if len(set(rows.tolist())) != len(rows):
            raise ValueError("a row is fed twice in one pass")
        lo, hi = int(rows.min()), int(rows.max()) + 1
        T = max(f.ids.shape[1] for f in feeds)
        counts = torch.zeros(hi - lo, dtype=torch.long, device=dev)               # tokens fed per row
        tokens = torch.full((hi - lo, T), self.filler, dtype=torch.long, device=dev)
        for f in feeds:
            r = torch.tensor(f.rows, dtype=torch.long, device=dev) - lo
            counts[r] = f.ids.shape[1]
            tokens[r, T - f.ids.shape[1]:] = f.ids.to(dev)                         # right-aligned
        ends = self.lengths[lo:hi] + counts
        fed = counts > 0
        S = int(ends[fed].max())
        self._reserve(S)
        cols = torch.arange(T, device=dev)
        valid = cols[None, :] >= (T - counts)[:, None]                             # [R, T]
        slots = ends[:, None] - T + cols[None, :]                                  # [R, T]
        pad = self.pad[lo:hi]
        keys = torch.arange(S, device=dev)
        # as the engine: causal, the row's pads hidden, a pad slot sees itself; a grid place no
        # token fills sees key 0 alone (its output is dropped; a row of -inf would be NaN)
        mask = (keys <= slots[..., None]) & ((keys >= pad[:, None, None]) | (keys == slots[..., None]))
        mask = torch.where(valid[..., None], mask, keys == 0)
        bias = torch.zeros(mask.shape, dtype=self.engine.dtype, device=dev).masked_fill_(~mask, float("-inf"))
        r, t = valid.nonzero(as_tuple=True)                                        # packed order: row by row
        place = torch.full((hi - lo, T), -1, dtype=torch.long, device=dev)
        place[r, t] = torch.arange(len(r), device=dev)
        return Grid(lo=lo, hi=hi, T=T, S=S, ends=ends, r=r, t=t, place=place, bias=bias[:, None],
                    ids=tokens[r, t], slots=slots[r, t], positions=(slots - pad[:, None]).clamp(min=0)[r, t])

    def _embed(self, grid: "Grid") -> torch.Tensor:
        """The packed tokens' embeddings [N, hidden], image codes with their places added."""
        e = self.engine
        x = F.embedding(grid.ids, e.embed)
        if e.image_embedding is None:
            return x
        rows = grid.r + grid.lo
        self.ids[rows, grid.slots] = grid.ids
        # each row right-aligned to end at S behind filler, so its new tokens are the last T columns
        # and everything before them is its own (the additions only look back: filler changes nothing)
        shift = grid.S - grid.ends
        cols = torch.arange(grid.S, device=x.device)[None, :] - shift[:, None]
        own = self.ids[grid.lo:grid.hi].gather(1, cols.clamp(0, self.size - 1))
        aligned = torch.where(cols >= 0, own, torch.full_like(own, self.filler))
        added = e.image_embedding.additions(aligned, e.dtype, last=grid.T, tables=e.lookup_tables)
        return x + added[grid.r, grid.t]

    def _layer(self, i: int, w: dict, x: torch.Tensor, grid: "Grid") -> torch.Tensor:
        """One decoder layer on the packed tokens x [N, hidden] (the engine's maths, Engine._forward)."""
        e = self.engine
        H, KV, D = e.n_heads, e.n_kv, e.head_dim
        N = x.shape[0]
        cos, sin = e.cos[grid.positions][:, None], e.signed_sin[grid.positions][:, None]   # [N, 1, D]
        h = rms_norm(x, w["in_norm"], e.eps)
        qkv = linear(h, w["qkv"], w["qkv_bias"]).view(N, H + 2 * KV, D)
        qk = rope(qkv[:, :H + KV], cos, sin)
        q, k, v = qk[:, :H], qk[:, H:], qkv[:, H + KV:]
        rows = grid.r + grid.lo
        self.k[i][rows, :, grid.slots] = k                                         # written in place
        self.v[i][rows, :, grid.slots] = v
        queries = q.new_zeros(grid.hi - grid.lo, grid.T, H, D)
        queries[grid.r, grid.t] = q
        attn = attention(queries.transpose(1, 2), self.k[i, grid.lo:grid.hi, :, :grid.S],
                         self.v[i, grid.lo:grid.hi, :, :grid.S], grid.bias)           # [R, H, T, D]
        x = x + linear(attn.transpose(1, 2)[grid.r, grid.t].reshape(N, H * D), w["o"])
        h = rms_norm(x, w["post_norm"], e.eps)
        gate, up = linear(h, w["gate_up"]).chunk(2, dim=-1)
        return x + linear(F.silu(gate, inplace=True).mul_(up), w["down"])

    def _logits(self, x: torch.Tensor, feeds: list[Feed], grid: "Grid") -> list[torch.Tensor]:
        """Each feed's logits [R, T, V]; the output layer runs once per vocabulary range asked."""
        dev = x.device
        where = [grid.place[torch.tensor(f.rows, device=dev) - grid.lo][:, grid.T - f.ids.shape[1]:] for f in feeds]
        out: list[torch.Tensor | None] = [None] * len(feeds)
        for vocab in dict.fromkeys(f.vocab for f in feeds):
            mine = [j for j, f in enumerate(feeds) if f.vocab == vocab]
            index = torch.cat([where[j].reshape(-1) for j in mine])
            h = x[index]
            logits = (linear(h, self.engine.lm_head) if vocab is None else self.engine._head_slice(h, *vocab)).float()
            for j, part in zip(mine, logits.split([where[j].numel() for j in mine])):
                out[j] = part.view(*where[j].shape, -1)
        return out


@dataclass
class Grid:
    """Where a pass's tokens go (RowCache._grid): rows lo..hi-1 of the cache, T places each."""
    lo: int
    hi: int
    T: int
    S: int                      # keys read: up to the furthest row's new end
    ends: torch.Tensor          # [R] each row's length after the pass
    r: torch.Tensor             # [N] grid row of each packed token
    t: torch.Tensor             # [N] grid column of each packed token
    place: torch.Tensor         # [R, T] index among the packed tokens, -1 where none
    bias: torch.Tensor          # [R, 1, T, S] 0 where a key is visible, -inf where not
    ids: torch.Tensor           # [N]
    slots: torch.Tensor         # [N] cache slot of each packed token
    positions: torch.Tensor     # [N] its position (real tokens before it in its row)
