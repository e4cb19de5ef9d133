"""Decoding: prefill the prompt, then one KV-cached step per token, CFG as one batch.

A turn is decoded in two phases. First the reply's words, on one row, which the n pictures of a
turn share. With word_cfg ≠ 1, and while the conversation holds no picture, they are guided: a
second one-row decoder reads the twin prompt (the request's words dropped) and then the same
words, and each word is chosen from u + s·(c − u). That reply is the plan of a first picture,
where a prompt's objects are bound to their colours and places: the greedy plan of "two black
diamonds and a star" lets the group's words win ("three black diamonds"), and guidance weighs
what the request says against what any plan would say there. Once there is a picture, the twin
reads it too, so guidance would push answers and edit replies away from what the picture shows:
on the shipped model, word_cfg 1.5 on every reply took questions from 0.827 to 0.800 and plural
edits from 0.78 / 0.85 to 0.72 / 0.81 (docs/RESULTS.md). Then, once the words open a picture,
the rows are [cond × n, uncond × n]: n pictures for one prompt, each with its unconditional
twin — the same conversation with the last user message's words emptied. They branch from the
words' row without a second prefill (EngineDecoder.branch): the cond rows copy its cache, and
the twin reads only its tail past what it shares with the conversation, once, then is copied. What
the twin reads of the reply is a choice (the setting guide_reply). The reply restates the
request ("Here you go: a red circle at the top left."), so a twin that reads it is conditioned
too, and guidance amplifies only what the user's words add beyond the reply
(benchmarks/conditioning.py: ~0.005 nats per code on the 9400-step model, against ~0.03 for
user and reply words together). With guide_reply the twin reads neither, so guidance amplifies
both. Both halves then read the same sampled code, so one KV cache serves them all. Rows of
different lengths are left-padded; positions count only real tokens.

The layers, top down: generate_ids → decode_words (word_round: one pass, drafted words checked
in it; GuidedWords when guided) → open_pictures (the branch) → decode_pictures
(sample_step: one id per row, or speculative_round: drafted codes checked in one pass) → a
decoder (EngineDecoder over engine.Engine; batching.Lane in a shared batch).

    for step in generate_ids(model, stream, cond_ids, uncond_ids, config=SamplingConfig(), seed=0):
        step.tokens   # the n ids just chosen, one per picture

`config` (settings.SamplingConfig) holds the knobs under the session's names: cfg, word_cfg,
temperature, word_temperature, top_k, top_p, guide_reply, max_words, picture, draft_k.

Backends: "engine" (the product: our lean static-cache engine, engine.py) and, for tests and
benchmarks only, "hf", "nocache" and "recompute" (reference_decoding.py). All give the same
tokens.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import torch
from .engine import Engine
from .sampling import Grammar, guide, next_token_probs, sample
from .settings import SamplingConfig
from .speculative import SpeculationStats, image_probs, verify
from .stream import IMAGE_TOKENS, Stream

BACKENDS = ("engine", "hf", "nocache", "recompute")


def reply_reserve(max_words: int) -> int:
    """Positions a reply of at most `max_words` words takes: the words, <image>, its codes, </image>
    and <eot> — the most a turn decodes, and the room a prompt is fitted to leave for it (less, and
    a reply as long as the cap runs past the positions the model was trained on, or past the
    engine's context)."""
    return max_words + IMAGE_TOKENS + 3


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


def word_twin_engine(model) -> Engine:
    """The one-row engine the words' unconditional twin decodes on (guided words, word_cfg),
    alongside engine_for(model, 1): the same weight tensors, a cache of its own."""
    engines = model.__dict__.setdefault("_mmgen_engines", {})
    if "word_twin" not in engines:
        engines["word_twin"] = engine_for(model, 1).sibling()
    return engines["word_twin"]


class EngineDecoder:
    """The decoder a generation draws with: rows of a private engine (engine_for), with the calls
    the phases below make of any decoder — start, feed, step, rollback, branch, close. A shared
    batch's lanes (batching.Lane) answer the same calls; so do the test backends
    (reference_decoding.ReferenceDecoder)."""

    def __init__(self, model, rows: int, engine: Engine | None = None):
        self.model = model
        self.engine = engine or engine_for(model, rows)

    def start(self, ids: torch.Tensor, mask: torch.Tensor, vocab: tuple[int, int] | None = None) -> torch.Tensor:
        """Prefill left-padded prompts ids [R, L] (mask: 1 on real tokens); the last logits [R, V].
        `vocab` (lo, hi): every id that may come next lies there; only those logits are computed."""
        return self.engine.prefill(ids, pad=(1 - mask).sum(-1), vocab=vocab)

    def feed(self, tokens: torch.Tensor, vocab: tuple[int, int] | None = None) -> torch.Tensor:
        """Append one token per row [R]; the next logits [R, V]."""
        return self.engine.step(tokens[:, None], vocab)[:, -1]

    def step(self, new: torch.Tensor, vocab: tuple[int, int] | None = None) -> torch.Tensor:
        """Append new [R, T] to every row; the logits of each new position [R, T, V]."""
        return self.engine.step(new, vocab)

    def rollback(self, k: int) -> None:
        """Forget the last k positions of every row (rejected drafts)."""
        self.engine.rollback(k)

    def branch(self, held: list[int], copies: int, twin: list[int] | None, filler: int) -> "EngineDecoder":
        """The picture rows, from this one-row decoder holding `held`: `copies` rows holding it as
        it is, then (with `twin`) `copies` rows holding the prompt `twin`. Nothing is prefilled
        again: the held row's K/V are copied, and the twin is read as its tail past the part it
        shares with `held` (the conversation before the last user message), once, then copied."""
        rows = copies * (2 if twin is not None else 1)
        if rows == 1:
            return self
        source, target = self.engine, engine_for(self.model, rows)
        if source.batch != 1 or source.real_length(0) != len(held) or source.pad[0] != 0:
            raise ValueError("branch needs a one-row decoder holding exactly `held`")
        length = max(len(held), len(twin or []))
        pad = [length - len(held)] * copies + ([length - len(twin)] * copies if twin is not None else [])
        target.lay_out(torch.tensor(pad), length, filler)
        target.copy_row(source, 0, range(copies))
        if twin is not None:
            shared = common_prefix(held, twin)
            source.rollback(len(held) - shared)
            if shared < len(twin):
                source.extend(torch.tensor([twin[shared:]]))
            target.copy_row(source, 0, range(copies, rows))
        return EngineDecoder(self.model, rows, engine=target)

    def close(self) -> None:
        """Nothing to give back: the engine stays with the model (engine_for)."""


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading ids a and b share."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


class _Slot:
    """The decoder a generation draws with now. Replacing it closes the last one — a batch's rows
    go back as soon as the words are done — and so does leaving the `with`, however it is left."""

    def __init__(self):
        self.current = None

    def replace(self, decoder):
        if self.current is not None and self.current is not decoder:
            self.current.close()
        self.current = decoder
        return decoder

    def __enter__(self) -> "_Slot":
        return self

    def __exit__(self, *exc) -> None:
        self.replace(None)


def decoder_maker(backend: str, decoders=None):
    """`make(model, rows)` → a decoder: the engine's (or the given maker's, e.g. a shared batch's
    lanes), or for the test backends a reference one."""
    if backend == "engine":
        return decoders if decoders is not None else EngineDecoder
    from .reference_decoding import ReferenceDecoder
    return lambda model, rows: ReferenceDecoder(model, backend, rows)


def word_twin_maker(backend: str, decoders=None):
    """`make(model)` → a one-row decoder for the words' twin, apart from the words' own: on the
    private engine a sibling (word_twin_engine), else one more of what `decoder_maker` makes."""
    if backend == "engine" and decoders is None:
        return lambda model: EngineDecoder(model, 1, engine=word_twin_engine(model))
    make = decoder_maker(backend, decoders)
    return lambda model: make(model, 1)


@dataclass
class _Turn:
    """What the phases of one generate_ids call share."""
    stream: Stream
    config: SamplingConfig
    n: int
    guided: bool
    grammars: list[Grammar]
    generator: torch.Generator
    limit: int
    fixed: list[int | None] | None
    drafter: object
    stats: SpeculationStats | None
    codes: list[list[int]] = field(default_factory=list)
    words: list[int] = field(default_factory=list)     # the reply's words, <image> last when it opens one
    emitted: int = 0
    words_fed: int = 0                                 # words in the one-row decoder's cache
    logits: torch.Tensor | None = None                 # the picture rows' next logits [R, V], None while unfed

    def emit(self, tokens: list[int], in_image: list[bool]) -> Step:
        self.emitted += 1
        for r, t in enumerate(tokens):
            if self.stream.is_image_id(t):
                self.codes[r].append(t - self.stream.image_offset)
        return Step(tokens=tokens, in_image=in_image, finished=[g.finished for g in self.grammars])

    def dup(self, t: torch.Tensor) -> torch.Tensor:
        """A picture row's tensor for both halves of a guided batch [cond, uncond]."""
        return torch.cat([t, t]) if self.guided else t


def check_fixed(fixed: Sequence[int | None] | None, stream: Stream) -> list[int | None] | None:
    if fixed is None:
        return None
    fixed = list(fixed)
    if len(fixed) != IMAGE_TOKENS or any(c is not None and not 0 <= c < stream.codebook_size for c in fixed):
        raise ValueError(f"fixed must hold {IMAGE_TOKENS} codes in [0, {stream.codebook_size}) or None")
    return fixed


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
    `decoders`: makes the engine backend's decoders, `decoders(model, rows)` (default
    EngineDecoder, a private engine); a shared batch's lanes (batching.Lanes) draw this generation
    in passes shared with others, with the same ids up to rounding.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, not {backend!r}")
    if drafter is not None and backend != "engine":
        raise ValueError("speculative decoding needs the engine backend")
    config = config or SamplingConfig()
    turn = _Turn(stream=stream, config=config, n=n, guided=uncond_ids is not None and config.cfg != 1.0,
                 grammars=[Grammar(stream, picture=config.picture) for _ in range(n)],
                 generator=torch.Generator().manual_seed(seed if seed is not None else torch.seed() % 2**63),
                 limit=max_steps or reply_reserve(config.max_words), fixed=check_fixed(fixed, stream),
                 drafter=drafter, stats=stats, codes=[[] for _ in range(n)])
    make = decoder_maker(backend, decoders)
    # the words are guided only before a conversation's first picture (see the module's docstring)
    guide_words = uncond_ids is not None and config.word_cfg != 1.0 and stream.image_start not in cond_ids
    with torch.inference_mode(), _Slot() as slot, _Slot() as twin_slot:
        words = reader = slot.replace(make(model, 1))
        if guide_words:
            twin = twin_slot.replace(word_twin_maker(backend, decoders)(model))
            reader = GuidedWords(words, twin, uncond_ids, config.word_cfg, stream.pad)
        opened = yield from decode_words(turn, reader, list(cond_ids))
        twin_slot.replace(None)                        # the twin's rows go back before the pictures take theirs
        if opened:
            pictures = slot.replace(open_pictures(turn, words, list(cond_ids), uncond_ids))
            yield from decode_pictures(turn, pictures)


