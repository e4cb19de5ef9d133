"""The one thread that runs the model for `mmgen serve`, its bounded queue, and the conversations kept
between requests.

The model is not thread-safe, so every piece of model work (a generation, encoding an upload,
decoding a history) is a `Job` run by the single `Worker` thread, in order. A job is a generator
run on that thread; what it yields is handed to the event loop that waits for it. A full queue
answers 429; a job whose client gave up (timed out, hung up) is stopped between two of its items
(a stopped session stream leaves its session as it was) and gives its place in the queue back;
`close()` answers what is still queued with 503.

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

from .server_api import APIError, bad_request
from .session import ChatSession, SessionError

log = logging.getLogger("mmgen.server")
POLL_S = 1.0                    # how often a waiting non-streaming request checks that its client is still there


# --- the one model worker ----------------------------------------------------------------------------
class Done:
    """The end of a job's events."""


DONE = Done()


class Job:
    """One request's model work: a generator run on the worker thread, its items handed to the event loop."""

    def __init__(self, work: Callable[[], Iterator], loop: asyncio.AbstractEventLoop):
        self.work, self.loop = work, loop
        self.cancelled = threading.Event()
        self.items: asyncio.Queue = asyncio.Queue()

    def emit(self, item) -> None:          # worker thread
        try:
            self.loop.call_soon_threadsafe(self.items.put_nowait, item)
        except RuntimeError:               # the event loop is closed: nobody is waiting any more
            self.cancelled.set()

    def cancel(self) -> None:
        self.cancelled.set()

    async def events(self, deadline: float, timeout: float, still_wanted: Callable | None = None):
        """The job's items as they come; APIError if it failed, 504 past the deadline. Leaving early
        (timeout, a client gone, an exception) cancels the job: the worker stops at its next token."""
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
    """The single thread that owns the model; jobs wait in a bounded queue. A job whose client has
    given up (timed out, hung up) no longer holds a place in the queue."""

    def __init__(self, max_queue: int):
        self.max_queue = max_queue
        self.closed = False
        self.current: Job | None = None
        self.served = 0
        self._waiting: deque[Job] = deque()
        self._cond = threading.Condition()
        self.thread = threading.Thread(target=self._loop, name="mmgen-model", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _prune(self) -> None:        # holding the lock
        live = [job for job in self._waiting if not job.cancelled.is_set()]
        if len(live) != len(self._waiting):
            self._waiting = deque(live)

    def submit(self, work: Callable[[], Iterator]) -> Job:
        job = Job(work, asyncio.get_running_loop())
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

    def _next(self) -> Job | None:
        with self._cond:
            while True:
                self._prune()
                if self._waiting:
                    return self._waiting.popleft()
                if self.closed:
                    return None
                self._cond.wait()

    def _loop(self) -> None:
        while (job := self._next()) is not None:
            self.current = job
            try:
                self._run(job)
            except BaseException:     # noqa: BLE001 — nothing may end this thread but close()
                log.exception("the model worker caught an error outside a job")
            finally:
                self.current = None
                self.served += 1

    @staticmethod
    def _run(job: Job) -> None:
        items = None
        try:
            items = job.work()
            for item in items:
                if job.cancelled.is_set():
                    # whoever still listens (not a client that timed out or left) learns why it ended
                    job.emit(APIError(503, "the request was stopped (the server is shutting down)",
                                      code="shutting_down"))
                    break
                job.emit(item)
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
        """Stop taking jobs, answer the queued ones 503, stop the running one, end the thread."""
        with self._cond:
            self.closed = True
            queued, self._waiting = list(self._waiting), deque()
            if self.current is not None:
                self.current.cancel()
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
        """[{id, previous}] from the oldest response still stored to `key`, following previous_response_id."""
        out: list[dict] = []
        seen = set()
        with self._lock:
            while key is not None and key in self._entries and key not in seen:
                seen.add(key)
                out.append({"id": key, "previous": self._entries[key].previous})
                key = self._entries[key].previous
        return out[::-1]

    def __len__(self) -> int:
        return len(self._entries)
