"""The ingest engine with privacy: erased identities dropped, privacy jobs on the writer.

The writer thread is the one writer of the event store and owns the engine's
caches, so an erasure or a retention pass runs there too, between two group
commits: :meth:`PrivacyEngine.call` queues a job and wakes the writer with an
empty submission. Nothing ingested can then interleave with a job, and the
suppression entries an erasure adds hold from the very next group.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import Future
from typing import Any, TypeVar

from momently.engine import Engine, IngestResult, PreparedEvents
from momently.errors import Unavailable
from momently.events import Event
from momently.privacy.suppression import Suppression
from momently.runtime.writer import Writer
from momently.types import Store

T = TypeVar("T")


class PrivacyEngine(Engine):
    """:class:`Engine` that drops events naming an erased identity, and runs jobs."""

    def __init__(self, store: Store, suppression: Suppression, **options: Any) -> None:
        super().__init__(store, **options)
        self.suppression = suppression
        self._jobs: deque[tuple[Callable[[], Any], Future[Any]]] = deque()
        self._jobs_lock = threading.Lock()

    def call(self, writer: Writer, job: Callable[[], T], timeout_s: float = 300.0) -> T:
        """Run ``job`` on the writer thread between two commits; its result or its error."""
        future: Future[T] = Future()
        with self._jobs_lock:
            self._jobs.append((job, future))
        try:
            writer.submit([])  # wakes the writer, which runs the jobs before its next commit
        except RuntimeError as exc:  # the writer is closed: the engine is stopping
            future.cancel()
            raise Unavailable(retry_after=5) from exc
        try:
            return future.result(timeout_s)
        except TimeoutError as exc:  # the writer is far behind; the job still runs
            raise Unavailable(retry_after=5) from exc

    def _run_jobs(self) -> None:
        while True:
            with self._jobs_lock:
                if not self._jobs:
                    return
                job, future = self._jobs.popleft()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(job())
            except BaseException as exc:  # the caller hears it; the writer goes on
                future.set_exception(exc)

    def ingest_groups(self, groups: Sequence[Sequence[Event]]) -> list[IngestResult]:
        if self._jobs:
            self._run_jobs()
        if len(self.suppression):
            drops = self.suppression.drops
            groups = [
                group.without(drops)
                if isinstance(group, PreparedEvents)  # keeps the parse workers' payloads
                else [e for e in group if not drops(e)]
                for group in groups
            ]
        return super().ingest_groups(groups)

    def forget(self, customers: Collection[str]) -> None:
        """Drop the cached identities and profiles of erased customers."""
        for key in [k for k, c in self._owners.items() if c in customers]:
            del self._owners[key]
        for customer in customers:
            self._profiles.pop(customer, None)
