"""Failover: a worker dies or stalls, another takes its partitions after the lease, and
every acknowledged event is processed once in effect, with no decision made twice."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import nats.errors
import pytest

from momently.clock import FakeClock
from momently.deliver.message import idempotency_key
from momently.distributed.command import open_outbox
from momently.distributed.deliver import WorkerDelivery
from momently.distributed.log import EventLog, LogSettings
from momently.distributed.partition import subject
from momently.distributed.shard import partition_url
from momently.distributed.worker import Worker
from momently.events import Event
from momently.moments.detector import MomentDetector
from momently.moments.playbook import load_playbook
from momently.store import open_store
from tests.distributed.scenario import HOUR, T0, embedded, events, outputs
from tests.distributed.test_worker import _what, drain, settings
from tests.ports import free_port
from tests.postgres import DATABASE, Cluster

pytestmark = [pytest.mark.slow, pytest.mark.integration]
PARTITIONS = 4
TTL_MS = 5_000


@pytest.fixture(scope="module")
def detector() -> MomentDetector:
    return MomentDetector(load_playbook())


async def publish(url: str, batch: list[Event]) -> None:
    log = await EventLog.open(LogSettings.from_url(url))
    for start in range(0, len(batch), 50):
        result = await log.write(batch[start : start + 50])
        assert result.accepted + result.duplicates == len(batch[start : start + 50])
    await log.close()


async def finish(worker: Worker, url: str, rounds: int = 400) -> None:
    """Rounds until every partition's store has committed the stream's last message."""
    s = LogSettings.from_url(url)
    assert worker._js is not None
    last = {}
    for p in range(PARTITIONS):
        try:
            msg = await worker._js.get_last_msg(s.stream, subject(s.stream, p))
            last[p] = msg.seq or 0
        except Exception:  # no message in this partition
            last[p] = 0
    for _ in range(rounds):
        try:
            await worker.round()
        except (nats.errors.Error, TimeoutError):  # as Worker.run: a node failing over
            await asyncio.sleep(0.1)
            continue
        if sorted(worker.shards) == list(range(PARTITIONS)) and all(
            worker.shards[p].position >= last[p] for p in range(PARTITIONS) if last[p]
        ):
            return
    raise AssertionError("the worker did not catch up in the rounds allowed")


def check(
    path: Path, detector: MomentDetector, batch: list[Event], worker: Worker, start: int = T0
) -> None:
    """Each event stored once; the moments and decisions the embedded mode makes."""
    end = max(e.timestamp_ms for e in batch) + 3 * HOUR
    want_moments, want_decisions = embedded(path, detector, batch, end, start)
    shards = [worker.shards[p] for p in range(PARTITIONS)]
    assert sum(s.store.stats()["events"] for s in shards) == len(batch)
    got_moments, got_decisions = outputs([s.moments for s in shards])
    assert len({d.decision_id for d in got_decisions}) == len(got_decisions)
    assert [m.moment_id for m in got_moments] == [m.moment_id for m in want_moments]
    assert _what(got_decisions) == _what(want_decisions)


def test_a_stalled_owner_is_fenced_and_its_partitions_move(
    log_url: Callable[..., str], tmp_path: Path, detector: MomentDetector
) -> None:
    """A pauses holding fetched messages; B takes over after the lease; A's late writes
    are refused by the store, and B processes everything."""
    batch = events(seed=11)
    first, second = batch[: len(batch) // 2], batch[len(batch) // 2 :]
    url = log_url(partitions=PARTITIONS)
    all_parts = tuple(range(PARTITIONS))
    clock_b = FakeClock(T0)

    async def run() -> Worker:
        await publish(url, first)
        clock_a = FakeClock(T0)
        a = Worker(settings(url, tmp_path, "a", all_parts), detector, clock_a)
        b = Worker(settings(url, tmp_path, "b", all_parts), detector, clock_b)
        await a.start()
        await b.start()
        assert await drain([a], len(first)) == len(first)
        await b.balance()
        assert not b.shards  # A holds every lease
        await publish(url, second)
        fetched = {p: await a._fetch(p) for p in sorted(a.shards)}
        assert sum(len(m) for m in fetched.values()) > 0
        clock_b.advance(TTL_MS + 1)  # A's leases run out by B's clock: A is paused
        await b.balance()
        assert sorted(b.shards) == list(all_parts)
        for p, msgs in fetched.items():
            assert await a._apply(p, msgs) == 0  # fenced: nothing written
        # A closed every partition where it tried to write; the others (nothing
        # fetched, nothing written) it closes when its renewal fails.
        assert set(a.shards) == {p for p, msgs in fetched.items() if not msgs}
        clock_a.advance(TTL_MS // 2)
        await a.balance()
        assert not a.shards and not a.leases
        await finish(b, url)
        clock_b.set(max(e.timestamp_ms for e in batch) + 3 * HOUR)
        for shard in b.shards.values():
            shard.tick()
        await a.stop()
        return b

    async def main() -> None:
        b = await run()
        check(tmp_path, detector, batch, b)
        await b.stop()

    asyncio.run(main())


@dataclass(frozen=True)
class Stores:
    """Where the workers keep the partitions' state and their shared outbox (URLs, the
    partitions' with ``{partition}``), as ``momently worker --store --moments --outbox``."""

    store: str
    moments: str
    outbox: str

    def events(self, partitions: int) -> list[int]:
        """The events each partition's store holds."""
        found = []
        for p in range(partitions):
            store = open_store(partition_url(self.store, p))
            try:
                found.append(store.stats()["events"])
            finally:
                store.close()
        return found


