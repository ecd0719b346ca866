"""A three-node JetStream cluster on loopback, replicas = 3: kill one node (the stream's
leader) and ingestion and processing go on, with no acknowledged event lost."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import nats.errors
import pytest

from momently.clock import FakeClock
from momently.distributed.log import EventLog, LogSettings, connect
from momently.distributed.worker import Worker
from momently.errors import Unavailable
from momently.events import Event
from momently.moments.detector import MomentDetector
from momently.moments.playbook import load_playbook
from tests.distributed.conftest import NATS, NatsServer, start_server
from tests.distributed.scenario import T0, events
from tests.distributed.test_failover import PARTITIONS, finish
from tests.distributed.test_worker import settings
from tests.ports import free_port

pytestmark = [
    pytest.mark.slow,
    pytest.mark.integration,
    pytest.mark.skipif(NATS is None, reason="nats-server is not installed (make system)"),
]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[list[NatsServer]]:
    routes = [free_port() for _ in range(3)]
    urls = ",".join(f"nats://127.0.0.1:{p}" for p in routes)
    nodes: list[NatsServer] = []
    try:
        for i, route in enumerate(routes):
            nodes.append(
                start_server(
                    tmp_path / f"n{i}",
                    [
                        "-n",
                        f"n{i}",
                        "--cluster_name",
                        "momently",
                        "--cluster",
                        f"nats://127.0.0.1:{route}",
                        "--routes",
                        urls,
                    ],
                )  # fmt: skip
            )
        yield nodes
    finally:
        for node in nodes:
            node.stop(kill=True)


async def _until_ready(url: str, timeout_s: float = 30.0) -> None:
    """Until the cluster has a JetStream meta leader (start-up polling)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            log = await EventLog.open(LogSettings.from_url(url))
            await log.close()
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def _write_retrying(log: EventLog, batch: list[Event], tries: int = 100) -> int:
    """As a client does: resend a batch refused with a 503 (the dedupe makes it safe)."""
    for _ in range(tries):
        try:
            result = await log.write(batch)
            return result.accepted + result.duplicates
        except Unavailable:
            await asyncio.sleep(0.1)
    raise AssertionError("the log stayed unavailable")


async def _start_retrying(make: Callable[[], Worker], timeout_s: float = 60.0) -> Worker:
    """As a supervisor does: start again while the cluster, one node down, is still
    electing the leaders of its lease bucket (a start that fails closes its connection)."""
    deadline = time.monotonic() + timeout_s
    while True:
        worker = make()
        try:
            await worker.start()
            return worker
        except (nats.errors.Error, TimeoutError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


def test_losing_the_stream_leader_loses_nothing(cluster: list[NatsServer], tmp_path: Path) -> None:
    detector = MomentDetector(load_playbook())
    servers = ",".join(n.address for n in cluster)
    url = f"nats://{servers}?stream=CL&partitions={PARTITIONS}&replicas=3&timeout_s=3"
    batch = events(customers=20, seed=3)
    first, second = batch[:60], batch[60:]

    async def main() -> None:
        await _until_ready(url)
        log = await EventLog.open(LogSettings.from_url(url))
        for start in range(0, len(first), 20):
            assert await _write_retrying(log, first[start : start + 20]) == 20
        client = await connect(LogSettings.from_url(url), "probe")
        info = await client.jetstream().stream_info("CL")
        assert info.config.num_replicas == 3
        leader = info.cluster.leader if info.cluster else None
        await client.close()
        victim = next(n for i, n in enumerate(cluster) if f"n{i}" == leader)
        victim.stop(kill=True)  # kill -9 the stream's leader
        for start in range(0, len(second), 20):
            part = second[start : start + 20]
            assert await _write_retrying(log, part) == len(part)
        await log.close()
        worker = await _start_retrying(
            lambda: Worker(
                settings(url, tmp_path, "w", tuple(range(PARTITIONS))), detector, FakeClock(T0)
            )
        )
        try:
            await finish(worker, url)
            stored = sum(s.store.stats()["events"] for s in worker.shards.values())
            assert stored == len(batch)  # every acknowledged event, once
        finally:
            await worker.stop()

    asyncio.run(main())
