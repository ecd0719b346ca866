"""The worker loop: wakes on enqueue, sends, and stops cleanly."""

from __future__ import annotations

import asyncio

from momently.clock import FakeClock
from momently.deliver.outbox import Outbox
from momently.deliver.records import Entry
from momently.deliver.store_memory import MemoryOutboxStore
from momently.deliver.worker import OutboxWorker
from tests.deliver.fakes import ScriptedChannel, message


class Broken(MemoryOutboxStore):
    def __init__(self) -> None:
        super().__init__()
        self.fail = 1

    def claim(self, **kw):  # type: ignore[no-untyped-def]
        if self.fail:
            self.fail -= 1
            raise OSError("disk I/O error")
        return super().claim(**kw)


def test_worker_sends_on_wake_and_survives_a_store_error(clock: FakeClock) -> None:
    async def run() -> tuple[list[str], int]:
        loop = asyncio.get_running_loop()
        sent: asyncio.Queue[Entry] = asyncio.Queue()
        provider = ScriptedChannel()

        def heard(entry: Entry) -> None:
            loop.call_soon_threadsafe(sent.put_nowait, entry)

        box = Outbox(Broken(), clock, {"hook": [provider]}, listener=heard)
        worker = OutboxWorker(box, idle_s=0.05)
        task = asyncio.create_task(worker.run())
        box.enqueue(message("de-1"))
        worker.wake()
        first = await asyncio.wait_for(sent.get(), 10)
        box.enqueue(message("de-2"))
        worker.wake()
        second = await asyncio.wait_for(sent.get(), 10)
        worker.stop()
        await asyncio.wait_for(task, 10)
        return [first.decision_id, second.decision_id], worker.errors

    assert asyncio.run(run()) == (["de-1", "de-2"], 1)
