"""Pydantic models of the admin API's answers: they are what /openapi.json documents."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class Error(BaseModel):
    error: str
    code: str
    message: str
    reason: str
    field: str | None = None


class Health(BaseModel):
    status: str
    pending: int


class Stats(BaseModel):
    events: int
    customers: int
    identities: int


class Identity(BaseModel):
    kind: str
    value: str


class Profile(BaseModel):
    """A merged customer profile with every identity that resolves to it."""

    model_config = ConfigDict(extra="allow")

    customerId: str  # noqa: N815 - the wire format is camelCase, as Segment's is
    userId: str | None
    traits: dict[str, Any]
    addresses: dict[str, list[str]]
    devices: list[dict[str, Any]]
    timezone: str | None
    locale: str | None
    lastLocation: dict[str, Any] | None  # noqa: N815
    consent: dict[str, dict[str, Any]]
    firstSeen: int  # noqa: N815
    lastSeen: int  # noqa: N815
    counts: dict[str, int]
    mergedFrom: list[str]  # noqa: N815
    identities: list[Identity]


class StoredEvent(BaseModel):
    """An event as the log holds it (Segment's fields), with its position in the log."""

    model_config = ConfigDict(extra="allow")

    seq: int
    customerId: str  # noqa: N815
    messageId: str  # noqa: N815
    type: str
    timestamp: str
    receivedAt: str  # noqa: N815


class EventPage(BaseModel):
    customerId: str  # noqa: N815
    events: list[StoredEvent]
    next: str | None


class Moment(BaseModel):
    """A detected moment: kind, name, confidence, trigger, context snapshot and expiry."""

    model_config = ConfigDict(extra="allow")

    momentId: str  # noqa: N815
    customerId: str  # noqa: N815
    kind: str
    name: str
    confidence: float
    atMs: int  # noqa: N815
    expiresMs: int  # noqa: N815
    trigger: str
    source: str
    context: dict[str, Any] = {}
    details: dict[str, Any] = {}


class MomentPage(BaseModel):
    moments: list[Moment]
    next: str | None


class JourneyInfo(BaseModel):
    name: str
    title: str
    stages: list[str]


class JourneyReport(BaseModel):
    """Funnel, conversion between stages, median time between stages, drop-off, top paths."""

    model_config = ConfigDict(extra="allow")


class JourneyRunOut(BaseModel):
    """One customer's run through one journey."""

    model_config = ConfigDict(extra="allow")

    journey: str
    run: int
    stage: str


class WorldEventResult(BaseModel):
    id: str
    recipients: int
    duplicate: bool


class DecisionCandidate(BaseModel):
    """One action a decision considered, its score and its parts, or what ruled it out."""

    model_config = ConfigDict(extra="allow")

    offer: str
    channel: str | None = None
    sendAtMs: int | None = None  # noqa: N815
    score: float = 0.0
    parts: dict[str, float] = {}
    channelReason: str | None = None  # noqa: N815
    refused: str | None = None


class Decision(BaseModel):
    """What momently decided for one moment — including silence — and why."""

    model_config = ConfigDict(extra="allow")

    decisionId: str  # noqa: N815
    customerId: str  # noqa: N815
    momentId: str  # noqa: N815
    momentName: str  # noqa: N815
    momentKind: str  # noqa: N815
    atMs: int  # noqa: N815
    action: str
    offer: str | None = None
    channel: str | None = None
    device: str | None = None
    sendAtMs: int | None = None  # noqa: N815
    expiresMs: int = 0  # noqa: N815
    probability: float = 1.0
    score: float = 0.0
    holdout: str | None = None
    reasons: list[str] = []
    candidates: list[DecisionCandidate] = []
    bound: list[str] = []
    features: dict[str, float] = {}
    status: str = "decided"


class DecisionPage(BaseModel):
    decisions: list[Decision]
    next: str | None
