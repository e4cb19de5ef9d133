"""The worker that runs the model for `mmgen serve`, its bounded queue, and the conversations kept
between requests.

Every piece of model work (a generation, encoding an upload, decoding a history) is a `Job`: a
generator whose items are handed to the event loop that waits for them. Up to `max_active` jobs run
at once, each on a thread of its own, but one at a time — the model is not thread-safe — taking
turns: a job runs until it waits for a pass of the transformer (batching.Lane) or ends, then the
next one runs; once every running job waits, the worker draws all their passes together
(batching.Batch.run: new prompts prefilled, every other request's next tokens in one shared pass)
and the next round of turns begins. A job that ends frees its place and its cache rows, and the
first waiting job takes them at once: continuous batching. Jobs start in the order they came.

A full queue answers 429; a job whose client gave up (timed out, hung up) is stopped at its next
turn — between two of its items, or where it waits for the model (`Stopped`) — and leaves its
session as it was (session.py); a queued one gives its place back. `close()` answers what is still
queued with 503 and stops the running ones.

`SessionStore` keeps finished conversations by response id (least recently used dropped first).
A stored conversation is never changed — a new turn forks it — so any earlier response can be
continued (branching), and undo is going back to an earlier id.
"""
from __future__ import annotations

import asyncio
import logging
import threading
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Callable, Iterator

from .batching import Batch, Lanes
from .server_api import APIError, bad_request
from .session import ChatSession, SessionError

log = logging.getLogger("mmgen.server")
POLL_S = 1.0                    # how often a waiting non-streaming request checks that its client is still there


# --- the model worker ----------------------------------------------------------------------------------
class Done:
    """The end of a job's events."""


DONE = Done()


class Stopped(Exception):
    """Raised in a job's thread where it waits for the model, once the job is cancelled."""


class Job:
    """One request's model work: a generator run on a thread of its own, in turns (Worker), its items
    handed to the event loop. `batched` work is called with its lanes into the shared batch."""

    def __init__(self, work: Callable[..., Iterator], loop: asyncio.AbstractEventLoop, *, handback: threading.Semaphore,
                 batched: bool = False):
        self.work, self.loop, self.batched = work, loop, batched
        self.cancelled = threading.Event()
        self.items: asyncio.Queue = asyncio.Queue()
        self.lanes: Lanes | None = None
        self.ended = False
        self._turn = threading.Semaphore(0)       # released by the worker: this job may run
        self._handback = handback                 # released by the job: its turn is over

    def emit(self, item) -> None:          # the job's thread
        try:
            self.loop.call_soon_threadsafe(self.items.put_nowait, item)
        except RuntimeError:               # the event loop is closed: nobody is waiting any more
            self.cancelled.set()

    def cancel(self) -> None:
        self.cancelled.set()

    # --- turns: the worker and the job's thread hand the model to each other ---
    def run_turn(self) -> None:
        """The worker: let the job run until it waits for the model or ends."""
        self._turn.release()
        self._handback.acquire()

    def wait(self) -> None:
        """The job's thread: end this turn, and return at the next (after the batch's passes)."""
        self._handback.release()
        self._turn.acquire()
        if self.cancelled.is_set():
            raise Stopped()

    def first_turn(self) -> None:
        """The job's thread, before anything else: wait to be given the model."""
        self._turn.acquire()

    def end(self) -> None:
        """The job's thread, last: the job is over, its turn too."""
        self.ended = True
        self._handback.release()

    async def events(self, deadline: float, timeout: float, still_wanted: Callable | None = None):
        """The job's items as they come; APIError if it failed, 504 past the deadline. Leaving early
        (timeout, a client gone, an exception) cancels the job: it stops at its next turn."""
        try:
            while True:
                remaining = deadline - self.loop.time()
                if remaining <= 0:
                    raise APIError(504, f"the request took longer than the server's {timeout:g} s limit and was "
                                        "stopped", code="timeout")
                try:
                    item = await asyncio.wait_for(self.items.get(), min(remaining, POLL_S))
                except asyncio.TimeoutError:
                    if still_wanted is not None and not await still_wanted():
                        raise ClientGone() from None
                    continue
                if item is DONE:
                    return
                if isinstance(item, APIError):
                    raise item
                yield item
        finally:
            self.cancel()

    async def result(self, deadline: float, timeout: float, request=None):
        """The last item of a job (its result), waiting as `events` does."""
        last = None
        still_wanted = (lambda: _connected(request)) if request is not None else None
        async for item in self.events(deadline, timeout, still_wanted):
            last = item
        if last is None:
            raise APIError(503, "the request was stopped before it finished", code="shutting_down")
        return last


async def _connected(request) -> bool:
    return not await request.is_disconnected()


class ClientGone(Exception):
    """The client hung up while its request waited: the work is dropped and nobody gets an answer."""


