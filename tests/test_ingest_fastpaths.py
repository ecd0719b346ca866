"""The ingest hot path's shortcuts give exactly what the general code gives.

* :func:`momently.engine.known_customer` answers only when :func:`resolve`
  would say "that customer, nothing to merge, bind or hold back";
* a batch's timestamps, corrected for clock skew by one addition when the
  client sent whole milliseconds in UTC, equal the millisecond arithmetic;
* the nesting limit still holds for a message inside a batch;
* events handed over with their payloads and identity keys worked out
  (:class:`~momently.engine.PreparedEvents`) are stored and folded as plain
  events are, with those payloads, without encoding them again.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Final

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from momently.engine import Engine, PreparedEvents, known_customer, planned_keys
from momently.events import (
    MAX_DEPTH,
    Event,
    decode_batch,
    encode_event,
    from_ms,
    normalise_batch,
    to_ms,
)
from momently.identity import KINDS, Resolution, resolve
from momently.store import sqlite as sqlite_store
from momently.store.sqlite import SqliteStore
from momently.types import IdentityKey

RECEIVED_MS: Final = 1_790_000_000_000

keys_strategy = st.lists(
    st.tuples(st.sampled_from(KINDS), st.sampled_from(["a", "b"])), max_size=5, unique=True
)
owners_strategy = st.dictionaries(
    st.tuples(st.sampled_from(KINDS), st.sampled_from(["a", "b"])),
    st.sampled_from(["c1", "c2"]),
)
users_strategy = st.dictionaries(st.sampled_from(["c1", "c2"]), st.sampled_from(["a", "b"]))


@given(keys_strategy, owners_strategy, users_strategy)
def test_known_customer_answers_only_what_resolve_would(
    keys: list[IdentityKey], owners: dict[IdentityKey, str], users: dict[str, str]
) -> None:
    known = known_customer(keys, owners.get, users.get)
    if known is not None:
        assert resolve(keys, owners.get, users.get) == Resolution(known)


def test_known_customer_leaves_the_merge_rules_to_resolve() -> None:
    owners = {("user_id", "u1"): "c1", ("anonymous_id", "a1"): "c1", ("device_id", "d"): "c2"}
    users = {"c1": "u1"}
    assert known_customer([("user_id", "u1"), ("anonymous_id", "a1")], owners.get, users.get)
    # two owners: a merge; an unknown key: a bind; another user's customer: a conflict
    assert known_customer([("user_id", "u1"), ("device_id", "d")], owners.get, users.get) is None
    assert known_customer([("user_id", "u1"), ("email", "x@y")], owners.get, users.get) is None
    others: dict[str, str] = {"c1": "u1"}
    assert (
        known_customer([("user_id", "u2"), ("anonymous_id", "a1")], owners.get, others.get) is None
    )
    assert known_customer([], owners.get, users.get) is None


client_times = st.builds(
    lambda ms, micro, offset: (
        (datetime(2026, 9, 1, tzinfo=UTC) + timedelta(milliseconds=ms, microseconds=micro))
        .astimezone(timezone(timedelta(minutes=offset)))
        .isoformat()
    ),
    st.integers(min_value=-(10**9), max_value=10**9),
    st.sampled_from([0, 0, 1, 999]),
    st.sampled_from([0, 0, 120, -330]),
)


@given(st.lists(client_times, min_size=1, max_size=4), client_times)
def test_batch_timestamps_match_the_millisecond_arithmetic(times: list[str], sent: str) -> None:
    body = {
        "sentAt": sent,
        "batch": [
            {"type": "track", "event": "E", "userId": "u", "messageId": f"m{i}", "timestamp": t}
            for i, t in enumerate(times)
        ],
    }
    events, errors = normalise_batch(
        decode_batch(msgspec.json.encode(body)), received_ms=RECEIVED_MS, source="s"
    )
    assert not errors
    sent_ms = to_ms(datetime.fromisoformat(sent))
    for event, text in zip(events, times, strict=True):
        expected = from_ms(RECEIVED_MS - (sent_ms - to_ms(datetime.fromisoformat(text))))
        assert event.timestamp == expected
        assert event.timestamp.utcoffset() == timedelta(0)


def test_a_message_nested_too_deeply_is_still_refused_in_a_batch() -> None:
    deep: object = 1
    for _ in range(MAX_DEPTH):
        deep = {"x": deep}
    shallow = {"type": "track", "event": "E", "userId": "u", "messageId": "ok"}
    body = {"batch": [shallow, {**shallow, "messageId": "deep", "properties": deep}]}
    events, errors = normalise_batch(
        decode_batch(msgspec.json.encode(body)), received_ms=RECEIVED_MS, source="s"
    )
    assert [e.message_id for e in events] == ["ok"]
    assert [(index, error.field) for index, error in errors] == [(1, "batch[1].properties")]


def test_a_batch_context_nested_too_deeply_is_refused_in_every_message() -> None:
    deep: object = 1
    for _ in range(MAX_DEPTH):
        deep = {"x": deep}
    message = {"type": "track", "event": "E", "userId": "u", "messageId": "m"}
    body = {"batch": [message], "context": {"deep": deep}}
    events, errors = normalise_batch(
        decode_batch(msgspec.json.encode(body)), received_ms=RECEIVED_MS, source="s"
    )
    assert not events
    assert [(index, error.field) for index, error in errors] == [(0, "batch[0].context")]


def _customers_batch() -> list[Event]:
    messages = [
        {"type": "identify", "userId": "u1", "anonymousId": "a1", "traits": {"email": "a@x.io"}},
        {"type": "track", "event": "Viewed", "anonymousId": "a1", "context": {"device": {"id": 7}}},
        {"type": "track", "event": "Viewed", "anonymousId": "a2", "context": {"device": {"id": 7}}},
        {"type": "alias", "userId": "u2", "previousId": "a2"},
        {"type": "identify", "userId": "u2", "traits": {"email": "a@x.io", "plan": "pro"}},
        {"type": "track", "event": "Bought", "userId": "u1", "messageId": "m-dup"},
        {"type": "track", "event": "Bought", "userId": "u1", "messageId": "m-dup"},
    ]
    data = msgspec.json.encode({"batch": messages, "sentAt": "2026-09-21T10:00:00.000Z"})
    events, rejected = normalise_batch(decode_batch(data), received_ms=RECEIVED_MS, source="s")
    assert not rejected
    return events


def _state(store: SqliteStore) -> tuple[object, ...]:
    conn = store._reader  # noqa: SLF001 - the tables as they are
    return tuple(
        conn.execute(sql).fetchall()
        for sql in (
            "SELECT seq, message_id, customer_id, ts_ms, payload FROM events ORDER BY seq",
            "SELECT kind, value, customer_id FROM identities ORDER BY kind, value",
            "SELECT customer_id, body FROM profiles ORDER BY customer_id",
            "SELECT loser, winner FROM merges ORDER BY loser",
        )
    )


def test_prepared_events_are_stored_and_folded_as_plain_ones_without_encoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = _customers_batch()
    plain = SqliteStore(tmp_path / "plain.db")
    results = Engine(plain).ingest_groups([events[:3], events[3:]])
    prepared = SqliteStore(tmp_path / "prepared.db")
    engine = Engine(prepared)

    def refuse(event: Event) -> bytes:
        raise AssertionError(f"{event.message_id} was encoded again")

    groups = [
        PreparedEvents(part, [encode_event(e) for e in part], [planned_keys(e) for e in part])
        for part in (events[:3], events[3:])
    ]
    monkeypatch.setattr(sqlite_store, "encode_event", refuse)
    assert engine.ingest_groups(groups) == results
    assert [(r.accepted, r.duplicates) for r in results] == [(3, 0), (3, 1)]
    assert _state(prepared) == _state(plain)
    # A later plain group still gets encoded by the store.
    monkeypatch.undo()
    assert engine.ingest_groups([_customers_batch()[:1]])[0].duplicates == 1
