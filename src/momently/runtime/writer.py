"""Group commit: one thread owns the engine and commits many requests at once.

Requests hand their events to :meth:`Writer.submit` and wait on the returned
future; the writer thread drains everything queued, commits it in one
transaction (one fsync), and only then resolves the futures. So a request is
acknowledged exactly when its events are durable, and a burst of requests
costs one commit, not one each.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future

from momently.engine import Engine, IngestResult
from momently.errors import Overloaded, Unavailable
from momently.events import Event

log = logging.getLogger(__name__)
THREAD_NAME = "momently-writer"


def _name_os_thread(name: str) -> None:
    """Show the calling thread's name to the OS (``top -H``, ``/proc``), where it can.

    Python 3.11 names its threads only for itself; Linux takes up to 15 bytes here.
    """
    try:
        with open(f"/proc/self/task/{threading.get_native_id()}/comm", "w") as comm:
            comm.write(name[:15])
    except OSError:
        pass  # not Linux, or /proc is not there: the name is only cosmetic


class Writer:
    """The single writer thread in front of an :class:`Engine`."""

    def __init__(
        self,
        engine: Engine,
        *,
        max_pending: int = 100_000,
        max_group: int = 20_000,
        on_commit: Callable[[int, float], None] | None = None,
        quiet_seconds: float = 0.02,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_pending < 1 or max_group < 1:
            raise ValueError("max_pending and max_group must be positive")
        self.engine = engine
        self.max_pending = max_pending
        self.max_group = max_group
        self._on_commit = on_commit
        self._queue: deque[tuple[Sequence[Event], Future[IngestResult]]] = deque()
        self._pending = 0
        self._cond = threading.Condition()
        self._closed = False
        self.quiet_seconds = quiet_seconds
        self._monotonic = monotonic  # the clock busy() reads (tests pass their own)
        self._committed = float("-inf")  # monotonic() at the end of the last commit
        self._thread = threading.Thread(target=self._run, name=THREAD_NAME, daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        return self._pending

    def busy(self) -> bool:
        """Whether ingestion is under way: events queued, or a commit ended just now.

        Between one commit and the next request's events, the queue is empty for
        the moment it takes the event loop to parse them; work that gives way to
        ingestion (the moment stage) must not take the GIL in that gap.
        """
        return self._pending > 0 or self._monotonic() - self._committed < self.quiet_seconds

    def submit(self, events: Sequence[Event]) -> Future[IngestResult]:
        """Queue events for the next group commit; raises :class:`Overloaded` when full."""
        future: Future[IngestResult] = Future()
        with self._cond:
            if self._closed:
                raise RuntimeError("the writer is closed")
            if self._pending and self._pending + len(events) > self.max_pending:
                raise Overloaded(retry_after=1)
            self._queue.append((events, future))
            self._pending += len(events)
            self._cond.notify()
        return future

    async def write(self, events: Sequence[Event]) -> IngestResult:
        """Submit and wait, from asyncio code."""
        return await asyncio.wrap_future(self.submit(events))

    def _take(self) -> list[tuple[Sequence[Event], Future[IngestResult]]] | None:
        with self._cond:
            while not self._queue and not self._closed:
                self._cond.wait()
            if not self._queue:
                return None
            taken: list[tuple[Sequence[Event], Future[IngestResult]]] = []
            size = 0
            while self._queue and (not taken or size + len(self._queue[0][0]) <= self.max_group):
                item = self._queue.popleft()
                # Running futures cannot be cancelled any more (asyncio cancels the
                # future of a request that was cancelled); ones cancelled already
                # still have their events committed, but nobody is told.
                item[1].set_running_or_notify_cancel()
                taken.append(item)
                size += len(item[0])
            return taken

    def _run(self) -> None:
        _name_os_thread(THREAD_NAME)
        while (taken := self._take()) is not None:
            size = sum(len(events) for events, _ in taken)
            started = time.perf_counter()
            try:
                results = self.engine.ingest_groups([events for events, _ in taken])
            except Exception:
                if len(taken) == 1:
                    self._fail(taken, size)
                    continue
                # One submission must not sink the others it was grouped with:
                # the failed commit rolled back, so commit each on its own.
                for item in taken:
                    self._one(item)
            else:
                # Room is freed before anyone hears back, so a client that sends its
                # next request on the answer is not refused for its own last one.
                self._release(size)
                self._committed = self._monotonic()
                for (_, future), result in zip(taken, results, strict=True):
                    if not future.cancelled():
                        future.set_result(result)
                if self._on_commit is not None:
                    self._on_commit(size, time.perf_counter() - started)

    def _one(self, item: tuple[Sequence[Event], Future[IngestResult]]) -> None:
        events, future = item
        try:
            result = self.engine.ingest_groups([events])[0]
        except Exception:
            self._fail([item], len(events))
        else:
            self._release(len(events))
            if not future.cancelled():
                future.set_result(result)

    def _fail(self, taken: list[tuple[Sequence[Event], Future[IngestResult]]], size: int) -> None:
        """Tell the waiters their events were not stored; the rollback left nothing behind."""
        log.exception("commit of %d events failed; the waiters are told to retry", size)
        self._release(size)
        for _, future in taken:
            if not future.cancelled():
                future.set_exception(Unavailable(retry_after=1))

    def _release(self, size: int) -> None:
        with self._cond:
            self._pending -= size

    def close(self) -> None:
        """Commit what is queued, then stop the thread."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join()
