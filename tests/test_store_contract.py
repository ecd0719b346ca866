"""One contract for every store backend, and a state machine that keeps them in agreement.

A new backend (PostgreSQL) joins by adding an entry to :data:`BACKENDS`; the
contract suite and the agreement machine then run against it too.
"""

from __future__ import annotations

import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final, cast

import msgspec
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from momently.engine import Engine, IngestResult
from momently.events import Event
from momently.state.profile import Profile, apply_event, new_profile
from momently.store import open_store
from momently.store.postgres import IntegrityError, PostgresStore
from momently.store.sqlite import SqliteStore
from momently.types import Changes, IdentityKey, LogRecord, Store
from tests.postgres import cluster
from tests.test_identity_properties import BASE_MS, make_event, unruly_events

# name -> how to open that backend's store in a directory of its own. Reopening
# in the same directory must find what was committed there, for a durable one.
BACKENDS: Final[dict[str, Callable[[Path], Store]]] = {
    "memory": lambda where: open_store("memory://"),
    "sqlite": lambda where: SqliteStore(where / "momently.db", synchronous="OFF"),
    "postgresql": lambda where: PostgresStore(cluster().url(where)),  # a schema per directory
}
DURABLE: Final = ["sqlite", "postgresql"]
# What a commit that breaks a constraint half-way raises, by backend.
BROKEN_COMMIT: Final = {"sqlite": sqlite3.IntegrityError, "postgresql": IntegrityError}


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def store_factory(backend: str, tmp_path: Path) -> Iterator[Callable[[], Store]]:
    """Opens the backend's store in one directory; every store opened is closed after."""
    opened: list[Store] = []

    def make() -> Store:
        store = BACKENDS[backend](tmp_path)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


@pytest.fixture
def store(store_factory: Callable[[], Store]) -> Store:
    return store_factory()


def event(n: int, **fields: Any) -> Event:
    return make_event(f"m{n}", "track", BASE_MS + n, anon=f"a{n}", **fields)


def profile_of(customer_id: str, *events: Event) -> Profile:
    profile = new_profile(customer_id, events[0])
    for e in events:
        profile = apply_event(profile, e)
    return profile


def everything(store: Store) -> dict[str, Any]:
    """What a store holds, read only through the Store protocol."""
    log = store.read_log(0, 10_000)
    customers = sorted({c for r in log if (c := store.canonical(r.customer_id)) is not None})
    return {
        "log": log,
        "stats": store.stats(),
        "known": store.known_messages([r.event.message_id for r in log]),
        "canonical": {r.customer_id: store.canonical(r.customer_id) for r in log},
        "profiles": {c: store.profile(c) for c in customers},
        "identities": {c: store.identities(c) for c in customers},
        "events": {c: store.customer_events(c, 0, 10_000) for c in customers},
    }


RICH = event(
    1,
    traits={
        "email": "Ann@Example.com",
        "phone": "+33 6 12 34 56 78",
        "nested": {"list": [1, 2.5, None, True, "x"], "empty": {}},
        "big": 2**64,  # JSON has no size limit on integers, so neither may a store
        "negative": -(2**63) - 1,
        "float": 1e300,
    },
    context={
        "device": {"id": "d1", "model": "Pixel 8", "token": "tok", "os": {"name": "Android"}},
        "timezone": "Europe/Paris",
        "locale": "fr-FR",
        "location": {"latitude": 48.85, "longitude": 2.35},
        "consent": {"categoryPreferences": {"email": True}},
    },
)


# The contract, run against every backend.


def test_an_empty_store_knows_nothing(store: Store) -> None:
    assert store.stats() == {"events": 0, "customers": 0, "identities": 0}
    assert store.read_log(0, 10) == []
    assert store.known_messages(["m1"]) == set()
    assert store.known_messages([]) == set()
    assert store.owner(("user_id", "u1")) is None
    assert store.owners([("user_id", "u1")]) == {}
    assert store.profile("c1") is None
    assert store.profiles(["c1"]) == {}
    assert store.canonical("c1") is None
    assert store.identities("c1") == []
    assert store.customer_events("c1", 0, 10) == []


