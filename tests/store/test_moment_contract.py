"""One contract for every moment store: memory (the reference), SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import msgspec
import psycopg
import pytest

from momently.decide.records import DecisionQuery
from momently.moments.records import ModelSnapshot, MomentBatch, MomentQuery, StateRow
from momently.types import MomentStore
from tests.store.moment_factories import (
    MOMENT_BACKENDS,
    T0,
    decision,
    moment,
    open_moment_store,
    run,
)

Opener = Callable[[], MomentStore]


@pytest.fixture(
    params=[
        p if p != "postgresql" else pytest.param(p, marks=pytest.mark.slow) for p in MOMENT_BACKENDS
    ]
)
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def opener(backend: str, tmp_path: Path) -> Iterator[Opener]:
    """Opens the backend's store in one place; every store opened is closed after."""
    opened: list[MomentStore] = []

    def make() -> MomentStore:
        store = open_moment_store(backend, tmp_path)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


@pytest.fixture
def store(opener: Opener) -> MomentStore:
    return opener()


def test_an_empty_store_holds_nothing(store: MomentStore) -> None:
    assert store.checkpoint() == 0
    assert store.states(["c1"]) == {}
    assert store.states([]) == {}
    assert list(store.all_states()) == []
    assert store.timers() == []
    assert store.moments(MomentQuery()) == []
    assert store.journey_runs("j") == []
    assert store.world_event("w1") is None
    assert store.model_snapshots() == {}
    assert store.decisions(DecisionQuery()) == []
    assert store.decision("de-x") is None
    assert store.moment_stats() == {
        "moments": 0, "customerStates": 0, "journeyRuns": 0, "worldEvents": 0,
        "decisions.send": 0, "decisions.schedule": 0, "decisions.silent": 0,
        "decisions.heldOut": 0, "checkpoint": 0,
    }  # fmt: skip


def test_a_moment_is_stored_once_by_its_id(store: MomentStore) -> None:
    first = moment("c1", "cart", 1)
    store.commit(MomentBatch(moments=[first]))
    store.commit(MomentBatch(moments=[msgspec.structs.replace(first, confidence=0.9), first]))
    assert store.moments(MomentQuery()) == [first]
    assert store.moment_stats()["moments"] == 1


def test_moment_queries_filter_and_page_newest_first(store: MomentStore) -> None:
    found = [
        moment("c1", "cart", 1),
        moment("c2", "cart", 2),
        moment("c1", "angry", 3, kind="friction"),
        moment("c1", "cart", 3),  # same time as the one before: the id breaks the tie
        moment("c2", "near", 5, kind="go"),
    ]
    store.commit(MomentBatch(moments=found))
    newest = sorted(found, key=lambda m: (m.at_ms, m.moment_id), reverse=True)
    assert store.moments(MomentQuery()) == newest
    assert store.moments(MomentQuery(customer_id="c1")) == [
        m for m in newest if m.customer_id == "c1"
    ]
    assert store.moments(MomentQuery(kind="friction")) == [found[2]]
    assert store.moments(MomentQuery(name="cart", customer_id="c2")) == [found[1]]
    assert store.moments(MomentQuery(since_ms=T0 + 3, until_ms=T0 + 5)) == [
        m for m in newest if m.at_ms == T0 + 3
    ]
    pages, before = [], None
    while page := store.moments(MomentQuery(limit=2, before=before)):
        pages.extend(page)
        before = (page[-1].at_ms, page[-1].moment_id)
    assert pages == newest


def test_states_timers_and_dropped_customers(store: MomentStore) -> None:
    store.commit(
        MomentBatch(
            states={
                "c2": StateRow(b"\x00two", T0 + 50),
                "c1": StateRow(b"one", None),
                "c3": StateRow(b"three", T0 + 10),
            }
        )
    )
    assert store.states(["c1", "c3", "c9"]) == {
        "c1": StateRow(b"one", None),
        "c3": StateRow(b"three", T0 + 10),
    }
    assert store.timers() == [(T0 + 10, "c3"), (T0 + 50, "c2")]
    store.commit(MomentBatch(states={"c1": StateRow(b"one'", T0 + 5)}, dropped=["c3", "c9"]))
    assert list(store.all_states()) == [
        ("c1", StateRow(b"one'", T0 + 5)),
        ("c2", StateRow(b"\x00two", T0 + 50)),
    ]
    assert store.timers() == [(T0 + 5, "c1"), (T0 + 50, "c2")]
    assert store.moment_stats()["customerStates"] == 2