# --- phase 1: the words ---------------------------------------------------------------------------
class GuidedWords:
    """The words' decoder and their twin's as one decoder (word_cfg): every call goes to both, the
    twin reading `twin_ids` where the words read their prompt and then the same words, and the
    logits returned are guided, u + s·(c − u). Only the words' calls: the pictures branch from the
    words' own decoder."""

    def __init__(self, words, twin, twin_ids: Sequence[int], scale: float, pad: int):
        self.words, self.twin, self.scale = words, twin, scale
        self.twin_prompt = left_pad([list(twin_ids)], pad)[:2]

    def start(self, ids: torch.Tensor, mask: torch.Tensor, vocab: tuple[int, int] | None = None) -> torch.Tensor:
        return guide(self.words.start(ids, mask, vocab).float(), self.twin.start(*self.twin_prompt, vocab).float(),
                     self.scale)

    def feed(self, tokens: torch.Tensor, vocab: tuple[int, int] | None = None) -> torch.Tensor:
        return guide(self.words.feed(tokens, vocab).float(), self.twin.feed(tokens, vocab).float(), self.scale)

    def step(self, new: torch.Tensor, vocab: tuple[int, int] | None = None) -> torch.Tensor:
        return guide(self.words.step(new, vocab).float(), self.twin.step(new, vocab).float(), self.scale)

    def rollback(self, k: int) -> None:
        self.words.rollback(k)
        self.twin.rollback(k)


