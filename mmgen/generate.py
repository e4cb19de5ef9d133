"""Decoding: prefill the prompt, then one KV-cached step per token, CFG as one batch.

A turn is decoded in two phases. First the reply's words, on one row: they are not guided, and
the n pictures of a turn share them. Then, once the words open a picture, the rows are
[cond × n, uncond × n], prefilled afresh: n pictures for one prompt, each with its
unconditional twin — the same conversation with the last user message's words emptied. What
the twin reads of the reply is a choice (the setting guide_reply). The reply restates the
request ("Here you go: a red circle at the top left."), so a twin that reads it is conditioned
too, and guidance amplifies only what the user's words add beyond the reply
(benchmarks/conditioning.py: ~0.005 nats per code on the 9400-step model, against ~0.03 for
user and reply words together). With guide_reply the twin reads neither, so guidance amplifies
both. Both halves then read the same sampled code, so one KV cache serves them all. Prompts of
different lengths are left-padded; positions count only real tokens.

    for step in generate_ids(model, stream, cond_ids, uncond_ids, config=SamplingConfig(), seed=0):
        step.tokens   # the n ids just chosen, one per picture

`config` (settings.SamplingConfig) holds the knobs under the session's names: cfg, temperature,
word_temperature, top_k, top_p, guide_reply, max_words, picture, draft_k.

Backends: "engine" (default: our lean static-cache engine, engine.py), "hf" (transformers'
forward with its DynamicCache), "nocache" (transformers' forward over the whole sequence every
step; the reference in tests) and "recompute" (the engine, same weights and kernels, rerun over
the whole sequence every step: the benchmark's like-for-like cache-vs-no-cache ratio). All
give the same tokens.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
from transformers import DynamicCache

from .engine import Engine
from .sampling import Grammar, next_token_probs, sample
from .settings import SamplingConfig
from .speculative import SpeculationStats, image_probs, verify
from .stream import IMAGE_TOKENS, Stream

BACKENDS = ("engine", "hf", "nocache", "recompute")


@dataclass
class Step:
    tokens: list[int]          # one id per picture row
    in_image: list[bool]       # whether each row was inside a picture when this id was chosen
    finished: list[bool]       # whether each row's turn is over after this id


def left_pad(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ids [B, L], attention mask [B, L], position ids [B, L] for left-padded rows."""
    length = max(len(r) for r in rows)
    ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, length - len(r):] = torch.tensor(list(r), dtype=torch.long)
        mask[i, length - len(r):] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids, mask, positions


def model_device(model) -> torch.device:
    return next(model.parameters()).device


def set_engine_weights(model, weights: str) -> None:
    """How engines built for `model` hold its projections ("native", "int8" or "fp16"; engine.py)."""
    model.__dict__["_mmgen_engine_weights"] = weights
    model.__dict__.pop("_mmgen_engines", None)


def engine_weights(model) -> str:
    """How engines built for `model` hold its projections (set_engine_weights; "native" unless set)."""
    return model.__dict__.get("_mmgen_engine_weights", "native")


def engine_for(model, batch: int) -> Engine:
    """One engine per (model, batch size), kept on the model: its fused weights are built once.

    The engine holds copies of fused weights, so build a new one after changing the weights.
    """
    engines = model.__dict__.setdefault("_mmgen_engines", {})
    if batch not in engines:
        engines[batch] = Engine(model, batch=batch, weights=engine_weights(model))
    return engines[batch]