def test_journeys_world_events_and_models(store: MomentStore) -> None:
    store.commit(
        MomentBatch(
            journeys=[run("c2", "j", 1, 1), run("c1", "j", 2, 2), run("c1", "j", 1, 3)],
            world_events={"w1": {"kind": "storm", "at": T0}},
            models={"bgnbd": ModelSnapshot("v1", b"\x80pickle")},
        )
    )
    newer = msgspec.structs.replace(run("c1", "j", 1, 3), stage="buy")
    store.commit(
        MomentBatch(
            journeys=[newer, run("c1", "other", 1, 4)],
            world_events={"w1": {"kind": "changed"}},
            models={"bgnbd": ModelSnapshot("v2", b"new"), "aaa": ModelSnapshot("v1", b"a")},
        )
    )
    assert store.journey_runs("j") == [newer, run("c1", "j", 2, 2), run("c2", "j", 1, 1)]
    assert store.journey_runs("j", "c1") == [newer, run("c1", "j", 2, 2)]
    assert store.journey_runs("nope") == []
    assert store.world_event("w1") == {"kind": "storm", "at": T0}
    assert store.model_snapshots() == {
        "aaa": ModelSnapshot("v1", b"a"),
        "bgnbd": ModelSnapshot("v2", b"new"),
    }
    stats = store.moment_stats()
    assert (stats["journeyRuns"], stats["worldEvents"]) == (4, 1)


def test_decisions_are_kept_once_queried_and_cancelled(store: MomentStore) -> None:
    m1, m2, m3 = moment("c1", "cart", 1), moment("c2", "cart", 2), moment("c1", "near", 3)
    sent, planned, silent = decision(m1), decision(m2, "schedule"), decision(m3, "silent")
    store.commit(MomentBatch(moments=[m1, m2, m3], decisions=[sent, planned, silent]))
    store.commit(MomentBatch(decisions=[msgspec.structs.replace(sent, score=9.0)]))
    assert store.decision(sent.decision_id) == sent
    assert store.decisions(DecisionQuery()) == [silent, planned, sent]
    assert store.decisions(DecisionQuery(customer_id="c1", action="send")) == [sent]
    assert store.decisions(DecisionQuery(limit=1, before=(silent.at_ms, silent.decision_id))) == [
        planned
    ]
    store.commit(MomentBatch(cancelled={planned.decision_id: "purchase", "de-unknown": "x"}))
    store.commit(MomentBatch(cancelled={planned.decision_id: "again"}))
    cancelled = store.decision(planned.decision_id)
    assert cancelled is not None
    assert cancelled.status == "cancelled"
    assert cancelled.reasons == ["because", "cancelled: purchase"]
    assert store.decisions(DecisionQuery(status="cancelled")) == [cancelled]
    stats = store.moment_stats()
    assert [stats[f"decisions.{a}"] for a in ("send", "schedule", "silent")] == [1, 1, 1]


def test_the_checkpoint_only_moves_forward(store: MomentStore) -> None:
    store.commit(MomentBatch(checkpoint=5))
    store.commit(MomentBatch(checkpoint=3))
    assert store.checkpoint() == 5
    store.commit(MomentBatch())
    store.commit(MomentBatch(checkpoint=9))
    assert store.checkpoint() == 9
    assert store.moment_stats()["checkpoint"] == 9


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def test_a_reopened_store_sees_every_commit(opener: Opener) -> None:
    first = opener()
    m1 = moment("c1", "cart", 1)
    batch = MomentBatch(
        moments=[m1],
        states={"c1": StateRow(b"s", T0 + 9)},
        journeys=[run("c1", "j", 1, 1)],
        world_events={"w": {"a": 1}},
        models={"m": ModelSnapshot("v", b"b")},
        decisions=[decision(m1)],
        checkpoint=7,
    )
    first.commit(batch)
    before = (
        first.moments(MomentQuery()), list(first.all_states()), first.journey_runs("j"),
        first.world_event("w"), first.model_snapshots(), first.decisions(DecisionQuery()),
        first.moment_stats(),
    )  # fmt: skip
    first.close()
    again = opener()
    assert (
        again.moments(MomentQuery()), list(again.all_states()), again.journey_runs("j"),
        again.world_event("w"), again.model_snapshots(), again.decisions(DecisionQuery()),
        again.moment_stats(),
    ) == before  # fmt: skip


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def test_a_commit_that_fails_half_way_writes_nothing(backend: str, store: MomentStore) -> None:
    """The decision, written after the moments and states, does not fit a 64-bit column."""
    store.commit(MomentBatch(moments=[moment("c1", "cart", 1)], checkpoint=1))
    m2 = moment("c2", "cart", 2)
    broken = msgspec.structs.replace(decision(m2), at_ms=2**70)
    fails = OverflowError if backend == "sqlite" else psycopg.errors.NumericValueOutOfRange
    with pytest.raises(fails):
        store.commit(
            MomentBatch(
                moments=[m2], states={"c2": StateRow(b"s", None)}, decisions=[broken], checkpoint=2
            )
        )
    assert [m.customer_id for m in store.moments(MomentQuery())] == ["c1"]
    assert store.states(["c2"]) == {}
    assert store.checkpoint() == 1