def decode_words(turn: _Turn, decoder, cond_ids: list[int]) -> Iterator[Step]:
    """The reply's words, on one row, every grammar advanced alike; returns whether they opened a
    picture (the words end at <image>, not yet fed). A drafter that drafts words
    (speculative.NeighbourDrafter) has up to draft_k of them checked in the pass that feeds one.
    Guided words come through a GuidedWords decoder."""
    stream, g0 = turn.stream, turn.grammars[0]
    words_only = (0, stream.image_offset)      # text ids and specials: no code comes in this phase
    logits = decoder.start(*left_pad([cond_ids], stream.pad)[:2], vocab=words_only)
    draft_words = getattr(turn.drafter, "draft_words", None)
    chosen = [int(sample(_word_dist(logits, g0, turn.config).cpu(), turn.generator)[0])]
    while True:                                # `chosen`: words chosen, not yet emitted; the last is unfed
        for t in chosen:
            for g in turn.grammars:
                g.advance(t)
            turn.words.append(t)
            yield turn.emit([t] * turn.n, [False] * turn.n)
            if g0.finished or turn.emitted >= turn.limit and t != stream.image_start:
                return False
            if t == stream.image_start:
                return True
        drafts = _legal(draft_words(cond_ids + turn.words, turn.config.draft_k, (stream.image_start, stream.eot)),
                        g0, turn.config) if draft_words is not None else []
        chosen = word_round(turn, decoder, chosen[-1], drafts)


