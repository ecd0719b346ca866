"""The decision record: what was chosen for a moment, with what probability, and why."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any, Final, Literal

import msgspec

Action = Literal["send", "schedule", "silent"]
ACTIONS: Final[tuple[Action, ...]] = ("send", "schedule", "silent")
Holdout = Literal["global", "offer"]


class Candidate(msgspec.Struct, kw_only=True, omit_defaults=True, rename="camel"):
    """One action considered: its best slot and channel, its score and its parts."""

    offer: str
    channel: str | None = None
    send_at_ms: int | None = None
    score: float = 0.0
    parts: dict[str, float] = {}
    channel_reason: str | None = None  # why this channel: it has a message, or a fallback
    refused: str | None = None  # the constraint that ruled it out


class Decision(msgspec.Struct, kw_only=True, omit_defaults=True, rename="camel"):
    """What momently decided for one moment; silence is a decision too."""

    decision_id: str
    customer_id: str
    moment_id: str
    moment_name: str
    moment_kind: str
    at_ms: int
    action: Action
    offer: str | None = None
    channel: str | None = None
    device: str | None = None
    send_at_ms: int | None = None
    expires_ms: int = 0
    probability: float = 1.0  # the probability with which this action was picked
    score: float = 0.0
    holdout: Holdout | None = None
    reasons: list[str] = []
    candidates: list[Candidate] = []
    bound: list[str] = []  # constraints that ruled something out, "check: reason"
    features: dict[str, float] = {}  # the context the policy saw, for off-policy evaluation
    status: str = "decided"  # decided, held_out, silent (delivery moves it on)


def decision_id(moment_id: str) -> str:
    """At most one decision per moment, and the same one on replay.

    >>> decision_id("mo-1") == decision_id("mo-1")
    True
    """
    return "de-" + hashlib.blake2b(moment_id.encode(), digest_size=12).hexdigest()


def cancelled_copy(decision: Decision, reason: str) -> Decision:
    """The decision with its planned send called off, and why."""
    return msgspec.structs.replace(
        decision, status="cancelled", reasons=[*decision.reasons, f"cancelled: {reason}"]
    )


def decision_counts(decisions: Iterable[Decision]) -> dict[str, int]:
    """Decisions by action, and how many were held out (the stats both stores report)."""
    out = {f"decisions.{a}": 0 for a in ACTIONS}
    held = 0
    for decision in decisions:
        out[f"decisions.{decision.action}"] += 1
        held += decision.status == "held_out"
    out["decisions.heldOut"] = held
    return out


def to_json(decision: Decision) -> dict[str, Any]:
    return msgspec.to_builtins(decision)  # type: ignore[no-any-return]


class DecisionQuery(msgspec.Struct, kw_only=True, frozen=True):
    """Filters of ``GET /api/decisions``; all optional, combined with AND."""

    customer_id: str | None = None
    moment_id: str | None = None
    action: str | None = None
    offer: str | None = None
    status: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None
    before: tuple[int, str] | None = None  # page cursor: (at_ms, decision_id) of the last seen
    limit: int = 100


def matches(decision: Decision, query: DecisionQuery) -> bool:
    """Whether a decision passes a query's filters (the in-memory store's WHERE)."""
    for value, wanted in (
        (decision.customer_id, query.customer_id),
        (decision.moment_id, query.moment_id),
        (decision.action, query.action),
        (decision.offer, query.offer),
        (decision.status, query.status),
    ):
        if wanted is not None and value != wanted:
            return False
    if query.since_ms is not None and decision.at_ms < query.since_ms:
        return False
    if query.until_ms is not None and decision.at_ms >= query.until_ms:
        return False
    return query.before is None or (decision.at_ms, decision.decision_id) < query.before
