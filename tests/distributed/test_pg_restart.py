"""PostgreSQL restarted under load: two worker processes on PostgreSQL partition stores
and a PostgreSQL outbox apply events flowing through NATS while the server stops at once
(as a crash) and starts again. Nothing acknowledged is lost, nothing is stored or sent
twice, and the workers carry on by themselves (lag back to 0).

And the two ways a worker meets its stores failing, each forced: stores that cannot be
opened (the partition is given back, the loop goes on) and a batch that fails to commit
(the shard is closed and opened afresh from what its stores committed, so nothing the
failed batch left in memory survives)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import httpx
import psycopg
import pytest

from momently.clock import FakeClock
from momently.distributed.lease import Leases
from momently.distributed.log import EventLog, LogSettings
from momently.distributed.partition import subject
from momently.distributed.shard import Shard
from momently.distributed.worker import Worker
from momently.moments.detector import MomentDetector
from momently.moments.playbook import load_playbook
from tests.distributed.scenario import HOUR, T0, events
from tests.distributed.test_failover import (
    PARTITIONS,
    check,
    finish,
    metrics,
    postgres_stores,
    publish,
    recent_events,
    start_worker,
    take_over,
    total,
)
from tests.distributed.test_worker import settings
from tests.ports import free_port
from tests.postgres import Cluster

pytestmark = [pytest.mark.slow, pytest.mark.integration]


@pytest.fixture
def own_postgres() -> Iterator[Cluster]:
    """A server of this test's own (restarting the session's would hit other tests'
    pools), durable: an immediate stop loses no commit that was acknowledged."""
    cluster = Cluster(durable=True)
    try:
        yield cluster
    finally:
        cluster.stop()


async def last_positions(url: str) -> dict[int, int]:
    """The stream sequence of each partition's last message (0: none)."""
    s = LogSettings.from_url(url)
    log = await EventLog.open(s)
    js = log.client.jetstream()
    found = {}
    for p in range(PARTITIONS):
        try:
            found[p] = (await js.get_last_msg(s.stream, subject(s.stream, p))).seq or 0
        except Exception:  # no message in this partition
            found[p] = 0
    await log.close()
    return found


def alive(procs: list[subprocess.Popen[bytes]], ports: list[int], logs: list[Path]) -> None:
    """Each worker process runs and its loop is alive (``/healthz``: 503 once it ended)."""
    for proc, port, log in zip(procs, ports, logs, strict=True):
        assert proc.poll() is None, f"a worker exited: {log.read_text()[-3000:]}"
        try:
            answer = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
        except httpx.HTTPError:
            continue  # not serving yet
        assert answer.status_code == 200, f"a worker's loop ended: {log.read_text()[-3000:]}"


def test_a_postgresql_restart_under_load_loses_nothing_and_the_workers_resume(
    log_url: Callable[..., str],
    tmp_path: Path,
    own_postgres: Cluster,
) -> None:
    detector = MomentDetector(load_playbook())
    start, batch = recent_events(customers=120, seed=13)
    first, rest = batch[: len(batch) // 4], batch[len(batch) // 4 :]
    url = log_url(partitions=PARTITIONS)
    stores = postgres_stores(own_postgres)
    ports = [free_port(), free_port()]
    logs = [tmp_path / "w0.log", tmp_path / "w1.log"]
    halves = ("0-1", "2-3")  # both workers apply events when the server goes
    procs = [
        start_worker(url, stores, f"w{n}", port, log, "--partitions", half)
        for n, (port, log, half) in enumerate(zip(ports, logs, halves, strict=True))
    ]
    try:
        asyncio.run(publish(url, first))
        deadline = time.monotonic() + 90
        while not all(total(metrics(port), "momently_partition_events_total") for port in ports):
            alive(procs, ports, logs)
            assert time.monotonic() < deadline, "the workers applied nothing in 90 s"
            time.sleep(0.05)
        with ThreadPoolExecutor(1) as publisher:
            # The rest goes in, acknowledged by JetStream, while the server restarts.
            published = publisher.submit(asyncio.run, publish(url, rest))
            own_postgres.restart()
            published.result(timeout=120)
        want = asyncio.run(last_positions(url))
        deadline = time.monotonic() + 180
        while True:  # until every partition's store has committed its last message
            alive(procs, ports, logs)
            found: dict[str, float] = {}
            for port in ports:
                found.update(metrics(port))
            got = {p: found.get(f'momently_partition_position{{partition="{p}"}}') for p in want}
            lag = {p: found.get(f'momently_partition_lag{{partition="{p}"}}') for p in want}
            if got == {p: float(n) for p, n in want.items()} and set(lag.values()) == {0.0}:
                break
            assert time.monotonic() < deadline, f"not caught up in 180 s: {got} {lag} of {want}"
            time.sleep(0.1)
        # The workers met the restart (a stale connection fails once, then the pool heals)
        # and reopened their partitions from what PostgreSQL had committed.
        told = "".join(log.read_text() for log in logs)
        assert "OperationalError" in told, told[-3000:]
        assert sum(stores.events(PARTITIONS)) == len(batch)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)  # a clean stop releases the leases
        for proc in procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
    # An heir on the same stores: each event stored once, the embedded mode's moments
    # and decisions, every send decided in the outbox once.
    take_over(url, tmp_path, stores, detector, batch, start, held=False)