def word_round(turn: _Turn, decoder, t: int, drafts: list[int]) -> list[int]:
    """Feed word t (with any drafts after it, checked in the same pass); the words chosen next,
    of which all but the last are fed."""
    words_only = (0, turn.stream.image_offset)
    if not drafts:
        logits = decoder.feed(torch.tensor([t]), words_only)
        turn.words_fed += 1
        return [int(sample(_word_dist(logits, turn.grammars[0], turn.config).cpu(), turn.generator)[0])]
    out = decoder.step(torch.tensor([[t] + drafts]), words_only)[0]          # [k + 1, V]
    p = _word_probs(out, drafts, turn.grammars[0], turn.config)
    accepted, nxt = verify(p[None], torch.tensor([drafts]), None, turn.generator)
    a = accepted[0]
    decoder.rollback(len(drafts) - a)                                         # the rejected drafts
    turn.words_fed += 1 + a
    if turn.stats is not None:
        turn.stats.word_rounds += 1
        turn.stats.word_tokens += a + 1
    return drafts[:a] + [int(nxt[0])]


# --- phase 2: the pictures ------------------------------------------------------------------------
def open_pictures(turn: _Turn, words, cond_ids: list[int], uncond_ids: Sequence[int] | None):
    """The picture rows — [cond + words] × n and, when guided, their twins × n — branched from the
    words' decoder: the conversation is prefilled once per turn. What the twin reads of the reply
    is the setting guide_reply (module docstring)."""
    stream, n = turn.stream, turn.n
    held = cond_ids + turn.words[:-1]                 # every word but <image>, fed last, to all rows at once
    extra = turn.words_fed - (len(turn.words) - 1)
    if extra:
        words.rollback(extra)                          # a drafted <image> was fed
    twin = None
    if turn.guided:
        twin = list(uncond_ids) + ([] if turn.config.guide_reply else turn.words[:-1])
    pictures = words.branch(held, n, twin, stream.pad)
    turn.logits = pictures.feed(torch.tensor([stream.image_start] * (2 * n if turn.guided else n)),
                                (stream.image_offset, stream.vocab_size))
    if turn.drafter is not None:
        rows = [held + [stream.image_start]] * n + ([twin + [stream.image_start]] * n if twin is not None else [])
        ids, mask, _ = left_pad(rows, stream.pad)
        turn.drafter.start(ids, (1 - mask).sum(-1))
    return pictures


