"""Builders for what the moment stage writes: moments, decisions, journey runs."""

from __future__ import annotations

from pathlib import Path
from typing import Final

from momently.decide.records import Action, Decision, decision_id
from momently.moments.journey_stats import JourneyRecord
from momently.moments.model import Moment, MomentKind, moment_id
from momently.store.moments_memory import MemoryMomentStore
from momently.store.moments_sqlite import SqliteMomentStore
from momently.store.postgres import PostgresMomentStore
from momently.types import MomentStore
from tests.postgres import cluster

T0: Final = 1_790_000_000_000


def moment(customer: str, name: str, at: int, kind: MomentKind = "buy") -> Moment:
    return Moment(
        moment_id=moment_id(customer, name, f"m-{at}"),
        customer_id=customer,
        kind=kind,
        name=name,
        confidence=0.5,
        at_ms=T0 + at,
        expires_ms=T0 + at + 60_000,
        trigger=f"m-{at}",
        source="test",
        context={"place": "home", "big": 2**70},
        details={"score": 0.25, "list": [1, "two", None]},
    )


def decision(of: Moment, action: Action = "send", offer: str | None = "o1") -> Decision:
    return Decision(
        decision_id=decision_id(of.moment_id),
        customer_id=of.customer_id,
        moment_id=of.moment_id,
        moment_name=of.name,
        moment_kind=of.kind,
        at_ms=of.at_ms,
        action=action,
        offer=offer if action != "silent" else None,
        channel="push" if action != "silent" else None,
        send_at_ms=of.at_ms + 1000 if action == "schedule" else None,
        status="decided" if action != "silent" else "silent",
        reasons=["because"],
        features={"hour": 7.0},
    )


def run(customer: str, journey: str, number: int, at: int) -> JourneyRecord:
    return JourneyRecord(
        customer_id=customer,
        journey=journey,
        run=number,
        entered={"browse": T0 + at},
        path=("home", "product"),
        completed_ms=None,
        updated_ms=T0 + at,
        stage="browse",
    )


def open_moment_store(backend: str, where: Path) -> MomentStore:
    """The backend's moment store in a directory (a schema, on PostgreSQL) of its own."""
    if backend == "memory":
        return MemoryMomentStore()
    if backend == "sqlite":
        return SqliteMomentStore(where / "moments.db", synchronous="OFF")
    return PostgresMomentStore(cluster().url(where))


MOMENT_BACKENDS: Final = ("memory", "sqlite", "postgresql")
