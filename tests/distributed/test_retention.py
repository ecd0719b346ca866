"""Retention in distributed mode (momently.distributed.retention): raw events older than
the age leave each partition's store (by event time, once its stage has read them) and
the stream (by arrival, once the owner's store has committed them); the stream's
max_age is only a backstop, set and updated from --retention-days."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import nats.js.errors
import pytest
from prometheus_client import generate_latest

from momently.cli import main
from momently.clock import FakeClock
from momently.distributed.log import DAY_S, EventLog, LogSettings, connect, ensure_stream
from momently.distributed.retention import LAG_ALLOWANCE_DAYS, with_retention
from momently.distributed.worker import Worker, WorkerSettings
from momently.events import Event
from momently.moments.detector import MomentDetector
from momently.moments.playbook import load_playbook
from tests.moments.factories import track
from tests.postgres import DATABASE, Cluster

pytestmark = [pytest.mark.slow, pytest.mark.integration]

DAY = 86_400_000
_schemas = itertools.count(1)


def _event(user: str, at_ms: int) -> Event:
    return track("Product Viewed", at_ms, user=user)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _next_ms(after: int) -> None:
    """Until the wall clock's millisecond is past ``after`` (under a millisecond), so
    the next message's JetStream timestamp is later than every one before."""
    while _now_ms() <= after:
        pass


@pytest.fixture(params=["sqlite", "postgresql"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """The partitions' store and moment store URLs, on SQLite or PostgreSQL."""
    if request.param == "sqlite":
        return (
            f"sqlite:///{tmp_path}/p{{partition}}.db?synchronous=OFF",
            f"sqlite:///{tmp_path}/m{{partition}}.db?synchronous=OFF",
        )
    postgres: Cluster = request.getfixturevalue("postgres")
    base = postgres.url_for_database(DATABASE)
    template = f"{base}?schema=rt{next(_schemas)}p{{partition}}"
    return template, template


def test_workers_expire_what_they_have_read_from_stores_and_stream(
    log_url: Callable[..., str], stores: tuple[str, str]
) -> None:
    url = log_url(partitions=2)
    start = _now_ms()
    old = [_event("ola", start - age * DAY) for age in (90, 31, 29, 1)]
    clock = FakeClock(start)
    settings = WorkerSettings(
        log=with_retention(LogSettings.from_url(url), 30),
        store_url=stores[0],
        moments_url=stores[1],
        partitions=(0, 1),
        owner="r",
        lease_ttl_ms=3_600_000,  # the test moves the clock by days
        fetch_wait_s=0.05,
        retention_days=30,
        retention_every_ms=0,  # a pass every round, at the clock's cutoff
    )

    async def run() -> None:
        log = await EventLog.open(settings.log)
        js = log.client.jetstream()
        stream = settings.log.stream
        worker = Worker(settings, MomentDetector(load_playbook()), clock)
        await worker.start()

        async def rounds_until(done: Callable[[], bool]) -> None:
            for _ in range(200):
                await worker.round()
                if done():
                    return
            raise AssertionError("the worker did not get there")

        def stored() -> dict[str, list[int]]:
            found: dict[str, list[int]] = {}
            for shard in worker.shards.values():
                for record in shard.store.read_log(0, 1_000):
                    found.setdefault(record.event.user_id or "", []).append(
                        (start - record.event.timestamp_ms) // DAY
                    )
            return found

        async def in_stream(seqs: list[int]) -> list[bool]:
            present = []
            for seq in seqs:
                try:
                    await js.get_msg(stream, seq=seq)
                    present.append(True)
                except nats.js.errors.NotFoundError:
                    present.append(False)
            return present

        async def arrival(seq: int) -> int:
            """When JetStream stored the message, ms."""
            found = (await js.get_msg(stream, seq=seq)).time
            assert found is not None
            return int(found.timestamp() * 1000)

        async def publish(events: list[Event]) -> list[int]:
            first = (await js.stream_info(stream)).state.last_seq + 1
            await log.write(events)
            return list(range(first, first + len(events)))

        try:
            # Read and older than 30 days by event time: gone from the store; the
            # stream keeps them (they arrived now).
            old_seqs = await publish(old)
            await rounds_until(lambda: stored().get("ola") == [29, 1])
            assert await in_stream(old_seqs) == [True] * 4
            assert worker.retention is not None
            assert worker.retention.counts["expiredEvents"] == 2

            # Unread (no round runs): it stays in the stream, whatever its age.
            unread = await publish([_event("cy", start - 40 * DAY)])
            _next_ms(await arrival(unread[-1]))
            fresh = await publish([_event("bo", start + 2 * DAY)])
            clock.set(await arrival(fresh[0]) + 30 * DAY)  # the cutoff: bo's arrival
            await worker.retain()
            assert stored() == {}  # ola's others are now 30 days past
            assert await in_stream(old_seqs) == [False] * 4  # read and arrived before
            assert await in_stream(unread + fresh) == [True, True]

            # Once read: cy's goes from both, bo's arrived at the cutoff and stays.
            await rounds_until(lambda: stored() == {"bo": [-2]})
            assert await in_stream(unread + fresh) == [False, True]
            assert worker.retention.counts["expiredEvents"] == 4 + 1
            assert worker.retention.counts["purgedMessages"] == 4 + 1
            text = generate_latest(worker.metrics.registry).decode()
            assert "momently_retention_expired_events_total 5.0" in text
            assert "momently_retention_purged_messages_total 5.0" in text
        finally:
            await worker.stop()
            await log.close()

    asyncio.run(run())


def test_stream_max_age_is_a_backstop_set_from_retention(log_url: Callable[..., str]) -> None:
    """Created with retention + the lag allowance, updated when a process is configured
    with another, left alone by one configured with none."""
    plain = LogSettings.from_url(log_url(partitions=2))
    assert not plain.max_age_given

    async def max_age(settings: LogSettings) -> float:
        client = await connect(settings, "t")
        try:
            js = client.jetstream()
            await ensure_stream(js, settings)
            found = (await js.stream_info(settings.stream)).config.max_age
            assert found is not None
            return found / DAY_S
        finally:
            await client.close()

    async def run() -> list[float]:
        return [
            await max_age(with_retention(plain, 30)),
            await max_age(plain),  # no retention configured: leaves it
            await max_age(with_retention(plain, 10)),
            await max_age(replace(plain, max_age_s=2 * DAY_S, max_age_given=True)),
        ]

    assert asyncio.run(run()) == [30 + LAG_ALLOWANCE_DAYS, 30 + LAG_ALLOWANCE_DAYS, 17.0, 2.0]
    url = log_url(partitions=2, max_age_s=3 * DAY_S)
    assert with_retention(LogSettings.from_url(url), 30).max_age_s == 3 * DAY_S  # URL wins


@pytest.mark.parametrize("days", ["0", "-1", "40000"])
def test_worker_retention_flag_is_checked(days: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before connecting, as the embedded server's setting: the flag, then the variable."""
    args = ["worker", "--log", "nats://127.0.0.1:1?partitions=8", "--store", "memory://"]
    assert main([*args, "--retention-days", days]) == 2
    monkeypatch.setenv("MOMENTLY_RETENTION_DAYS", days)
    assert main(args) == 2
    monkeypatch.setenv("MOMENTLY_RETENTION_DAYS", "soon")
    assert main(args) == 2
