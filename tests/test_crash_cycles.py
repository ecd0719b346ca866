"""kill -9 / restart, five times under load, with moments, decisions and sends in flight.

``tests/test_crash.py`` proves the log: acknowledged events survive a kill. This
one runs the whole engine (the moment stage, the decisions, the outbox worker and
a signed webhook to a loopback sink) through five SIGKILLs, each after a count of
acknowledged batches (not a time), then lets it settle and checks:

* every acknowledged messageId is stored exactly once, no unanswered batch torn;
* every complaining customer whose events were acknowledged got the apology, and
  none got two different messages (a repeat of one idempotency key after a crash
  is allowed: the receiver dedupes it by ``webhook-id``).

The long version is ``python benchmarks/run.py soak --crash-cycles N``.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tests.deliver.servers import http_server
from tests.soak import Load, Serve, check, settle, soak_playbook

CYCLES = 5
BATCHES_PER_CYCLE = 8  # acknowledged batches before each kill
DEADLINE_S = 180  # per cycle, after the restart: a safety net on a loaded machine


@pytest.mark.slow
@pytest.mark.integration
def test_five_kill_9_cycles_lose_no_event_and_send_nothing_twice(tmp_path: Path) -> None:
    with http_server() as sink:
        server = Serve(tmp_path / "data", soak_playbook(tmp_path, sink.url))
        server.start()
        load = Load(server.url, rate=100, batch=10, complain_every=3, tag="t")
        try:

            async def cycles(stop: asyncio.Event) -> None:
                for _ in range(CYCLES):
                    deadline = time.monotonic() + DEADLINE_S
                    target = len(load.ledger.acked) + BATCHES_PER_CYCLE
                    while len(load.ledger.acked) < target:  # a count of answers, polled
                        assert time.monotonic() < deadline, "the load made no progress"
                        await asyncio.sleep(0.01)
                    server.kill()  # mid-load: batches are in flight
                    await asyncio.to_thread(server.start)
                deadline = time.monotonic() + DEADLINE_S
                target = len(load.ledger.acked) + BATCHES_PER_CYCLE
                try:
                    while len(load.ledger.acked) < target:
                        assert time.monotonic() < deadline, "the load made no progress"
                        await asyncio.sleep(0.01)
                finally:
                    stop.set()

            async def both() -> None:
                stop = asyncio.Event()
                await asyncio.gather(load.run(float("inf"), stop), cycles(stop))

            asyncio.run(both())
            assert server.starts == CYCLES + 1
            outbox = settle(server)["outbox"]
            checked = check(server.data_dir, load.ledger, sink)
        finally:
            server.stop()
    assert not load.ledger.errors, load.ledger.errors
    assert checked.acked >= (CYCLES + 1) * BATCHES_PER_CYCLE * load.batch
    assert checked.customers_sent_twice == 0
    assert checked.customers_unsent == 0, checked
    assert checked.complainers > 0 and checked.sent_keys >= checked.complainers
    assert outbox.get("dead", 0) == 0 and outbox.get("pending", 0) == 0