def test_commit_appends_to_the_log_in_order(store: Store) -> None:
    first = [("c1", event(1)), ("c2", event(2))]
    assert store.commit(first, Changes()) == [1, 2]
    assert store.commit([("c1", event(3))], Changes()) == [3]
    assert store.read_log(0, 10) == [
        LogRecord(1, "c1", event(1)),
        LogRecord(2, "c2", event(2)),
        LogRecord(3, "c1", event(3)),
    ]
    assert store.read_log(1, 1) == [LogRecord(2, "c2", event(2))]
    assert store.read_log(3, 10) == []
    assert store.read_log(0, 0) == []
    assert store.known_messages(["m1", "m3", "m9"]) == {"m1", "m3"}
    assert store.stats()["events"] == 3


def test_the_log_keeps_every_field_of_an_event(store: Store) -> None:
    store.commit([("c1", RICH)], Changes())
    [record] = store.read_log(0, 1)
    assert record.event == RICH
    assert record.event.context["traits"]["big"] == 2**64


def test_identities_point_at_customers_and_can_move(store: Store) -> None:
    keys = {("user_id", "u1"): "c1", ("anonymous_id", "a1"): "c1", ("device_id", "d1"): "c2"}
    store.commit([("c1", event(1))], Changes(identities=keys))
    assert store.owner(("user_id", "u1")) == "c1"
    assert store.owners([*keys, ("email", "nobody@example.com")]) == keys
    assert store.identities("c1") == [("anonymous_id", "a1"), ("user_id", "u1")]
    assert store.stats()["identities"] == 3

    store.commit([("c2", event(2))], Changes(identities={("anonymous_id", "a1"): "c2"}))
    assert store.owner(("anonymous_id", "a1")) == "c2"
    assert store.identities("c1") == [("user_id", "u1")]
    assert store.identities("c2") == [("anonymous_id", "a1"), ("device_id", "d1")]
    assert store.stats()["identities"] == 3


def test_profiles_come_back_as_they_went_in(store: Store) -> None:
    rich = profile_of("c1", RICH, event(2, user="u1"))
    plain = profile_of("c2", event(3))
    store.commit([("c1", RICH)], Changes(profiles={"c1": rich, "c2": plain}))
    assert store.profile("c1") == rich
    assert store.profiles(["c2", "c1", "c9"]) == {"c1": rich, "c2": plain}
    assert store.stats()["customers"] == 2
    assert store.canonical("c1") == "c1"

    newer = apply_event(rich, event(4))
    store.commit([("c1", event(4))], Changes(profiles={"c1": newer}))
    assert store.profile("c1") == newer


def test_merged_customers_canonicalise_to_the_survivor(store: Store) -> None:
    a, b, c = (profile_of(f"c{i}", event(i)) for i in (1, 2, 3))
    store.commit(
        [("c1", event(1)), ("c2", event(2)), ("c3", event(3))],
        Changes(profiles={"c1": a, "c2": b, "c3": c}),
    )
    store.commit([("c2", event(4))], Changes(profiles={"c2": b}, merged={"c1": "c2"}))
    assert store.profile("c1") is None
    assert store.canonical("c1") == "c2"
    assert store.stats()["customers"] == 2

    store.commit([("c3", event(5))], Changes(profiles={"c3": c}, merged={"c2": "c3"}))
    assert store.canonical("c1") == store.canonical("c2") == store.canonical("c3") == "c3"
    assert store.stats()["customers"] == 1
    assert [r.seq for r in store.customer_events("c3", 0, 10)] == [1, 2, 3, 4, 5]


def test_customer_events_page_through_a_merged_customer_in_log_order(store: Store) -> None:
    owner_of = {1: "c1", 2: "c2", 3: "c9", 4: "c1", 5: "c2", 6: "c9", 7: "c2", 8: "c1"}
    for n, customer in owner_of.items():
        store.commit([(customer, event(n))], Changes())
    store.commit([("c2", event(9))], Changes(merged={"c1": "c2"}))
    mine = [n for n, c in owner_of.items() if c in ("c1", "c2")] + [9]

    for limit in (1, 2, 3, 100):
        pages, after = [], 0
        while page := store.customer_events("c2", after, limit):
            assert len(page) <= limit
            pages.extend(page)
            after = page[-1].seq
        assert [r.seq for r in pages] == mine
        assert [r.event for r in pages] == [event(n) for n in mine]
        assert {r.customer_id for r in pages} == {"c1", "c2"}  # the log keeps who it was then
    assert [r.seq for r in store.customer_events("c2", 4, 2)] == [5, 7]
    assert [r.seq for r in store.customer_events("c2", 3, 2)] == [4, 5]
    assert store.customer_events("c2", 0, 0) == []
    assert [r.seq for r in store.customer_events("c9", 0, 10)] == [3, 6]