def test_a_worker_whose_stores_do_not_answer_gives_its_partitions_back_and_goes_on(
    log_url: Callable[..., str], tmp_path: Path
) -> None:
    """PostgreSQL down when a worker takes partitions: the round does not raise (it
    ended the worker's loop before), no shard opens, and the leases are given back at
    once for whoever can open them."""
    url = log_url(partitions=2)
    down = f"postgresql://postgres@127.0.0.1:{free_port()}/momently?schema=p{{partition}}"
    clock = FakeClock(T0)
    wanted = replace(settings(url, tmp_path, "w", (0, 1)), store_url=down, moments_url=down)

    async def run() -> None:
        w = Worker(wanted, MomentDetector(load_playbook()), clock)
        await w.start()
        try:
            for _ in range(2):
                assert await w.round() == 0
                assert not w.shards and not w.leases
            assert w._js is not None
            other = await Leases.open(w._js, w.settings.bucket, "other", clock, ttl_ms=5_000)
            for p in (0, 1):  # free now, not at the lease's expiry
                assert await other.acquire(p) is not None
        finally:
            await w.stop()

    asyncio.run(run())


def test_a_batch_that_fails_to_commit_reopens_the_shard_from_its_stores(
    log_url: Callable[..., str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store fails in the middle of a batch (as PostgreSQL going away does): the
    shard is closed, nothing is acked, and the next round opens it afresh from its
    stores; every event is then stored once, with the embedded mode's moments and
    decisions."""
    detector = MomentDetector(load_playbook())
    batch = events(customers=12, seed=3)
    url = log_url(partitions=PARTITIONS)
    asyncio.run(publish(url, batch))
    clock = FakeClock(T0)
    apply = Shard.apply
    failed: list[int] = []

    def fail_once(shard: Shard, items: list[tuple[int, object]]) -> int:
        if not failed:
            # Half the batch goes through the stage, then the server is gone.
            apply(shard, items[: len(items) // 2])  # type: ignore[arg-type]
            failed.append(shard.partition)
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        return apply(shard, items)  # type: ignore[arg-type]

    monkeypatch.setattr(Shard, "apply", fail_once)

    async def run() -> None:
        w = Worker(settings(url, tmp_path, "w", tuple(range(PARTITIONS))), detector, clock)
        await w.start()
        try:
            await w.balance()
            opened = {p: id(s) for p, s in w.shards.items()}
            await w.round()
            [p] = failed
            assert p not in w.shards and p not in w.leases  # closed, lease given back
            await finish(w, url)
            assert id(w.shards[p]) != opened[p]  # opened afresh
            clock.set(max(e.timestamp_ms for e in batch) + 3 * HOUR)
            for shard in w.shards.values():
                shard.tick()
            check(tmp_path, detector, batch, w)
        finally:
            await w.stop()

    asyncio.run(run())
