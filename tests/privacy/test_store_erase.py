"""The privacy methods of the stores, the same contract on memory and SQLite: erase and
retention leave placeholders so no seq is reused, the log reads past them, suppression
digests persist, and retention never takes what the moment stage has not read."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from momently.engine import Engine, PreparedEvents, planned_keys
from momently.events import Event, encode_event, from_ms
from momently.privacy.engine import PrivacyEngine
from momently.privacy.suppression import Suppression
from momently.store import sqlite as sqlite_store
from momently.store.memory import MemoryStore
from momently.store.postgres import PostgresStore
from momently.store.sqlite import SqliteStore
from momently.types import Store
from tests.postgres import cluster

START = 1_790_000_000_000
DAY = 86_400_000


def event(user: str, at: int, n: int) -> Event:
    return Event(
        message_id=f"m-{user}-{n}", type="track", event="Viewed", user_id=user,
        timestamp=from_ms(at), received_at=from_ms(at),
    )  # fmt: skip


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    opened: Store
    if request.param == "postgresql":
        opened = PostgresStore(cluster().url(tmp_path))
    else:
        opened = MemoryStore() if request.param == "memory" else SqliteStore(tmp_path / "m.db")
    yield opened
    opened.close()


def test_erasing_the_newest_event_reuses_no_seq(store: Store) -> None:
    engine = Engine(store)
    engine.ingest([event("ann", START, 1), event("bob", START, 2), event("ann", START, 3)])
    ann = store.owner(("user_id", "ann"))
    assert ann is not None
    assert store.erase([ann], ["d1", "d2"]) == 2
    assert [r.customer_id for r in store.read_log(0, 10)] == [store.owner(("user_id", "bob"))]
    assert store.profile(ann) is None and store.identities(ann) == []
    assert store.customer_events(ann, 0, 10) == []
    assert store.suppressed() == {"d1", "d2"}
    Engine(store).ingest([event("cy", START, 4)])
    seqs = [r.seq for r in store.read_log(0, 10)]
    assert seqs == [2, 4]  # seq 3 was ann's, and is not given out again
    assert [r.seq for r in store.read_log(2, 1)] == [4]  # a page reads past placeholders


def test_erase_takes_the_customers_merged_into_them(store: Store) -> None:
    engine = Engine(store)
    anon = Event(
        message_id="a1", type="track", event="Viewed", anonymous_id="anon-1",
        timestamp=from_ms(START), received_at=from_ms(START),
    )  # fmt: skip
    engine.ingest([anon])
    first = store.owner(("anonymous_id", "anon-1"))
    user = Event(
        message_id="u1", type="identify", user_id="dee", anonymous_id="anon-1",
        timestamp=from_ms(START + 1), received_at=from_ms(START + 1),
    )  # fmt: skip
    engine.ingest([user])
    owner = store.owner(("user_id", "dee"))
    assert owner is not None and first is not None
    assert store.erase([owner], []) == 2
    assert store.read_log(0, 10) == []
    assert store.canonical(first) is None and store.owner(("anonymous_id", "anon-1")) is None


def test_retention_keeps_new_events_and_those_the_stage_has_not_read(store: Store) -> None:
    Engine(store).ingest(
        [event("eve", START - 40 * DAY, 1), event("eve", START - DAY, 2),
         event("eve", START - 50 * DAY, 3)]
    )  # fmt: skip
    assert store.expire_events(START - 30 * DAY, through_seq=2) == 1  # seq 3: not read yet
    assert [r.seq for r in store.read_log(0, 10)] == [2, 3]
    assert store.expire_events(START - 30 * DAY, through_seq=3) == 1
    assert [r.seq for r in store.read_log(0, 10)] == [2]
    assert store.expire_events(START, through_seq=3) == 1
    Engine(store).ingest([event("eve", START, 4)])
    assert [r.seq for r in store.read_log(0, 10)] == [4]


def test_the_privacy_engine_drops_suppressed_identities_only() -> None:
    store = MemoryStore()
    suppression = Suppression(b"0" * 32)
    engine = PrivacyEngine(store, suppression)
    assert engine.ingest([event("ann", START, 1)]).accepted == 1
    suppression.add([suppression.digest(("user_id", "ann"))])
    results = engine.ingest_groups([[event("ann", START, 2)], [event("bob", START, 3)]])
    assert [r.accepted for r in results] == [0, 1]
    assert suppression.dropped == 1
    assert Suppression(b"1" * 32).digest(("user_id", "ann")) != suppression.digest(
        ("user_id", "ann")
    )  # keyed: another key, another digest


def test_the_privacy_engine_keeps_the_parse_workers_payloads_of_the_events_it_keeps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SqliteStore(tmp_path / "m.db")
    suppression = Suppression(b"0" * 32)
    suppression.add([suppression.digest(("user_id", "ann"))])
    engine = PrivacyEngine(store, suppression)
    events = [event("ann", START, 1), event("bob", START, 2), event("cy", START, 3)]
    payloads = [encode_event(e) for e in events]
    group = PreparedEvents(events, payloads, [planned_keys(e) for e in events])

    def refuse(event: Event) -> bytes:
        raise AssertionError(f"{event.message_id} was encoded again")

    monkeypatch.setattr(sqlite_store, "encode_event", refuse)
    assert engine.ingest_groups([group])[0].accepted == 2
    assert suppression.dropped == 1
    assert [r.event for r in store.read_log(0, 10)] == events[1:]
