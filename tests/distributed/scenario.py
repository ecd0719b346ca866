"""A shared event scenario for the distributed tests, and the embedded run to compare with."""

from __future__ import annotations

import random
from pathlib import Path

from momently.clock import FakeClock
from momently.decide.records import Decision, DecisionQuery
from momently.engine import Engine
from momently.events import Event, from_ms
from momently.moments.detector import MomentDetector
from momently.moments.model import Moment
from momently.moments.records import MomentQuery
from momently.runtime.stage import MomentStage
from momently.store.moments_sqlite import SqliteMomentStore
from momently.store.sqlite import SqliteStore
from momently.types import MomentStore

MINUTE = 60_000
HOUR = 60 * MINUTE
T0 = 1_772_449_200_000  # Monday 2026-03-02 11:00 UTC
ALL = 1_000_000


def _event(n: int, user: str, at: int, name: str, **fields: object) -> Event:
    return Event(
        message_id=f"sc-{n}",
        type="track",
        timestamp=from_ms(at),
        received_at=from_ms(at),
        user_id=user,
        event=name,
        **fields,  # type: ignore[arg-type]
    )


def events(customers: int = 24, seed: int = 7, start: int = T0) -> list[Event]:
    """Shoppers who open the app, search, view, add to cart, complain: moments and
    decisions of several kinds, interleaved across customers in time order."""
    rng = random.Random(seed)
    out: list[Event] = []
    n = 0
    for c in range(customers):
        user = f"user-{c}"
        at = start + rng.randrange(0, 30 * MINUTE)
        steps: list[tuple[str, dict[str, object]]] = [
            (
                "Application Opened",
                {
                    "traits": {"email": f"{user}@example.com"},
                    "context": {"device": {"id": f"d-{c}", "type": "ios", "token": f"t-{c}"}},
                },
            ),
            ("Products Searched", {"properties": {"query": "best toaster price"}}),
            ("Product Viewed", {"properties": {"product_id": f"sku-{c % 5}", "price": 40}}),
            ("Product Viewed", {"properties": {"product_id": f"sku-{c % 5}", "price": 40}}),
            ("Product Added", {"properties": {"product_id": f"sku-{c % 5}", "price": 40}}),
        ]
        if c % 3 == 0:
            steps.append(
                (
                    "Support Message",
                    {"properties": {"text": "this is terrible, my order is late again!!"}},
                )
            )
        if c % 4 == 0:
            steps.append(("Order Completed", {"properties": {"revenue": 40, "order_id": f"o{c}"}}))
        for name, fields in steps:
            n += 1
            at += rng.randrange(10_000, 5 * MINUTE)
            out.append(_event(n, user, at, name, **fields))
    out.sort(key=lambda e: (e.timestamp_ms, e.message_id))
    return out


def outputs(stores: list[MomentStore]) -> tuple[list[Moment], list[Decision]]:
    """Every moment and decision of some moment stores, in a stable order."""
    moments = [m for s in stores for m in s.moments(MomentQuery(limit=ALL))]
    decisions = [d for s in stores for d in s.decisions(DecisionQuery(limit=ALL))]
    moments.sort(key=lambda m: m.moment_id)
    decisions.sort(key=lambda d: d.decision_id)
    return moments, decisions


def embedded(
    path: Path, detector: MomentDetector, batch: list[Event], end_ms: int, start: int = T0
) -> tuple[list[Moment], list[Decision]]:
    """The embedded mode on the same events: one store, one stage, clock at the start
    (no timer is due while the events go in), then at ``end_ms`` (every timer fires)."""
    clock = FakeClock(start)
    store = SqliteStore(path / "embedded.db", synchronous="OFF")
    moments = SqliteMomentStore(path / "embedded-moments.db", synchronous="OFF")
    try:
        Engine(store).ingest(batch)
        stage = MomentStage(store, moments, detector, clock)
        stage.catch_up()
        clock.set(end_ms)
        stage.tick()
        return outputs([moments])
    finally:
        moments.close()
        store.close()
