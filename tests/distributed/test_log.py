"""The JetStream event log: partitioning, acknowledgement, dedupe, per-customer order."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from nats.js.api import ConsumerConfig, DeliverPolicy

from momently.distributed.log import EventLog, LogSettings
from momently.distributed.partition import (
    customer_key,
    parse_partitions,
    partition_of,
    subject,
)
from momently.errors import ConfigError
from momently.events import Event, decode_event, from_ms

pytestmark = [pytest.mark.slow, pytest.mark.integration]
T0 = 1_790_000_000_000


def event(n: int, user: str | None = None, anon: str | None = None) -> Event:
    return Event(
        message_id=f"m{n}", type="track", event="Product Viewed", user_id=user,
        anonymous_id=anon, timestamp=from_ms(T0 + n), received_at=from_ms(T0 + n),
    )  # fmt: skip


def test_partition_key_prefers_the_user_and_is_stable() -> None:
    assert customer_key(event(1, user="u1", anon="a1")) == "u:u1"
    assert customer_key(event(1, anon="a1")) == "a:a1"
    # Fixed values: a change of hash would move every customer between partitions.
    assert [partition_of(f"u:{i}", 64) for i in range(5)] == [
        partition_of(f"u:{i}", 64) for i in range(5)
    ]
    assert len({partition_of(f"u:{i}", 64) for i in range(2_000)}) == 64
    assert parse_partitions("all", 4) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="outside"):
        parse_partitions("3-9", 8)
    with pytest.raises(ValueError, match="bad partition"):
        parse_partitions("x", 8)


def test_log_url_is_checked() -> None:
    settings = LogSettings.from_url("nats://a:1,b:2?partitions=16&replicas=3&stream=S")
    assert settings.servers == ("nats://a:1", "nats://b:2")
    assert (settings.partitions, settings.replicas, settings.stream) == (16, 3, "S")
    for bad in (
        "http://a:1",
        "nats://a:1?partitions=x",
        "nats://a:1?colour=red",
        "nats://a:1?timeout_s=0",
    ):
        with pytest.raises(ConfigError):
            LogSettings.from_url(bad)


async def _read_partition(log: EventLog, partition: int) -> list[Event]:
    sub = await log.js.pull_subscribe(
        subject(log.settings.stream, partition),
        durable=None,
        stream=log.settings.stream,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
    )
    found: list[Event] = []
    while True:
        try:
            msgs = await sub.fetch(500, timeout=0.5)
        except TimeoutError:
            break
        found.extend(decode_event(m.data) for m in msgs)
    await sub.unsubscribe()
    return found


def test_publish_acks_dedupes_and_keeps_each_customer_in_order(
    log_url: Callable[..., str],
) -> None:
    async def run() -> None:
        log = await EventLog.open(LogSettings.from_url(log_url(partitions=8)))
        try:
            users = [f"user{i}" for i in range(20)]
            events = [event(n, user=users[n % 20]) for n in range(400)]
            result = await log.write(events)
            assert (result.accepted, result.duplicates) == (400, 0)
            # A client's retry of the same batch: JetStream drops every message.
            again = await log.write(events[:100])
            assert (again.accepted, again.duplicates) == (0, 100)
            info = await log.js.stream_info(log.settings.stream)
            assert info.state.messages == 400
            seen: list[Event] = []
            for p in range(8):
                part = await _read_partition(log, p)
                assert {log.partition(e) for e in part} <= {p}
                seen.extend(part)
            assert sorted(e.message_id for e in seen) == sorted(e.message_id for e in events)
            for user in users:  # one customer's events, in the order they were sent
                got = [e.message_id for e in seen if e.user_id == user]
                assert got == [e.message_id for e in events if e.user_id == user]
        finally:
            await log.close()

    asyncio.run(run())


def test_a_stream_made_for_another_partition_count_is_refused(
    log_url: Callable[..., str],
) -> None:
    url = log_url(partitions=8)

    async def run() -> None:
        log = await EventLog.open(LogSettings.from_url(url))
        await log.close()
        with pytest.raises(ConfigError, match="partitions"):
            await EventLog.open(LogSettings.from_url(url.replace("partitions=8", "partitions=16")))

    asyncio.run(run())
