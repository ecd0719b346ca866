"""Workers: leases, fencing, and the same moments and decisions as the embedded mode."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from momently.cli import main
from momently.clock import FakeClock
from momently.decide.records import Decision
from momently.distributed.lease import Leases
from momently.distributed.log import EventLog, LogSettings, connect
from momently.distributed.worker import Worker, WorkerSettings
from momently.moments.detector import MomentDetector
from momently.moments.model import Moment
from momently.moments.playbook import load_playbook
from momently.types import Fence
from tests.distributed.scenario import HOUR, T0, embedded, events, outputs
from tests.postgres import DATABASE, Cluster

pytestmark = [pytest.mark.slow, pytest.mark.integration]


@pytest.fixture(scope="module")
def detector() -> MomentDetector:
    return MomentDetector(load_playbook())


def settings(url: str, path: Path, owner: str, partitions: tuple[int, ...]) -> WorkerSettings:
    return WorkerSettings(
        log=LogSettings.from_url(url),
        store_url=f"sqlite:///{path}/p{{partition}}.db?synchronous=OFF",
        moments_url=f"sqlite:///{path}/m{{partition}}.db?synchronous=OFF",
        partitions=partitions,
        owner=owner,
        lease_ttl_ms=5_000,
        fetch_wait_s=0.05,
    )


async def drain(workers: list[Worker], expected: int, rounds: int = 400) -> int:
    """Rounds until the workers have applied ``expected`` events (bounded by rounds)."""
    done = 0
    for _ in range(rounds):
        for worker in workers:
            done += await worker.round()
        if done >= expected:
            break
    return done


def test_leases_are_exclusive_expire_by_the_clock_and_fence(log_url: Callable[..., str]) -> None:
    async def run() -> None:
        s = LogSettings.from_url(log_url())
        client = await connect(s, "t")
        js = client.jetstream()
        clock = FakeClock(T0)
        a = await Leases.open(js, f"{s.stream}_l", "a", clock, ttl_ms=1_000)
        b = await Leases.open(js, f"{s.stream}_l", "b", clock, ttl_ms=1_000)
        first = await a.acquire(3)
        assert first is not None
        assert await b.acquire(3) is None  # held
        clock.advance(999)
        assert await b.acquire(3) is None  # not yet run out
        renewed = await a.renew(first)
        assert renewed is not None and renewed.token == first.token
        clock.advance(1_001)  # past the renewed expiry
        taken = await b.acquire(3)
        assert taken is not None and taken.token > first.token  # the fencing token grows
        assert await a.renew(renewed) is None  # a learns it lost the lease
        await b.release(taken)
        again = await a.acquire(3)  # released: free at once
        assert again is not None and again.token > taken.token
        await client.close()

    asyncio.run(run())


def _what(decisions: list[Decision]) -> list[tuple[object, ...]]:
    """What a decision decides, its score aside (see the test below)."""
    return [
        (d.decision_id, d.customer_id, d.moment_id, d.action, d.offer, d.channel, d.send_at_ms,
         d.holdout, d.status)
        for d in decisions
    ]  # fmt: skip


@pytest.mark.parametrize("partitions", [8, 1])
def test_workers_produce_what_the_embedded_mode_does(
    partitions: int, log_url: Callable[..., str], tmp_path: Path, detector: MomentDetector
) -> None:
    """The moments are the same; so are the decisions, except that with more than one
    partition each learns its population models (propensity, value, the bandit) from its
    own customers, so scores differ while here every choice is the same. One partition
    is the embedded mode exactly."""
    batch = events()
    end = max(e.timestamp_ms for e in batch) + 3 * HOUR
    want_moments, want_decisions = embedded(tmp_path, detector, batch, end)
    assert want_moments and want_decisions  # the scenario means something
    url = log_url(partitions=partitions)
    half = max(1, partitions // 2)

    async def run() -> tuple[int, list[int], list[Moment], list[Decision]]:
        log = await EventLog.open(LogSettings.from_url(url))
        for start in range(0, len(batch), 50):
            await log.write(batch[start : start + 50])
        await log.close()
        clock = FakeClock(T0)
        workers = [
            Worker(settings(url, tmp_path, "w1", tuple(range(half))), detector, clock),
            Worker(settings(url, tmp_path, "w2", tuple(range(half, partitions))), detector, clock),
        ]
        for w in workers:
            await w.start()
        done = await drain(workers, len(batch))
        clock.set(end)
        shards = [s for w in workers for s in w.shards.values()]
        for shard in shards:
            shard.tick()
        found = outputs([s.moments for s in shards])
        for w in workers:
            await w.stop()
        return done, sorted(s.partition for s in shards), *found

    done, owned, got_moments, got_decisions = asyncio.run(run())
    assert done == len(batch)
    assert owned == list(range(partitions))
    assert got_moments == want_moments
    assert _what(got_decisions) == _what(want_decisions)
    if partitions == 1:
        assert got_decisions == want_decisions


@pytest.mark.parametrize(
    "flags",
    [
        ["--partitions", "9"],  # outside the stream's 8
        ["--partitions", "two"],
        ["--store", "sqlite:///tmp/one.db"],  # every partition needs its own store
        ["--lease-ttl-ms", "10"],
    ],
)
def test_worker_flags_are_checked_before_it_connects(flags: list[str]) -> None:
    base = {"--log": "nats://127.0.0.1:1?partitions=8", "--store": "memory://"}
    args = ["worker"]
    for flag, value in base.items():
        if flag not in flags:
            args += [flag, value]
    assert main([*args, *flags]) == 2


def test_worker_metrics_per_partition(log_url: Callable[..., str], tmp_path: Path) -> None:
    """Throughput, lag, position and checkpoint age, labelled by partition."""
    url = log_url(partitions=2)
    batch = events(customers=4)
    clock = FakeClock(T0)

    async def run() -> str:
        log = await EventLog.open(LogSettings.from_url(url))
        await log.write(batch)
        await log.close()
        worker = Worker(
            settings(url, tmp_path, "m", (0, 1)), MomentDetector(load_playbook()), clock
        )
        await worker.start()
        try:
            assert await drain([worker], len(batch)) == len(batch)
            clock.advance(2_500)
            return generate_latest(worker.metrics.registry).decode()
        finally:
            await worker.stop()

    text = asyncio.run(run())
    applied = sum(
        float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith("momently_partition_events_total{")
    )
    assert applied == len(batch)
    for p in ("0", "1"):
        assert f'momently_partition_lag{{partition="{p}"}}' in text
        assert f'momently_partition_checkpoint_age_seconds{{partition="{p}"}} 2.5' in text
    assert "momently_partitions_owned 2.0" in text


_pg_runs = itertools.count(1)


def test_workers_on_postgresql_partition_stores(
    log_url: Callable[..., str], tmp_path: Path, detector: MomentDetector, postgres: Cluster
) -> None:
    """The same worker on PostgreSQL: a schema per partition (``?schema=…p{partition}``)
    holds its log, state, moments, decisions and fence; the embedded mode's output."""
    batch = events(customers=12, seed=9)
    end = max(e.timestamp_ms for e in batch) + 3 * HOUR
    want_moments, want_decisions = embedded(tmp_path, detector, batch, end)
    url = log_url(partitions=2)
    base = postgres.url_for_database(DATABASE)
    template = f"{base}?schema=dw{next(_pg_runs)}p{{partition}}"
    worker_settings = replace(
        settings(url, tmp_path, "pg", (0, 1)), store_url=template, moments_url=template
    )

    async def run() -> tuple[int, list[Moment], list[Decision], list[Fence | None]]:
        log = await EventLog.open(LogSettings.from_url(url))
        await log.write(batch)
        await log.close()
        clock = FakeClock(T0)
        worker = Worker(worker_settings, detector, clock)
        await worker.start()
        try:
            done = await drain([worker], len(batch))
            clock.set(end)
            shards = list(worker.shards.values())
            for shard in shards:
                shard.tick()
            return done, *outputs([s.moments for s in shards]), [s.store.fence() for s in shards]
        finally:
            await worker.stop()

    done, got_moments, got_decisions, fences = asyncio.run(run())
    assert done == len(batch)
    assert got_moments == want_moments
    assert _what(got_decisions) == _what(want_decisions)
    assert all(f is not None and f.position > 0 for f in fences)