def decode_pictures(turn: _Turn, decoder) -> Iterator[Step]:
    """The n pictures' codes (and what follows them) until every row's turn ends. `turn.logits`:
    the next position's logits, or None while `pending` [R, P] tokens are unfed."""
    pending: torch.Tensor | None = None
    while turn.emitted < turn.limit:
        left = IMAGE_TOKENS - len(turn.codes[0])
        if (turn.drafter is not None and all(g.in_image for g in turn.grammars)
                and all(len(c) == len(turn.codes[0]) for c in turn.codes) and left >= 2):
            pending = yield from speculative_round(turn, decoder, pending, min(turn.config.draft_k, left - 1))
            continue
        if turn.logits is None:
            turn.logits = decoder.step(pending, _next_ids(turn.grammars))[:, -1]
            pending = None
        tokens, in_image = sample_step(turn)
        yield turn.emit(tokens, in_image)
        if all(g.finished for g in turn.grammars):
            return
        fed = torch.tensor(tokens * (2 if turn.guided else 1), dtype=torch.long)
        if turn.drafter is not None:
            turn.drafter.observe(fed[:, None])
            pending, turn.logits = fed[:, None], None     # fed with the next verify pass, or the next step
        else:
            turn.logits = decoder.feed(fed, _next_ids(turn.grammars))


def sample_step(turn: _Turn) -> tuple[list[int], list[bool]]:
    """One id per picture row from `turn.logits` (guided, under each row's grammar)."""
    stream, n, config, fixed = turn.stream, turn.n, turn.config, turn.fixed
    tokens, in_image = [], []
    for r, g in enumerate(turn.grammars):
        if g.finished:              # this row's turn is over; it idles on <eot> while others finish
            tokens.append(stream.eot)
            in_image.append(False)
            continue
        inside = g.in_image
        allowed = g.allowed(config.max_words)
        if inside and fixed is not None and fixed[g.codes] is not None:
            allowed = torch.zeros_like(allowed)                 # region edit: this code stays
            allowed[stream.image_offset + fixed[g.codes]] = True
        logits = turn.logits
        probs = next_token_probs(logits[r:r + 1], logits[n + r:n + r + 1] if turn.guided else None,
                                 allowed, config, in_image=inside)
        t = int(sample(probs.cpu(), turn.generator)[0])
        g.advance(t)
        tokens.append(t)
        in_image.append(inside)
    return tokens, in_image


def speculative_round(turn: _Turn, decoder, pending: torch.Tensor | None, k: int) -> Iterator[Step]:
    """Up to k drafted codes per picture checked in one pass (speculative.verify); yields the
    codes it keeps and returns the tokens left unfed (the last one, fed with the next pass)."""
    stream, n, codes_only = turn.stream, turn.n, (turn.stream.image_offset, turn.stream.vocab_size)
    drafts, q = turn.drafter.propose(k, stream=stream, n=n, guided=turn.guided, config=turn.config,
                                     generator=turn.generator, codes=turn.codes)
    k = drafts.shape[1]                                 # a drafter may stop short (speculative.CopyDrafter)
    fed = drafts.t().reshape(k, n)                                      # [k, n] -> rows below
    new = torch.stack([turn.dup(fed[j]) for j in range(k)], 1)          # [R, k]
    if pending is not None:
        # every position verified here is a code's: k < the codes left
        out = decoder.step(torch.cat([pending, new], 1), codes_only)[:, pending.shape[1] - 1:]   # [R, k + 1, V]
    else:
        out = torch.cat([turn.logits[:, None], decoder.step(new, codes_only)], 1)
    here = len(turn.codes[0])
    p = image_probs(stream, out, n, turn.guided, turn.config,           # [n, k + 1, V]
                    fixed=turn.fixed[here:here + k + 1] if turn.fixed is not None else None)
    accepted, nxt = verify(p, drafts, q, turn.generator)
    m = min(accepted) + 1                       # codes every row keeps: the common accepted ones, then one more
    last = torch.where(torch.tensor(accepted) > m - 1, drafts[:, min(m - 1, k - 1)], nxt) if m <= k else nxt
    decoder.rollback(k - (m - 1))
    turn.logits = None
    turn.drafter.commit(drafts, m, last, turn.guided)
    if turn.stats is not None:
        turn.stats.record_round(k * n, sum(accepted), m)
    for j in range(m):
        tokens = [int(drafts[r, j]) if j < m - 1 else int(last[r]) for r in range(n)]
        for g, t in zip(turn.grammars, tokens):
            g.advance(t)
        yield turn.emit(tokens, [True] * n)
    return turn.dup(last)[:, None]
