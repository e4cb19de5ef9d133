"""Continuous batching: the passes of many requests' decoding drawn together, on one shared cache.

Each request decodes as it would alone — generate.generate_ids with its own grammar, random
generator, settings and drafter — but through a `Lane` instead of a private engine. A lane asks
for a prefill or a pass and waits; `Batch.run()` then does, in one go, what every waiting lane
asked for: each new prompt prefilled on its own (exactly as alone) and copied into free rows of
the shared cache, and every lane's next tokens in one pass over packed tokens
(shared_cache.RowCache), each lane with its own rows, its own number of tokens (one, or a
speculative round's drafts) and its own rollback. A lane that finishes gives its rows back and a
waiting request takes them at the next pass: that is the "continuous" part.

    batch = Batch(model.lm, rows=32, filler=model.stream.pad)
    lanes = batch.lanes(wait)           # `wait()` returns once batch.run() has served the lane
    generate_ids(..., decoders=lanes)   # on the request's own thread; someone calls batch.run()

A request's picture rows branch from its words' row (Lane.branch, as generate.EngineDecoder.branch):
its conversation is prefilled once, and its twin only read past what it shares with it. Guided
words (word_cfg) have a twin of their own: one more one-row lane, prefilled, while the words last.

Who runs what: server_worker.Worker gives each request a thread, lets them run one at a time, and
calls `run()` when all of them are waiting (the `wait` it passes in); with `wait=batch.run`
a lane runs its own passes at once (one request, the tests). The model is only touched by the
thread that calls `run()`.

Exactness: every request's ids are chosen by its own code from its own logits, so a request in a
batch gives what it gives alone up to the rounding of the shared passes (shared_cache.py).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from .generate import common_prefix, engine_for, left_pad
from .shared_cache import Feed, RowCache


@dataclass
class BatchStats:
    passes: int = 0                    # shared passes run
    prefills: int = 0                  # one per request: its conversation (two with guided words: their twin)
    branches: int = 0                  # picture rows laid out from a request's words (no prefill)
    largest: int = 0                   # the most lanes (requests' phases) one pass held
    lanes_fed: int = 0                 # lanes summed over passes (÷ passes: the mean batch)
    tokens: int = 0                    # tokens fed, over all rows and passes
    pass_seconds: float = 0.0          # wall time inside the shared passes
    sizes: dict = field(default_factory=dict)    # lanes in a pass → how many passes


class Lane:
    """One request's rows in the shared batch, with the calls generate_ids makes of a decoder
    (generate.EngineDecoder): start, feed, step, rollback, branch, close."""

    def __init__(self, batch: "Batch", rows: int, wait: Callable[[], None], made: list):
        self.batch, self.size, self.wait, self.made = batch, rows, wait, made
        self.rows: list[int] | None = None
        # what it waits for: ("prefill", ids, pad, vocab), ("step", ids, vocab) or
        # ("branch", source lane, held, copies, twin)
        self.ask: tuple | None = None
        self.answer: torch.Tensor | Exception | None = None
        made.append(self)

    def _await(self, ask: tuple) -> torch.Tensor:
        self.ask, self.answer = ask, None
        self.batch.waiting.append(self)
        try:
            while self.answer is None:
                self.wait()
        finally:
            if self.answer is None:                # stopped while waiting (server_worker.Stopped)
                self.batch.withdraw(self)
        answer, self.answer = self.answer, None
        if isinstance(answer, Exception):          # the pass failed for this lane (Batch.run)
            raise answer
        return answer

    def start(self, ids: torch.Tensor, mask: torch.Tensor, vocab: tuple[int, int] | None = None) -> torch.Tensor:
        """Prefill left-padded prompts ids [R, L] (mask: 1 on real tokens); the last logits [R, V]."""
        if ids.shape[0] != self.size:
            raise ValueError(f"this lane holds {self.size} rows, got {ids.shape[0]}")
        return self._await(("prefill", ids, (1 - mask).sum(-1), vocab))

    def step(self, new: torch.Tensor, vocab: tuple[int, int] | None = None) -> torch.Tensor:
        """Append new [R, T] to the rows; the logits of each new position [R, T, V]."""
        return self._await(("step", new, vocab))

    def feed(self, tokens: torch.Tensor, vocab: tuple[int, int] | None = None) -> torch.Tensor:
        """Append one token per row [R]; the next logits [R, V]."""
        return self.step(tokens[:, None], vocab)[:, -1]

    def rollback(self, k: int) -> None:
        """Forget the rows' last k positions (rejected drafts)."""
        if k:
            self.batch.cache.lengths[self.rows] -= k

    def branch(self, held: list[int], copies: int, twin: list[int] | None, filler: int) -> "Lane":
        """The picture rows, from this one-row lane holding `held` (as generate.EngineDecoder.branch):
        copies of its row, then copies of `twin` read past the part it shares with `held`."""
        lane = Lane(self.batch, copies * (2 if twin is not None else 1), self.wait, self.made)
        lane._await(("branch", self, held, copies, twin))
        return lane

    def close(self) -> None:
        """Give the rows back (the next request takes them)."""
        self.batch.free(self)


