"""The loop that drives an outbox: sends in a thread, sleeps until the next send is due."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection

from momently.deliver.outbox import Outbox, Tally

log = logging.getLogger(__name__)


class OutboxWorker:
    """Runs ``outbox.run_once`` for ``channels`` (all when None) until :meth:`stop`.

    After a pass it waits until the next entry is due, at most ``idle_s``, or
    until :meth:`wake` (call it after an enqueue, from any thread). Sends run in
    a worker thread, so a slow provider never blocks the event loop. Run one
    worker per channel group so a slow SMTP server does not hold up webhooks.
    """

    def __init__(
        self, outbox: Outbox, *, channels: Collection[str] | None = None, idle_s: float = 1.0
    ) -> None:
        if idle_s <= 0:
            raise ValueError("idle_s must be positive")
        self.outbox = outbox
        self.channels = frozenset(channels) if channels is not None else None
        self.idle_s = idle_s
        self.passes = 0
        self.errors = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None
        self._stopping = False

    def wake(self) -> None:
        """Look for work now; safe to call from any thread, before or during run()."""
        loop, event = self._loop, self._event
        if loop is not None and event is not None:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # the loop has closed
                pass

    def stop(self) -> None:
        self._stopping = True
        self.wake()

    def _pass(self) -> tuple[Tally, float]:
        tally = self.outbox.run_once(self.channels)
        if tally.claimed >= self.outbox.batch:
            return tally, 0.0  # a full batch: more may be due already
        due = self.outbox.next_due_ms(self.channels)
        if due is None:
            return tally, self.idle_s
        wait_s = (due - self.outbox.clock.now_ms()) / 1000
        return tally, min(self.idle_s, max(0.0, wait_s))

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._event = asyncio.Event()
        try:
            while not self._stopping:
                self._event.clear()
                try:
                    _, wait_s = await asyncio.to_thread(self._pass)
                except Exception:  # a store error must not end the loop: count, back off
                    self.errors += 1
                    log.exception("outbox pass failed")
                    wait_s = self.idle_s
                self.passes += 1
                if wait_s > 0 and not self._stopping:
                    try:
                        await asyncio.wait_for(self._event.wait(), wait_s)
                    except TimeoutError:
                        pass
        finally:
            self._loop = self._event = None