class Worker:
    """Runs jobs in turns, up to `max_active` at once, with `batch`'s shared passes between rounds;
    the others wait in a bounded queue. A job whose client has given up (timed out, hung up) no
    longer holds a place in the queue."""

    def __init__(self, max_queue: int, *, batch: Batch | None = None, max_active: int = 16):
        self.max_queue, self.batch, self.max_active = max_queue, batch, max_active
        self.closed = False
        self.active: list[Job] = []              # started, in the order they came
        self.served = 0
        self._waiting: deque[Job] = deque()
        self._cond = threading.Condition()
        self._handback = threading.Semaphore(0)
        self.thread = threading.Thread(target=self._loop, name="mmgen-model", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _prune(self) -> None:        # holding the lock
        live = [job for job in self._waiting if not job.cancelled.is_set()]
        if len(live) != len(self._waiting):
            self._waiting = deque(live)

    def submit(self, work: Callable[..., Iterator], *, batched: bool = False) -> Job:
        """Queue `work()` — or, `batched`, `work(lanes)`: its generations then draw in the shared batch."""
        job = Job(work, asyncio.get_running_loop(), handback=self._handback, batched=batched)
        with self._cond:
            if self.closed:
                raise APIError(503, "the server is shutting down", code="shutting_down")
            self._prune()
            if len(self._waiting) >= self.max_queue:
                raise APIError(429, f"the server is busy: {self.max_queue} requests are already waiting for the "
                                    "model; try again shortly", code="queue_full", headers={"Retry-After": "1"})
            self._waiting.append(job)
            self._cond.notify()
        return job

    @property
    def waiting(self) -> int:
        with self._cond:
            self._prune()
            return len(self._waiting)

    @property
    def busy(self) -> bool:
        return bool(self.active)

    def _admit(self) -> bool:
        """Start waiting jobs while there is room; wait for one when none runs. False: closed and done."""
        with self._cond:
            while True:
                self._prune()
                while self._waiting and len(self.active) < self.max_active:
                    self._start(self._waiting.popleft())
                if self.active:
                    return True
                if self.closed:
                    return False
                self._cond.wait()

    def _start(self, job: Job) -> None:     # holding the lock
        if job.batched and self.batch is not None:
            job.lanes = self.batch.lanes(job.wait)
        self.active.append(job)
        threading.Thread(target=self._job_thread, args=(job,), name="mmgen-job", daemon=True).start()

    def _loop(self) -> None:
        while self._admit():
            try:
                for job in list(self.active):
                    job.run_turn()
                    if job.ended:
                        with self._cond:
                            self.active.remove(job)
                        self.served += 1
                if self.batch is not None and self.batch.waiting:
                    self.batch.run()
            except BaseException:     # noqa: BLE001 — nothing may end this thread but close()
                log.exception("the model worker caught an error outside a job")

    def _job_thread(self, job: Job) -> None:
        job.first_turn()
        try:
            self._run(job)
        finally:
            if job.lanes is not None:
                job.lanes.close()       # rows a stopped generation still held go back to the batch
            job.end()

    @staticmethod
    def _run(job: Job) -> None:
        items = None
        try:
            if job.cancelled.is_set():
                raise Stopped()
            items = job.work(job.lanes) if job.batched else job.work()
            for item in items:
                if job.cancelled.is_set():
                    raise Stopped()
                job.emit(item)
        except Stopped:
            # whoever still listens (not a client that timed out or left) learns why it ended
            job.emit(APIError(503, "the request was stopped (the server is shutting down)", code="shutting_down"))
        except APIError as e:
            job.emit(e)
        except SessionError as e:
            job.emit(bad_request(str(e)))
        except Exception:       # noqa: BLE001 — the traceback goes to the log, the client gets a clean 500
            log.exception("model work failed")
            job.emit(APIError(500, "the model failed on this request; the server log has the details",
                              code="internal_error"))
        finally:
            if hasattr(items, "close"):
                items.close()    # a stopped stream leaves its session as it was (session.py)
            job.emit(DONE)

    def close(self, timeout: float = 10.0) -> None:
        """Stop taking jobs, answer the queued ones 503, stop the running ones, end the thread."""
        with self._cond:
            self.closed = True
            queued, self._waiting = list(self._waiting), deque()
            for job in self.active:
                job.cancel()
            self._cond.notify_all()
        for job in queued:
            job.emit(APIError(503, "the server is shutting down", code="shutting_down"))
            job.emit(DONE)
        if self.thread.is_alive():
            self.thread.join(timeout)


# --- conversations ------------------------------------------------------------------------------------
@dataclass
class Entry:
    session: ChatSession         # after this response; never changed again (new turns fork it)
    response: dict               # the Responses API object, as returned
    previous: str | None


class SessionStore:
    """Conversations by response id, in memory, least recently used dropped first."""

    def __init__(self, cap: int):
        self.cap = cap
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, key: str, entry: Entry) -> None:
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self.cap:
                self._entries.popitem(last=False)

    def get(self, key: str) -> Entry | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
            return entry

    def delete(self, key: str) -> bool:
        with self._lock:
            return self._entries.pop(key, None) is not None

    def chain(self, key: str) -> list[dict]:
        """[{id, previous}] for the exchanges of `key`'s conversation that stored responses hold, oldest
        first: `previous` is the response to go back to when that exchange is undone — the nearest
        earlier one (following previous_response_id) whose conversation is this one less its last
        exchange. Mostly that is simply the previous response; an undo in words (typed_undo.py) makes
        a response whose conversation is shorter than its previous one's, and the chain skips over
        the responses it undid."""
        with self._lock:
            lineage, seen = [], set()             # (id, its conversation's turns, its previous id)
            while key is not None and key in self._entries and key not in seen:
                seen.add(key)
                entry = self._entries[key]
                lineage.append((key, entry.session.conversation.turns, entry.previous))
                key = entry.previous
        out, at = [], 0
        while at < len(lineage) and lineage[at][1]:
            key, turns, previous = lineage[at]
            before = next((j for j in range(at + 1, len(lineage)) if lineage[j][1] == turns[:-2]), None)
            if before is None:         # the first exchange goes back to nothing; else memory ends here
                out.append({"id": key, "previous": None if len(turns) <= 2 else previous})
                break
            out.append({"id": key, "previous": lineage[before][0]})
            at = before
        return out[::-1]

    def __len__(self) -> int:
        return len(self._entries)
