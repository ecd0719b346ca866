"""The parse pool's workers parse batches exactly as the server does, and a dead worker
costs speed, never a request (momently.ingest.parsepool)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import Iterator

import pytest

from momently.engine import PreparedEvents, planned_keys
from momently.errors import InvalidInput, InvalidMessage
from momently.events import decode_batch, encode_event, normalise_batch
from momently.ingest.parsepool import ParsePool

pytestmark = pytest.mark.slow  # starts a worker process

RECEIVED_MS = 1_790_000_000_000


@pytest.fixture
def pool() -> Iterator[ParsePool]:
    started = ParsePool(1)
    try:
        yield started
    finally:
        started.close()


def body(*messages: dict[str, object]) -> bytes:
    batch = {"batch": list(messages), "sentAt": "2026-09-21T10:00:00.000Z", "context": {"a": 1}}
    return json.dumps(batch).encode()


def errors(rejected: list[tuple[int, InvalidInput]]) -> list[tuple[int, str, str, str | None]]:
    return [(i, type(e).__name__, e.reason, e.field) for i, e in rejected]


def test_a_worker_parses_a_batch_as_the_server_does(pool: ParsePool) -> None:
    data = body(
        {"type": "track", "event": "Viewed", "userId": 7, "timestamp": "2026-09-21T09:59:00Z"},
        {"type": "track", "userId": "u1"},  # no event name
        {"type": "identify", "anonymousId": "a1", "traits": {"big": 2**70, "x": [1.5]}},
        {"type": "page", "userId": "u2", "properties": {"p": "x" * 40_000}},  # over 32 KB
        {"type": "screen", "anonymousId": "a2", "timestamp": "2026-09-21T09:59:00+02:00"},
    )
    parsed = asyncio.run(pool.parse(data, RECEIVED_MS, "wk_src", "10.0.0.1"))
    assert parsed is not None
    events, rejected = parsed
    want_events, want_rejected = normalise_batch(
        decode_batch(data), received_ms=RECEIVED_MS, source="wk_src", ip="10.0.0.1"
    )
    assert events == want_events
    assert [e.message_id for e in events] == [e.message_id for e in want_events]
    assert errors(rejected) == errors(want_rejected)
    assert [i for i, _ in rejected] == [1, 3]


def test_a_workers_events_come_with_their_log_payloads_and_identity_keys(pool: ParsePool) -> None:
    data = body(
        {
            "type": "identify",
            "userId": "u1",
            "anonymousId": "a1",
            "traits": {"email": " Ann@Example.com", "phone": "+44 20 7946 0000", "n": 1.25},
            "context": {"device": {"id": 42, "token": "t1"}, "locale": "en-GB"},
        },
        {"type": "alias", "userId": "u1", "previousId": "a1"},
        {"type": "track", "event": "Viewed", "anonymousId": "a2", "properties": {"é": "ü"}},
    )
    parsed = asyncio.run(pool.parse(data, RECEIVED_MS, "wk_src", None))
    assert parsed is not None
    events, _ = parsed
    assert isinstance(events, PreparedEvents)
    assert events.payloads == [encode_event(e) for e in events]
    assert events.keys == [planned_keys(e) for e in events]
    assert events.keys[0] == [
        ("user_id", "u1"),
        ("email", "ann@example.com"),
        ("phone", "+442079460000"),
        ("device_id", "42"),
        ("anonymous_id", "a1"),
    ]
    assert events.keys[1] is None  # an alias's keys depend on the owners: the writer's


def test_a_malformed_body_is_refused_with_the_servers_error(pool: ParsePool) -> None:
    with pytest.raises(InvalidMessage) as refused:
        asyncio.run(pool.parse(b'{"batch": [', RECEIVED_MS, "wk_src", None))
    with pytest.raises(InvalidMessage) as expected:
        decode_batch(b'{"batch": [')
    assert (refused.value.reason, refused.value.field) == (
        expected.value.reason,
        expected.value.field,
    )


def test_a_dead_worker_sends_parsing_back_to_the_server(pool: ParsePool) -> None:
    data = body({"type": "track", "event": "Viewed", "userId": "u1"})

    async def main() -> None:
        assert await pool.parse(data, RECEIVED_MS, "wk_src", None) is not None
        worker = pool._workers[0].process  # noqa: SLF001 - the test kills it
        assert worker.pid is not None
        os.kill(worker.pid, signal.SIGKILL)
        await asyncio.to_thread(worker.join, 30)
        assert await pool.parse(data, RECEIVED_MS, "wk_src", None) is None
        assert pool.broken
        assert await pool.parse(data, RECEIVED_MS, "wk_src", None) is None

    asyncio.run(main())
