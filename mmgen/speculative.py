"""Speculative decoding of picture codes: draft k codes cheaply, verify them in one pass.

On a CPU one decoding step of the transformer is bound by reading its weights, so checking
k + 1 positions in one pass costs little more than one (benchmarks/generate.py measures it).
A drafter proposes k codes; the transformer scores all of them at once for both CFG branches;
each is accepted or rejected by the speculative-sampling rule (Leviathan et al. 2023; Chen et
al. 2023) applied to the *guided* distributions p (transformer) and q (drafter):

    accept draft x with probability min(1, p(x) / q(x))
    on the first rejection, sample from normalise(max(0, p − q)) and stop
    if all k are accepted, sample a bonus code from the next p

so every emitted code is distributed exactly as plain decoding would draw it. Rejected
positions are rolled back by moving the static cache's length (engine.py).

Drafters (each answers the calls of `Drafter`, below):
- `ModelDrafter` (experimental, not shipped: a 2-layer draft transformer's step costs ~1.2 ms
  where a neighbour-table draft costs microseconds; docs/RESULTS.md): a small transformer run
  with its own engine and its own CFG rows; q is its guided distribution.
- `NeighbourDrafter`: a lookup table distilled from the transformer (`checkpoints/draft/`,
  `mmgen train draft`; neighbours.py): the likeliest code given the codes above, left and
  above-right. Drafts cost microseconds, so k can be large. Its q is a point mass (below).
- `CopyDrafter`: training-free. Proposes, for each position, the code at the same place in the
  picture being edited, or else the code one row up (flat backgrounds repeat). Its q is a point
  mass, so a draft x is accepted with probability p(x) and a rejection resamples from p with x
  removed — still exact.

With n pictures in a batch, each row may accept a different number of drafts; all rows emit
min(accepted) + 1 codes, each row's last one being its own correction or its accepted draft —
every emitted prefix is one the rule produced, so exactness holds row by row.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import torch

from .engine import Engine
from .sampling import SamplingConfig, next_token_probs, sample
from .stream import IMAGE_SIDE, Stream


@dataclass
class SpeculationStats:
    rounds: int = 0
    drafted: int = 0
    accepted: int = 0
    emitted: int = 0
    per_round: list[int] = field(default_factory=list)   # codes emitted per round
    word_rounds: int = 0                                  # passes that checked drafted words
    word_tokens: int = 0                                  # words those passes emitted

    def record_round(self, drafted: int, accepted: int, emitted: int) -> None:
        """One verify pass: codes drafted over all rows, of them accepted, and codes each row kept."""
        self.rounds += 1
        self.drafted += drafted
        self.accepted += accepted
        self.emitted += emitted
        self.per_round.append(emitted)

    @property
    def acceptance_rate(self) -> float:
        return self.accepted / max(1, self.drafted)

    @property
    def mean_accepted_length(self) -> float:
        return self.emitted / max(1, self.rounds)


def image_probs(stream: Stream, logits: torch.Tensor, n: int, guided: bool, config: SamplingConfig,
                fixed: list[int | None] | None = None) -> torch.Tensor:
    """Guided, sampled-over distributions over image ids: logits [R, T, V] → [n, T, V].

    `fixed` gives, for each of the T positions, a code it must take (region edits keep the
    codes outside the mask) or None; a fixed position's distribution is a point mass.
    """
    allowed = torch.zeros(logits.shape[-1], dtype=torch.bool)
    allowed[stream.image_offset:stream.vocab_size] = True
    out = []
    for r in range(n):
        cond = logits[r]
        uncond = logits[n + r] if guided else None
        out.append(next_token_probs(cond, uncond, allowed, config, in_image=True))
    probs = torch.stack(out)
    for j, code in enumerate(fixed or []):
        if code is not None:
            probs[:, j] = 0.0
            probs[:, j, stream.image_offset + code] = 1.0
    return probs


class Drafter(Protocol):
    """What picture decoding asks of a drafter (generate.open_pictures, generate.speculative_round).
    A drafter may also draft the reply's words: `draft_words(ids, k, stop) -> list[int]`."""

    def start(self, ids: torch.Tensor, pad: torch.Tensor) -> None:
        """The picture rows' prompts, left-padded [R, L] (pad: each row's padding), before the first code."""

    def observe(self, tokens: torch.Tensor) -> None:
        """Tokens [R, t] the transformer emitted outside speculation."""

    def propose(self, k: int, *, stream: Stream, n: int, guided: bool, config: SamplingConfig,
                generator: torch.Generator, codes: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Up to k drafted ids per picture [n, ≤k] and their distributions [n, ≤k, V] (None: point masses)."""

    def commit(self, drafts: torch.Tensor, m: int, last: torch.Tensor, guided: bool) -> None:
        """`m` codes were emitted: drafts[:, :m-1], then `last` [n]."""


class ModelDrafter:
    """A small transformer drafting codes with its own static cache (same vocabulary)."""

    def __init__(self, model):
        self.model = model
        self.engine: Engine | None = None
        self.unseen: torch.Tensor | None = None       # [R, t] ids emitted but not yet fed

    def start(self, ids: torch.Tensor, pad: torch.Tensor) -> None:
        # an engine of its own, even when drafting with the target's own weights
        if self.engine is None or self.engine.batch != ids.shape[0]:
            self.engine = Engine(self.model, batch=ids.shape[0])
        self.logits = self.engine.prefill(ids, pad)
        self.unseen = None

    def observe(self, tokens: torch.Tensor) -> None:
        """Tokens [R, t] the target emitted outside speculation (fed lazily)."""
        self.unseen = tokens if self.unseen is None else torch.cat([self.unseen, tokens], dim=1)

    def propose(self, k: int, *, stream, n, guided, config, generator, **_) -> tuple[torch.Tensor, torch.Tensor]:
        if self.unseen is not None:
            self.logits = self.engine.step(self.unseen)[:, -1]
            self.unseen = None
        drafts, qs = [], []
        logits = self.logits
        for j in range(k):
            q = image_probs(stream, logits[:, None], n, guided, config)[:, 0]       # [n, V]
            x = sample(q.cpu(), generator)                                           # [n]
            drafts.append(x)
            qs.append(q)
            if j < k - 1:
                logits = self.engine.step(torch.cat([x, x] if guided else [x])[:, None])[:, -1]
        self.fed = k - 1
        return torch.stack(drafts, 1), torch.stack(qs, 1)                         # [n, k], [n, k, V]

    def commit(self, drafts: torch.Tensor, m: int, last: torch.Tensor, guided: bool) -> None:
        """`m` codes were emitted: drafts[:, :m-1] then `last` [n]."""
        k = drafts.shape[1]
        dup = (lambda t: torch.cat([t, t])) if guided else (lambda t: t)   # noqa: E731
        if m - 1 <= self.fed:
            self.engine.rollback(self.fed - (m - 1))
            self.unseen = dup(last)[:, None]
        else:                                     # all k accepted: x_k and the bonus are unseen
            self.unseen = torch.stack([dup(drafts[:, k - 1]), dup(last)], 1)


class CopyDrafter:
    """Training-free: propose the reference picture's code at each position, else the code above.

    Drafts stop early where they are unlikely to survive: each guess comes with the chance it is
    accepted (None: sure enough), and a round's drafts end once all of them surviving together is
    less likely than STOP_BELOW (at least MIN_DRAFTS, at most k). On a CPU a verify pass costs a
    fixed ~9 ms plus ~1 ms per drafted position (both CFG rows), so drafts past a likely rejection
    are waste, while a run of flat background is worth drafting far ahead: simulated on 400
    held-out pictures (the table's confidences, that cost model), stopping this way cut the
    passes' time ~15 % against the best fixed k (8), and measured per picture in
    benchmarks/generate.py."""

    STOP_BELOW = 0.25
    MIN_DRAFTS = 2
    GUESS_CONFIDENCE = 0.8      # the code above is the transformer's likeliest ~83 % of the time, ×~0.96 kept

    def __init__(self, reference: list[int] | None = None):
        self.reference = reference

    def start(self, ids, pad) -> None:
        pass

    def observe(self, tokens) -> None:
        pass

    def guess(self, row: list[int], pos: int) -> tuple[int, float | None]:
        """The code at `pos` given `row`, the codes before it (drawn, then drafted), and the chance it is kept."""
        if pos >= IMAGE_SIDE:
            return row[pos - IMAGE_SIDE], self.GUESS_CONFIDENCE      # the code above
        return (row[-1] if row else 0), self.GUESS_CONFIDENCE        # top row: the code to the left

    def propose(self, k: int, *, stream, n, codes, **_) -> tuple[torch.Tensor, None]:
        rows = [list(c) for c in codes]
        start = len(rows[0])
        chance = [1.0] * n                        # each row's chance that its drafts so far all survive
        for j in range(k):
            guesses = []
            for r in range(n):
                pos = len(rows[r])
                # the picture being edited, where there is one, else this drafter's own guess
                code, p = (self.reference[pos], None) if self.reference is not None else self.guess(rows[r], pos)
                guesses.append(code)
                chance[r] *= 1.0 if p is None else p
            if j >= self.MIN_DRAFTS and max(chance) < self.STOP_BELOW:
                break
            for r, code in enumerate(guesses):
                rows[r].append(code)
        drafts = torch.tensor([row[start:] for row in rows], dtype=torch.long) + stream.image_offset
        return drafts, None                       # q is a point mass on each draft

    def commit(self, drafts, m, last, guided) -> None:
        pass


class NeighbourDrafter(CopyDrafter):
    """The neighbour table's likeliest code at each position (the reference's, in an edit)."""

    def __init__(self, table, reference: list[int] | None = None):
        super().__init__(reference)
        self.table = table

    def guess(self, row: list[int], pos: int) -> tuple[int, float | None]:
        return self.table.draft_with_confidence(row, pos)

    def draft_words(self, ids, k: int, stop=()) -> list[int]:
        return self.table.draft_words(ids, k, stop)


def verify(p: torch.Tensor, drafts: torch.Tensor, q: torch.Tensor | None,
           generator: torch.Generator) -> tuple[list[int], torch.Tensor]:
    """The acceptance rule for one round. p [n, k+1, V], drafts [n, k], q [n, k, V] or None (point masses).

    Returns accepted counts per row and each row's next code [n] (its correction or bonus).
    """
    n, k = drafts.shape
    accepted, nxt = [], torch.zeros(n, dtype=torch.long)
    for r in range(n):
        a = 0
        while a < k:
            x = int(drafts[r, a])
            px = float(p[r, a, x])
            qx = 1.0 if q is None else float(q[r, a, x])
            u = float(torch.rand((), generator=generator))
            if u < min(1.0, px / qx):             # q ≤ p: always accept
                a += 1
                continue
            # rejected: resample from normalise(max(0, p − q))
            if q is None:
                residual = p[r, a].clone()
                residual[x] = 0.0
            else:
                residual = (p[r, a] - q[r, a]).clamp(min=0)
            if float(residual.sum()) <= 0:        # p == q up to rounding
                residual = p[r, a]
            nxt[r] = sample((residual / residual.sum())[None].cpu(), generator)[0]
            break
        if a == k:                                # all accepted: a bonus code from the next p
            nxt[r] = sample(p[r, k][None].cpu(), generator)[0]
        accepted.append(a)
    return accepted, nxt