class Decoder:
    """The model behind one of the backends: `start(ids, mask)` then `feed(tokens)`, both → last logits."""

    def __init__(self, model, backend: str, batch: int):
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, not {backend!r}")
        self.model, self.backend = model, backend
        self.engine = engine_for(model, batch) if backend in ("engine", "recompute") else None
        self.device = model_device(model)

    def start(self, ids: torch.Tensor, mask: torch.Tensor, vocab: tuple[int, int] | None = None) -> torch.Tensor:
        """`vocab` (lo, hi): every id that may come next lies there; the engine computes only
        those logits (the others backends compute all; the legal ones are the same)."""
        self.ids, self.mask = ids.to(self.device), mask.to(self.device)
        self.positions = (self.mask.cumsum(-1) - 1).clamp(min=0)
        if self.engine is not None:
            return self.engine.prefill(self.ids, pad=(1 - self.mask).sum(-1), vocab=vocab)
        self.cache = DynamicCache() if self.backend == "hf" else None
        return self.model(input_ids=self.ids, attention_mask=self.mask, position_ids=self.positions,
                          past_key_values=self.cache, use_cache=self.cache is not None).logits[:, -1]

    def feed(self, tokens: torch.Tensor, vocab: tuple[int, int] | None = None) -> torch.Tensor:
        """Append one token per row [B] and return the next logits [B, V] (`vocab` as in start)."""
        new = tokens.to(self.device)[:, None]
        if self.backend == "engine":
            return self.engine.step(new, vocab)[:, -1]
        self.mask = torch.cat([self.mask, torch.ones_like(new)], dim=1)
        self.positions = torch.cat([self.positions, self.positions[:, -1:] + 1], dim=1)
        self.ids = torch.cat([self.ids, new], dim=1)
        if self.backend == "recompute":               # no cache kept: every position again
            return self.engine.prefill(self.ids, pad=(1 - self.mask).sum(-1), vocab=vocab)
        if self.backend == "hf":
            # embedded with the ids before it: an image code's embedding depends on its place
            # in the picture (model.StreamEmbedding)
            embeds = self.model.get_input_embeddings()(self.ids)[:, -1:]
            return self.model(inputs_embeds=embeds, attention_mask=self.mask, position_ids=self.positions[:, -1:],
                              past_key_values=self.cache, use_cache=True).logits[:, -1]
        return self.model(input_ids=self.ids, attention_mask=self.mask, position_ids=self.positions,
                          use_cache=False).logits[:, -1]

    def step(self, new: torch.Tensor, vocab: tuple[int, int] | None = None) -> torch.Tensor:
        """Append new [B, T] to every row; the logits of each new position [B, T, V] (engine only)."""
        return self.engine.step(new, vocab)

    def rollback(self, k: int) -> None:
        """Forget the last k positions of every row (rejected drafts; engine only)."""
        self.engine.length -= k

    def close(self) -> None:
        """Nothing to give back: the engine stays with the model (engine_for)."""


class _Decoders:
    """The decoder a generation draws with now, made by `make` (Decoder, or a shared batch's lanes:
    batching.Lanes). Opening the next one closes the last — a batch's rows go back as soon as the
    words are done — and so does leaving the `with`, however it is left."""

    def __init__(self, make):
        self.make, self.current = make, None

    def open(self, model, backend: str, batch: int):
        self.close()
        self.current = self.make(model, backend, batch)
        return self.current

    def close(self) -> None:
        if self.current is not None:
            self.current.close()
            self.current = None

    def __enter__(self) -> "_Decoders":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _next_ids(grammars: list[Grammar]) -> tuple[int, int] | None:
    """The range of ids every row may take next (Grammar.next_ids), or None when rows differ."""
    ranges = {g.next_ids() for g in grammars if not g.finished}
    return ranges.pop() if len(ranges) == 1 else None


def _legal(drafts: list[int], grammar: Grammar, config: SamplingConfig) -> list[int]:
    """The drafts up to the first one the grammar would refuse where it would come."""
    g, out = copy.copy(grammar), []          # its state is scalars; the masks are shared, never written
    for d in drafts:
        if not bool(g.allowed(config.max_words)[d]):
            break
        g.advance(d)
        out.append(d)
    return out


def _word_dist(logits: torch.Tensor, grammar: Grammar, config: SamplingConfig) -> torch.Tensor:
    """The next word's distribution [B, V] from its logits, under the grammar's state."""
    return next_token_probs(logits, None, grammar.allowed(config.max_words), config, in_image=False,
                            fold=grammar.folded_picture())


def _word_probs(logits: torch.Tensor, drafts: list[int], grammar: Grammar, config: SamplingConfig) -> torch.Tensor:
    """The next word's distribution after t, then after each draft: logits [k + 1, V] → [k + 1, V]."""
    g, rows = copy.copy(grammar), []
    for j in range(len(drafts) + 1):
        rows.append(_word_dist(logits[j:j + 1], g, config)[0])
        if j < len(drafts):
            g.advance(drafts[j])
    return torch.stack(rows)