def test_a_failed_commit_writes_nothing(store: Store) -> None:
    store.commit(
        [("c1", event(1))],
        Changes(
            profiles={"c1": profile_of("c1", event(1))}, identities={("anonymous_id", "a1"): "c1"}
        ),
    )
    before = everything(store)
    bad_batches = [
        [("c2", event(2)), ("c1", event(1))],  # m1 is in the log already
        [("c2", event(2)), ("c2", event(2))],  # m2 twice in one commit
    ]
    for records in bad_batches:
        changes = Changes(
            profiles={"c2": profile_of("c2", event(2))},
            identities={("anonymous_id", "a2"): "c2", ("anonymous_id", "a1"): "c2"},
            merged={"c1": "c2"},
        )
        with pytest.raises((ValueError, sqlite3.IntegrityError)):
            store.commit(records, changes)
        assert everything(store) == before
        assert store.owner(("anonymous_id", "a2")) is None
        assert store.known_messages(["m2"]) == set()
    assert store.commit([("c2", event(2))], Changes()) == [2]


def test_close_can_be_called_twice(store: Store) -> None:
    store.commit([("c1", event(1))], Changes())
    store.close()
    store.close()


def test_the_engine_builds_the_same_state_on_every_backend(store: Store) -> None:
    """Through the Engine, against the in-memory store as the reference."""
    events = [
        make_event("m1", "track", BASE_MS, anon="a1", context={"device": {"id": "d1"}}),
        make_event("m2", "identify", BASE_MS + 1, user="u1", anon="a1", traits={"plan": "pro"}),
        make_event("m3", "page", BASE_MS + 2, anon="a2", context={"device": {"id": "d1"}}),
        make_event("m4", "alias", BASE_MS + 3, user="u2", previous="u1"),
        make_event("m5", "identify", BASE_MS + 4, user="u2", anon="a2"),
        RICH,
    ]
    reference = open_store("memory://")
    for target in (store, reference):
        engine = Engine(target)
        engine.ingest(events[:3])
        engine.ingest(events[2:])
    assert everything(store) == everything(reference)


# Durable backends only.


@pytest.mark.parametrize("backend", DURABLE)
def test_a_reopened_store_sees_everything(store_factory: Callable[[], Store]) -> None:
    first = store_factory()
    engine = Engine(first)
    engine.ingest(
        [RICH, event(2, user="u1"), make_event("m3", "alias", BASE_MS, user="u1", previous="a1")]
    )
    before = everything(first)
    first.close()

    again = store_factory()
    assert everything(again) == before
    customer = again.owner(("user_id", "u1"))
    assert customer is not None
    Engine(again).ingest([event(4, user="u1")])
    assert again.owner(("anonymous_id", "a4")) == customer
    assert [r.event.message_id for r in again.customer_events(customer, 3, 10)] == ["m4"]


@pytest.mark.parametrize("backend", DURABLE)
def test_a_commit_that_fails_half_way_is_rolled_back(
    backend: str, store_factory: Callable[[], Store]
) -> None:
    """The failure comes after the events are written, inside the transaction."""
    store = store_factory()
    store.commit([("c1", event(1))], Changes(profiles={"c1": profile_of("c1", event(1))}))
    before = everything(store)
    broken = Changes(
        profiles={"c2": profile_of("c2", event(2))},
        identities={("anonymous_id", "a2"): "c2"},
        merged={"c1": cast(str, None)},  # breaks merges.winner NOT NULL, the last write
    )
    with pytest.raises(BROKEN_COMMIT[backend]):
        store.commit([("c2", event(2))], broken)
    assert everything(store) == before
    assert store.owner(("anonymous_id", "a2")) is None
    store.close()
    assert everything(store_factory()) == before


# The backends agree, whatever the engine does to them.

