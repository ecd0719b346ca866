"""Memory the moment stage holds stays bounded by its customers, not by their events:
the same customers coming back again and again leave its timers the same size (one live
timer per customer; superseded heap entries dropped as they pile up), and its
world-event audience index as few interests per customer as their state. Deterministic:
counts of entries, not resident memory, on a fake clock."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from momently.clock import FakeClock
from momently.engine import Engine
from momently.moments.detector import MAX_INTERESTS, MomentDetector
from momently.moments.playbook import load_playbook
from momently.moments.records import MomentQuery
from momently.moments.world import WorldEvent
from momently.runtime.stage import MomentStage
from momently.store.moments_sqlite import SqliteMomentStore
from momently.store.sqlite import SqliteStore
from tests.moments.factories import HOUR, MINUTE, T0, track

CUSTOMERS = 30


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[tuple[Engine, MomentStage, FakeClock]]:
    store = SqliteStore(tmp_path / "momently.db", synchronous="NORMAL")
    moments = SqliteMomentStore(tmp_path / "moments.db", synchronous="NORMAL")
    clock = FakeClock(T0)
    stage = MomentStage(store, moments, MomentDetector(load_playbook()), clock)
    yield Engine(store), stage, clock
    moments.close()
    store.close()


def round_of_carts(engine: Engine, stage: MomentStage, clock: FakeClock, at: int) -> None:
    """Every customer adds to the cart at ``at``: each one's timer moves to a new time."""
    engine.ingest(
        [
            track("Product Added", at, user=f"c{i}", properties={"product_id": f"p{i}"})
            for i in range(CUSTOMERS)
        ]
    )
    clock.set(at)
    stage.catch_up()


def test_returning_customers_leave_the_timers_bounded(
    rig: tuple[Engine, MomentStage, FakeClock],
) -> None:
    engine, stage, clock = rig
    round_of_carts(engine, stage, clock, T0)
    live, entries = stage.timer_count()
    assert live == CUSTOMERS and entries == CUSTOMERS
    for n in range(1, 41):  # 40 times the events, over the same customers
        round_of_carts(engine, stage, clock, T0 + n * MINUTE)
        live, entries = stage.timer_count()
        assert live == CUSTOMERS
        assert entries <= 2 * CUSTOMERS + 64  # 1,230 commits made 1,230 timers before
    # The live timers still fire, once each, at the last cart's hour: every customer's
    # cart is abandoned once, not once per superseded timer.
    clock.set(T0 + 40 * MINUTE + 2 * HOUR)
    stage.tick()
    abandoned = stage.moments.moments(MomentQuery(name="cart-abandoned", limit=1_000))
    assert sorted(m.customer_id for m in abandoned) == sorted({m.customer_id for m in abandoned})
    assert len(abandoned) == CUSTOMERS
    assert stage.timer_count()[1] <= CUSTOMERS  # fired ones are gone; new ones only if due


def test_the_audience_index_keeps_no_more_interests_than_the_state(
    rig: tuple[Engine, MomentStage, FakeClock],
) -> None:
    """A customer who views product after product: the state keeps the latest
    MAX_INTERESTS, and the world-event audience index no more than that."""
    engine, stage, clock = rig
    for n in range(4 * MAX_INTERESTS):
        at = T0 + n * MINUTE
        engine.ingest([track("Product Viewed", at, user="u1", properties={"product_id": f"p{n}"})])
        clock.set(at)
        stage.catch_up()
    customer = engine.store.owner(("user_id", "u1"))
    assert customer is not None
    assert stage.audience.interest_count(customer) == MAX_INTERESTS
    latest = f"p{4 * MAX_INTERESTS - 1}"
    world = WorldEvent(id="w", name="restock", products=(latest, "p0"))
    assert [r.customer_id for r in stage.audience.audience(world, None, clock.now_ms())] == [
        customer
    ]  # still found by a recent interest
    old = WorldEvent(id="w2", name="restock", products=("p0",))
    assert stage.audience.audience(old, None, clock.now_ms()) == []  # the oldest was let go


def state_bytes(stage: MomentStage, customers: list[str]) -> int:
    """What the stage keeps per customer, as the bytes of their stored states."""
    rows = stage.moments.states(customers)
    return sum(len(rows[c].body) for c in customers)


def test_returning_customers_state_stops_growing_past_the_longest_window(
    rig: tuple[Engine, MomentStage, FakeClock],
) -> None:
    """Customers who view a product every 20 minutes: their state grows while the
    playbook's windows fill (the longest, 24 h), then stays the same size however many
    more events come (this, not a leak, is the memory a short soak sees rising)."""
    engine, stage, clock = rig
    users = [f"r{i}" for i in range(8)]
    step = 20 * MINUTE

    def views(hours: int, start: int) -> int:
        at = start
        for _ in range(hours * HOUR // step):
            engine.ingest(
                [
                    track("Product Viewed", at, user=u,
                          properties={"product_id": f"sku-{at // step % 40}", "price": 9.5})
                    for u in users
                ]
            )  # fmt: skip
            clock.set(at)
            stage.catch_up()
            at += step
        return at

    at = views(6, T0)
    customers = [c for u in users if (c := engine.store.owner(("user_id", u))) is not None]
    early = state_bytes(stage, customers)
    at = views(24, at)
    day = state_bytes(stage, customers)
    assert day > early  # the windows filled
    at = views(24, at)
    two_days = state_bytes(stage, customers)
    assert two_days <= day * 1.05  # twice the events, the same state
    assert stage.timer_count()[1] <= 2 * len(customers) + 64