def generate_ids(model, stream: Stream, cond_ids: Sequence[int], uncond_ids: Sequence[int] | None = None, *,
                 config: SamplingConfig | None = None, n: int = 1, seed: int | None = None,
                 backend: str = "engine", max_steps: int | None = None, drafter=None,
                 stats: SpeculationStats | None = None, fixed: Sequence[int | None] | None = None,
                 decoders=None) -> Iterator[Step]:
    """Yield one `Step` per generated position until every row's assistant turn ends (<eot>).

    `config`: the knobs, a chat's defaults when None. With a `drafter` (speculative.py), picture
    codes come up to `config.draft_k` drafts per verify pass; the tokens are distributed exactly as
    without one.
    `fixed`: 256 entries, a code or None — a region edit. Positions with a code keep it; only
    the None positions are sampled (conditioned, as always, on everything before them).
    `decoders`: makes the engine backend's decoders, `decoders(model, backend, rows)` (default
    Decoder, a private engine); a shared batch's lanes (batching.Lanes) draw this generation in
    passes shared with others, with the same ids up to rounding.
    """
    if fixed is not None:
        fixed = list(fixed)
        if len(fixed) != IMAGE_TOKENS or any(c is not None and not 0 <= c < stream.codebook_size for c in fixed):
            raise ValueError(f"fixed must hold {IMAGE_TOKENS} codes in [0, {stream.codebook_size}) or None")
    config = config or SamplingConfig()
    guided = uncond_ids is not None and config.cfg != 1.0
    grammars = [Grammar(stream, picture=config.picture) for _ in range(n)]
    generator = torch.Generator().manual_seed(seed if seed is not None else torch.seed() % 2**63)
    limit = max_steps or (config.max_words + 256 + 3)
    if drafter is not None and backend != "engine":
        raise ValueError("speculative decoding needs the engine backend")
    dup = (lambda t: torch.cat([t, t])) if guided else (lambda t: t)    # noqa: E731
    codes: list[list[int]] = [[] for _ in range(n)]
    emitted = 0

    def emit(tokens: list[int], in_image: list[bool]) -> Step:
        for r, t in enumerate(tokens):
            if stream.is_image_id(t):
                codes[r].append(t - stream.image_offset)
        return Step(tokens=tokens, in_image=in_image, finished=[g.finished for g in grammars])

    with torch.inference_mode(), _Decoders(decoders if decoders is not None and backend == "engine"
                                           else Decoder) as slot:
        # phase 1, the words: one row, every grammar advanced alike. A drafter that drafts words
        # (speculative.NeighbourDrafter) has up to draft_k of them checked in the pass that feeds t.
        decoder = slot.open(model, backend, 1)
        words_only = (0, stream.image_offset)      # text ids and specials: no code comes in this phase
        logits = decoder.start(*left_pad([list(cond_ids)], stream.pad)[:2], vocab=words_only)
        draft_words = getattr(drafter, "draft_words", None) if backend == "engine" else None
        words: list[int] = []
        if emitted >= limit:
            return
        first = sample(_word_dist(logits, grammars[0], config).cpu(), generator)
        chosen = [int(first[0])]                  # words chosen but not yet emitted; the last is unfed
        while True:
            opened = False
            for t in chosen:
                for g in grammars:
                    g.advance(t)
                words.append(t)
                emitted += 1
                yield emit([t] * n, [False] * n)
                if grammars[0].finished:
                    return
                if t == stream.image_start:
                    opened = True
                    break
                if emitted >= limit:
                    return
            if opened:
                break
            t = chosen[-1]
            drafts = _legal(draft_words(list(cond_ids) + words, config.draft_k, (stream.image_start, stream.eot)),
                            grammars[0], config) if draft_words is not None else []
            if not drafts:
                logits = decoder.feed(torch.tensor([t]), words_only)
                chosen = [int(sample(_word_dist(logits, grammars[0], config).cpu(), generator)[0])]
                continue
            # (after a drafted <image> its last row is for a code; that bonus is never used: the
            # words end at <image>, and the picture is drawn from a fresh prefill below)
            out = decoder.step(torch.tensor([[t] + drafts]), words_only)[0]         # [k + 1, V]
            p = _word_probs(out, drafts, grammars[0], config)
            accepted, nxt = verify(p[None], torch.tensor([drafts]), None, generator)
            a = accepted[0]
            decoder.rollback(len(drafts) - a)                                       # the rejected drafts
            chosen = drafts[:a] + [int(nxt[0])]     # the kept drafts are fed; the correction is not yet
            if stats is not None:
                stats.word_rounds += 1
                stats.word_tokens += a + 1

        # phase 2, the pictures: [cond + words] × n and their twins × n, prefilled afresh
        rows = [list(cond_ids) + words] * n
        if guided:
            rows += [list(uncond_ids) + ([stream.image_start] if config.guide_reply else words)] * n
        decoder = slot.open(model, backend, len(rows))
        codes_only = (stream.image_offset, stream.vocab_size)
        logits = decoder.start(*left_pad(rows, stream.pad)[:2], vocab=codes_only)   # None while `pending` is unfed
        pending: torch.Tensor | None = None
        if drafter is not None:
            drafter.start(decoder.ids, (1 - decoder.mask).sum(-1))
        while emitted < limit:
            left = IMAGE_TOKENS - len(codes[0])
            speculate = (drafter is not None and all(g.in_image for g in grammars)
                         and all(len(c) == len(codes[0]) for c in codes) and left >= 2)
            if speculate:
                drafts, q = drafter.propose(min(config.draft_k, left - 1), stream=stream, n=n, guided=guided,
                                            config=config, generator=generator, codes=codes)
                k = drafts.shape[1]                     # a drafter may stop short (speculative.CopyDrafter)
                fed = drafts.t().reshape(k, n)                                  # [k, n] -> rows below
                new = torch.stack([dup(fed[j]) for j in range(k)], 1)           # [R, k]
                if pending is not None:
                    # every position verified here is a code's: k < the codes left
                    out = decoder.step(torch.cat([pending, new], 1), codes_only)          # [R, P + k, V]
                    out = out[:, pending.shape[1] - 1:]
                else:
                    out = torch.cat([logits[:, None], decoder.step(new, codes_only)], 1)
                here = len(codes[0])
                p = image_probs(stream, out, n, guided, config,                  # [n, k + 1, V]
                                fixed=fixed[here:here + k + 1] if fixed is not None else None)
                accepted, nxt = verify(p, drafts, q, generator)
                m = min(accepted) + 1
                last = torch.where(torch.tensor(accepted) > m - 1, drafts[:, min(m - 1, k - 1)], nxt) \
                    if m <= k else nxt
                decoder.rollback(k - (m - 1))
                pending, logits = dup(last)[:, None], None
                drafter.commit(drafts, m, last, guided)
                if stats is not None:
                    stats.rounds += 1
                    stats.drafted += k * n
                    stats.accepted += sum(accepted)
                    stats.emitted += m
                    stats.per_round.append(m)
                for j in range(m):
                    tokens = [int(drafts[r, j]) if j < m - 1 else int(last[r]) for r in range(n)]
                    for g, t in zip(grammars, tokens):
                        g.advance(t)
                    emitted += 1
                    yield emit(tokens, [True] * n)
                continue
            if logits is None:
                logits = decoder.step(pending, _next_ids(grammars))[:, -1]
                pending = None
            tokens, in_image = [], []
            for r, g in enumerate(grammars):
                if g.finished:              # this row's turn is over; it idles on <eot> while others finish
                    tokens.append(stream.eot)
                    in_image.append(False)
                    continue
                inside = g.in_image
                allowed = g.allowed(config.max_words)
                if inside and fixed is not None and fixed[g.codes] is not None:
                    allowed = torch.zeros_like(allowed)                 # region edit: this code stays
                    allowed[stream.image_offset + fixed[g.codes]] = True
                probs = next_token_probs(logits[r:r + 1], logits[n + r:n + r + 1] if guided else None,
                                         allowed, config, in_image=inside)
                t = int(sample(probs.cpu(), generator)[0])
                g.advance(t)
                tokens.append(t)
                in_image.append(inside)
            emitted += 1
            yield emit(tokens, in_image)
            if all(g.finished for g in grammars):
                return
            fed = torch.tensor(tokens * (2 if guided else 1), dtype=torch.long)
            if drafter is not None:
                drafter.observe(fed[:, None])
                pending, logits = fed[:, None], None      # fed with the next verify pass, or the next step
            else:
                logits = decoder.feed(fed, _next_ids(grammars))