AGREEMENT: Final = settings(
    max_examples=40,
    stateful_step_count=15,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
identity_pool = st.sampled_from(
    [
        *(("user_id", f"u{i}") for i in range(3)),
        *(("anonymous_id", f"a{i}") for i in range(4)),
        *(("device_id", f"d{i}") for i in range(3)),
        ("email", "e0@example.com"),
        ("email", "e1@example.com"),
        ("phone", "+15550100"),
    ]
)


class StoresAgree(RuleBasedStateMachine):
    """Drives an Engine over each backend with the same events; every answer must match."""

    def __init__(self) -> None:
        super().__init__()
        self.directory = tempfile.TemporaryDirectory()
        self.stores: dict[str, Store] = {}
        for name, opener in BACKENDS.items():
            where = Path(self.directory.name) / name
            where.mkdir()
            self.stores[name] = opener(where)
        self.engines = {name: Engine(store, cache_size=4) for name, store in self.stores.items()}
        self.sent: list[Event] = []  # in the log: erased events leave it
        self.numbered = 0  # messageIds given out, erased or not

    def answers(self, ask: Callable[[str], object]) -> object:
        """``ask(backend name)`` for every backend; all answers must be the memory store's."""
        found = {name: ask(name) for name in self.stores}
        reference = found.pop("memory")
        for name, answer in found.items():
            assert answer == reference, f"{name} disagrees with memory"
        return reference

    def fresh(self, events: list[Event]) -> list[Event]:
        start, self.numbered = self.numbered, self.numbered + len(events)
        return [
            msgspec.structs.replace(e, message_id=f"s{start + i}") for i, e in enumerate(events)
        ]

    @rule(events=unruly_events().map(lambda events: events[:8]))
    def ingest(self, events: list[Event]) -> None:
        batch = self.fresh(events)
        result = self.answers(lambda name: self.engines[name].ingest(batch))
        assert result == IngestResult(len(batch), 0)
        self.sent.extend(batch)

    @precondition(lambda self: bool(self.sent))
    @rule(data=st.data(), extra=unruly_events().map(lambda events: events[:1]))
    def ingest_again(self, data: st.DataObject, extra: list[Event]) -> None:
        known = data.draw(
            st.lists(
                st.sampled_from(self.sent), min_size=1, max_size=3, unique_by=lambda e: e.message_id
            )
        )
        new = self.fresh(extra)
        batch = [*known, *new]
        result = self.answers(lambda name: self.engines[name].ingest(batch))
        assert result == IngestResult(len(new), len(known))
        self.sent.extend(new)

    def of_owner(self, key: IdentityKey, ask: Callable[[Store, str], object]) -> None:
        """``ask(store, owner)`` on every backend for the key's owner (None where no one
        owns it); all answers must be the memory store's."""

        def asked(name: str) -> object:
            store = self.stores[name]
            owner = store.owner(key)
            return None if owner is None else ask(store, owner)

        self.answers(asked)

    @rule(key=identity_pool)
    def profile_by_identity(self, key: IdentityKey) -> None:
        self.of_owner(
            key,
            lambda store, owner: (
                owner,
                store.profile(owner),
                store.identities(owner),
                store.canonical(owner),
            ),
        )

    @rule(key=identity_pool, after=st.integers(0, 40), limit=st.integers(0, 6))
    def customer_events_page(self, key: IdentityKey, after: int, limit: int) -> None:
        self.of_owner(key, lambda store, owner: store.customer_events(owner, after, limit))

    @rule(key=identity_pool)
    def erase(self, key: IdentityKey) -> None:
        """A customer and those merged into them erased, as the privacy service does."""

        def erase(store: Store, owner: str) -> int:
            profile = store.profile(owner)
            members = sorted({owner, *(profile.merged_from if profile is not None else ())})
            return store.erase(members, [])

        self.of_owner(key, erase)
        # Their messageIds are forgotten with them: sent again, they would be taken.
        kept = {r.event.message_id for r in self.stores["memory"].read_log(0, 10_000)}
        self.sent = [e for e in self.sent if e.message_id in kept]
        # The engines' caches forget them (PrivacyEngine.forget), here by starting afresh.
        self.engines = {name: Engine(store, cache_size=4) for name, store in self.stores.items()}

    @invariant()
    def same_everything(self) -> None:
        """The log, stats, and every live customer's profile, identities and events."""
        self.answers(lambda name: everything(self.stores[name]))

    def teardown(self) -> None:
        for store in self.stores.values():
            store.close()
        self.directory.cleanup()


StoresAgree.TestCase.settings = AGREEMENT
TestStoresAgree = StoresAgree.TestCase