class Lanes:
    """A request's maker of lanes (generate_ids' `decoders`); `close()` frees whatever it left open."""

    def __init__(self, batch: "Batch", wait: Callable[[], None]):
        self.batch, self.wait = batch, wait
        self.made: list[Lane] = []

    def __call__(self, model, rows: int) -> Lane:
        if model is not self.batch.model:
            raise ValueError("a batch draws with its own model")
        return Lane(self.batch, rows, self.wait, self.made)

    def close(self) -> None:
        for lane in self.made:
            self.batch.withdraw(lane)
            self.batch.free(lane)
        self.made.clear()


class Batch:
    """The shared cache of `rows` rows, the lanes waiting for it, and the passes that serve them."""

    def __init__(self, model, rows: int = 32, *, filler: int):
        self.model, self.rows, self.filler = model, rows, filler
        self._cache: RowCache | None = None
        self.free_rows = list(range(rows))
        self.waiting: list[Lane] = []
        self.stats = BatchStats()

    @property
    def cache(self) -> RowCache:
        if self._cache is None:       # made on first use: a server that never draws needs no cache
            self._cache = RowCache(engine_for(self.model, 1), self.rows, filler=self.filler)
        return self._cache

    def lanes(self, wait: Callable[[], None] | None = None) -> Lanes:
        """A maker of lanes for one request; `wait` returns once `run()` has run (default: run now)."""
        return Lanes(self, wait or self._run_now)

    def _run_now(self) -> None:
        """One request on its own thread: its passes run as it asks (and so must be served)."""
        self.run()
        if self.waiting:
            raise RuntimeError("too few rows free in the shared batch, and nothing else runs to free them")

    def free(self, lane: Lane) -> None:
        if lane.rows is not None:
            self.free_rows = sorted(self.free_rows + lane.rows)
            lane.rows = None

    @staticmethod
    def _holds_rows(lane: Lane) -> bool:
        """Whether another lane of the same request holds rows (a guided reply's words, its twin asking)."""
        return any(other.rows is not None for other in lane.made if other is not lane)

    def withdraw(self, lane: Lane) -> None:
        if lane in self.waiting:
            self.waiting.remove(lane)

    def run(self) -> None:
        """Serve every waiting lane that can be: prefills first (each alone, then copied into free
        rows; a prompt that finds too few rows free waits for the next run, and so do the prompts
        after it: first come, first served — except the prompt of a request that already holds rows,
        its words' twin (generate.py, word_cfg): queued, it would hold its words' row while it waits,
        and requests that each hold one could leave too few rows for the prompt ahead of them), then
        one pass for all lanes that asked for tokens. What fails is that lane's answer (raised in its
        request), or, for the shared pass, every one of its lanes'."""
        steps, queued = [], False
        for lane in list(self.waiting):
            if lane.ask[0] == "step":
                steps.append(lane)
                if self.cache.room(lane.rows) < lane.ask[1].shape[1]:
                    lane.answer = ValueError(f"the context holds {self.cache.max_len} positions; the reply "
                                             "ran past it")
            elif queued and not (lane.ask[0] == "prefill" and self._holds_rows(lane)):
                if lane.ask[0] == "branch":      # behind a prompt that waits for rows: hold none meanwhile
                    self._as_prompt(lane)
            else:
                try:
                    (self._prefill if lane.ask[0] == "prefill" else self._branch)(lane)
                except Exception as e:     # noqa: BLE001 — the request that asked gets the error
                    lane.answer = e
                queued = queued or lane.answer is None
        steps = [lane for lane in steps if lane.answer is None]
        if steps:
            feeds = [Feed(rows=lane.rows, ids=lane.ask[1], vocab=lane.ask[2]) for lane in steps]
            began = time.perf_counter()
            try:
                answers = self.cache.step(feeds)
            except Exception as e:         # noqa: BLE001
                answers = [e] * len(steps)
            self.stats.pass_seconds += time.perf_counter() - began
            for lane, answer in zip(steps, answers):
                lane.answer = answer
            self._count(feeds)
        self.waiting = [lane for lane in self.waiting if lane.answer is None]

    def _prefill(self, lane: Lane) -> None:
        """Prefill the lane's prompt and copy it into rows of its own, if enough are free."""
        if lane.size > self.rows:
            raise ValueError(f"a request needs {lane.size} rows; the batch has {self.rows}")
        if len(self.free_rows) < lane.size:
            return
        _, ids, pad, vocab = lane.ask
        engine = engine_for(self.model, lane.size)       # the very prefill the request makes alone
        logits = engine.prefill(ids, pad=pad, vocab=vocab)
        lane.rows, self.free_rows = self.free_rows[:lane.size], self.free_rows[lane.size:]
        self.cache.load(lane.rows, engine, ids, pad)
        lane.answer = logits
        self.stats.prefills += 1

    def _branch(self, lane: Lane) -> None:
        """Lay the lane's rows out from its source lane's row — which becomes its first row — with
        no prefill. Where too few rows are free, the source's row is not held while the lane waits
        (two requests each holding a row and waiting for the other's would wait forever): the
        rows become a prompt, prefilled as any other once rows are free."""
        _, source, held, copies, twin = lane.ask
        if lane.size > self.rows:
            raise ValueError(f"a request needs {lane.size} rows; the batch has {self.rows}")
        if len(self.free_rows) < lane.size - 1:
            self._as_prompt(lane)                 # prefilled now if the row it gives back is enough
            self._prefill(lane)
            return
        (row,) = source.rows
        cache = self.cache
        if int(cache.lengths[row]) != len(held) or int(cache.pad[row]) != 0:
            raise ValueError("branch needs a one-row lane holding exactly `held`")
        source.rows = None                                   # the row is the new lane's now
        lane.rows, self.free_rows = [row] + self.free_rows[:lane.size - 1], self.free_rows[lane.size - 1:]
        cache.copy(row, lane.rows[1:copies])
        if twin is not None:
            first = lane.rows[copies]
            cache.copy(row, [first])
            shared = common_prefix(held, twin)
            cache.lengths[first] = shared
            if shared < len(twin):
                cache.step([Feed(rows=[first], ids=torch.tensor([twin[shared:]]))])
            cache.copy(first, lane.rows[copies + 1:])
        lane.answer = torch.empty(0)
        self.stats.branches += 1

    def _as_prompt(self, lane: Lane) -> None:
        """A branch that cannot be served yet waits as a prompt, holding no row: its source's row is
        given back and its rows will be prefilled like any new prompt's."""
        _, source, held, copies, twin = lane.ask
        self.free(source)
        ids, mask, _ = left_pad([held] * copies + ([twin] * copies if twin is not None else []), self.filler)
        lane.ask = ("prefill", ids, (1 - mask).sum(-1), None)

    def _count(self, feeds: list[Feed]) -> None:
        s = self.stats
        s.passes += 1
        s.largest = max(s.largest, len(feeds))
        s.lanes_fed += len(feeds)
        s.tokens += sum(f.ids.numel() for f in feeds)
        s.sizes[len(feeds)] = s.sizes.get(len(feeds), 0) + 1