_schemas = itertools.count(1)


def sqlite_stores(path: Path) -> Stores:
    return Stores(
        f"sqlite:///{path}/p{{partition}}.db?synchronous=OFF",
        f"sqlite:///{path}/m{{partition}}.db?synchronous=OFF",
        f"sqlite:///{path}/outbox.db",
    )


def postgres_stores(cluster: Cluster) -> Stores:
    """A schema per partition (its log, state, moments and fence) and one for the outbox."""
    n = next(_schemas)
    base = cluster.url_for_database(DATABASE)
    partition = f"{base}?schema=fo{n}p{{partition}}"
    return Stores(partition, partition, f"{base}?schema=fo{n}outbox")


@pytest.fixture(params=["sqlite", "postgresql"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Stores:
    if request.param == "sqlite":
        return sqlite_stores(tmp_path)
    return postgres_stores(request.getfixturevalue("postgres"))


def start_worker(
    url: str, stores: Stores, owner: str, port: int, log: Path, *extra: str
) -> subprocess.Popen[bytes]:
    """A ``momently worker`` process with a shared outbox; its log in ``log``."""
    with log.open("ab") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "momently.cli", "worker", "--log", url,
             "--store", stores.store, "--moments", stores.moments, "--outbox", stores.outbox,
             "--owner", owner, "--lease-ttl-ms", str(TTL_MS), "--port", str(port), *extra],
            stdout=subprocess.DEVNULL, stderr=err, env={**os.environ},
        )  # fmt: skip


def metrics(port: int) -> dict[str, float]:
    """A worker's /metrics, sample (name and labels) -> value; empty if it does not answer."""
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    except httpx.HTTPError:
        return {}
    return {
        sample: float(value)
        for line in text.splitlines()
        if line and not line.startswith("#")
        for sample, value in [line.rsplit(" ", 1)]
    }


def total(found: dict[str, float], name: str) -> float:
    """A metric added over its labels."""
    return sum(v for sample, v in found.items() if sample.startswith(name + "{"))


def take_over(
    url: str,
    tmp_path: Path,
    stores: Stores,
    detector: MomentDetector,
    batch: list[Event],
    start: int,
    *,
    held: bool,
) -> None:
    """An heir worker on the same stores and outbox takes every partition (after the
    leases run out by its clock if ``held``: the former owners died holding them), applies
    what is left, fires every timer; then each event is stored once, the moments and
    decisions are the embedded mode's, and every send decided is in the outbox once."""
    clock = FakeClock(time.time_ns() // 1_000_000)
    outbox = open_outbox(stores.outbox)
    delivery = WorkerDelivery(load_playbook(), outbox, clock)

    async def main() -> None:
        heir = replace(
            settings(url, tmp_path, "heir", tuple(range(PARTITIONS))),
            store_url=stores.store,
            moments_url=stores.moments,
        )
        w = Worker(heir, detector, clock, deliver=delivery.for_partition)
        await w.start()
        try:
            await w.balance()
            if held:
                assert not w.shards  # the dead worker's leases still run
                clock.advance(TTL_MS + 1)
            else:
                assert sorted(w.shards) == list(range(PARTITIONS))  # released on SIGTERM
            await finish(w, url)
            clock.set(max(e.timestamp_ms for e in batch) + 3 * HOUR)
            for shard in w.shards.values():
                shard.tick()
            check(tmp_path, detector, batch, w, start)
            # Every send decided is in the outbox once: the former owners' submits, the
            # heir's replayed ones and its reconcile at takeover all fell on one key each.
            _, decisions = outputs([s.moments for s in w.shards.values()])
            sends = [
                d for d in decisions
                if d.action in ("send", "schedule") and d.holdout is None
                and d.status == "decided"
            ]  # fmt: skip
            assert sends
            for d in sends:
                assert outbox.get(idempotency_key(d.decision_id, d.channel or "")) is not None
            assert sum(outbox.counts().values()) == len(sends)
        finally:
            await w.stop()

    try:
        asyncio.run(main())
    finally:
        delivery.close()


def recent_events(customers: int, seed: int) -> tuple[int, list[Event]]:
    """Events of the last minutes: the workers run on the wall clock, and no timer (an
    hour's absence) may fall due while the events go in, as in the embedded run."""
    start = time.time_ns() // 1_000_000 - 10 * 60_000
    return start, events(customers=customers, seed=seed, start=start)


def test_kill_9_a_worker_and_another_takes_over_exactly_once(
    log_url: Callable[..., str], tmp_path: Path, detector: MomentDetector, stores: Stores
) -> None:
    start, batch = recent_events(customers=40, seed=5)
    url = log_url(partitions=PARTITIONS)
    asyncio.run(publish(url, batch))
    port = free_port()
    proc = start_worker(url, stores, "doomed", port, tmp_path / "doomed.log")
    try:
        deadline = time.monotonic() + 60
        while total(metrics(port), "momently_partition_events_total") == 0:
            assert proc.poll() is None, "the worker exited"
            assert time.monotonic() < deadline, "the worker applied nothing in 60 s"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    assert 0 < sum(stores.events(PARTITIONS))  # killed part-way (or, when fast, at the end)
    take_over(url, tmp_path, stores, detector, batch, start, held=True)
