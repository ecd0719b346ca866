"""The engine in the simulator's loop on the window stores decides as on the plain ones."""

from __future__ import annotations

import numpy as np
import pytest

from momently.decide.records import DecisionQuery
from momently.simulate import DAY, Population, World
from momently.simulate.compare import Run
from momently.simulate.engine_policy import EnginePolicy
from momently.simulate.window import KEEP_DECISIONS_MS, WindowMomentStore, WindowStore
from momently.types import Changes
from tests.moments.factories import T0, track


def _decisions(policy: EnginePolicy) -> list[tuple[object, ...]]:
    # every decision the plain store holds (all of them; the window's are collected at
    # each day's end in the test below, as it forgets the old ones)
    found = policy.moment_store.decisions(DecisionQuery(limit=1_000_000))
    return sorted(
        (d.decision_id, d.customer_id, d.action, d.offer, d.channel, d.send_at_ms, d.status)
        for d in found
    )


def test_the_window_stores_decide_as_the_plain_ones_and_stay_bounded() -> None:
    people = Population(150, seed=3)
    days = 7  # past KEEP_DECISIONS_MS, so decisions are forgotten during the run
    assert days * DAY > 2 * KEEP_DECISIONS_MS
    plain, window = EnginePolicy(), EnginePolicy(window=True)
    seen: dict[str, tuple[object, ...]] = {}
    logged = 0
    held_log: list[int] = []
    held_decisions: list[int] = []
    runs = [Run(p, World(people), days=days) for p in (plain, window)]
    while not runs[0].done:
        for run in runs:
            run.advance_day()
        for d in window.moment_store.decisions(DecisionQuery(limit=1_000_000)):
            seen[d.decision_id] = (
                d.decision_id, d.customer_id, d.action, d.offer, d.channel, d.send_at_ms, d.status
            )  # fmt: skip
        held_log.append(len(window.store.read_log(0, 1_000_000)))
        held_decisions.append(len(window.moment_store.decisions(DecisionQuery(limit=1_000_000))))
        logged = plain.store.stats()["events"]
    a, b = (r.result() for r in runs)
    # the same sends, the same answers, the same outcome for every customer
    assert a.requested > 20 and a.delivered > 0, a
    for field in ("events", "seen", "requested", "delivered", "held_out", "refused",
                  "conversions", "revenue", "attributed", "opt_outs"):  # fmt: skip
        assert getattr(a, field) == getattr(b, field), field
    assert np.array_equal(a.orders, b.orders) and np.array_equal(a.spend, b.spend)
    assert plain.stage.decided == window.stage.decided
    # every decision the window made is the plain store's, cancellations included
    assert sorted(seen.values()) == _decisions(plain)
    # bounded: at each day's end the window holds only the stage's last record (the
    # stage reads it back to check its place) while the plain log holds every event;
    # and only the last days' decisions
    assert window.store.stats()["events"] == logged
    assert max(held_log) == 1 and logged > 10_000
    assert held_decisions[-1] < len(seen)
    assert isinstance(window.moment_store, WindowMomentStore)
    assert window.moment_store.moments_seen == len(plain.moment_store._moments)


def test_the_faster_user_lookup_agrees_with_the_identities() -> None:
    policy = EnginePolicy()
    run = Run(policy, World(Population(40, seed=1)), days=1)
    run.advance_day()
    customers = {r.customer_id for r in policy.store.read_log(0, 1_000_000)}
    assert customers
    for customer in customers:
        canonical = policy.store.canonical(customer) or customer
        by_scan = next((v for k, v in policy.store.identities(canonical) if k == "user_id"), None)
        assert policy._user(customer) == by_scan


def test_the_window_store_forgets_only_the_front_and_keeps_numbering() -> None:
    store = WindowStore()
    events = [track("Product Viewed", T0 + i, user=f"u{i % 2}") for i in range(5)]
    records = [(f"c{i % 2}", e) for i, e in enumerate(events[:3])]
    assert store.commit(records, Changes()) == [1, 2, 3]
    assert store.forget_before(3) == 2  # records 1 and 2 go, 3 stays
    assert [r.seq for r in store.read_log(0, 10)] == [3]
    assert [r.seq for r in store.read_log(2, 10)] == [3] and store.read_log(3, 10) == []
    # numbering goes on from where the whole log would be; forgotten ids are forgotten
    assert store.commit([("c1", e) for e in events[3:]], Changes()) == [4, 5]
    assert store.stats()["events"] == 5
    assert store.known_messages([e.message_id for e in events]) == {
        e.message_id for e in events[2:]
    }
    assert [r.seq for r in store.customer_events("c1", 0, 10)] == [4, 5]
    with pytest.raises(ValueError, match="once each"):
        store.commit([("c0", events[4])], Changes())
    with pytest.raises(NotImplementedError):
        store.erase(["c0"], [])
    assert store.forget_before(100) == 3 and store.read_log(0, 10) == []
