"""Consent and privacy rights on the admin API.

* ``POST /api/customers/{id}/consent`` — opt in or out of a purpose on a channel (or
  ``all``); recorded as a ``Subscribed``/``Unsubscribed`` event in the log (so it has
  a source and a time, replays, and reaches the moment stage like any opt-out),
  committed before the answer, and the scheduled sends it forbids are cancelled;
* ``GET /api/privacy/export/{id}`` — everything held about the customer, as JSON;
* ``POST /api/privacy/delete`` — erase the customer everywhere; their identifiers
  are kept only as keyed digests, and events naming them are dropped at ingestion;
* ``GET /api/privacy/stats`` — erasures, expired events, suppressed identities and
  the events they turned away.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from momently.clock import Clock
from momently.decide.spec import Purpose
from momently.errors import InvalidInput
from momently.events import from_ms
from momently.moments.playbook import Playbook
from momently.privacy.consent import ALL, cancel_scheduled
from momently.privacy.service import Privacy
from momently.runtime.delivery import Delivery, Ingest
from momently.types import Store
from momently.web import models
from momently.web.admin import find_customer
from momently.web.auth import require_scope

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": models.Error, "description": "missing or wrong admin key"},
    403: {"model": models.Error, "description": "an admin key without the scope"},
    404: {"model": models.Error, "description": "no such customer"},
    429: {"model": models.Error, "description": "overloaded, or over the key's rate limit"},
    503: {"model": models.Error, "description": "the store could not commit; retry"},
}
Identifier = Annotated[str, Field(min_length=1, max_length=512)]


class ConsentChange(BaseModel):
    """An opt-in (``granted: true``) or opt-out of one purpose on one channel."""

    model_config = ConfigDict(extra="forbid")

    granted: bool
    purpose: Purpose = "marketing"
    channel: str = Field(
        ALL, min_length=1, max_length=64, description="a channel name or kind, or `all`"
    )
    source: str = Field("api", min_length=1, max_length=64, description="who recorded it")


class ConsentAnswer(BaseModel):
    customerId: str  # noqa: N815 - the wire format is camelCase
    consent: dict[str, dict[str, Any]]
    cancelled: list[str]


class DeleteRequest(BaseModel):
    """The customer to erase, by any identifier (customer id, userId, anonymousId,
    device id, email or phone)."""

    model_config = ConfigDict(extra="forbid")

    id: Identifier


class DeleteAnswer(BaseModel):
    customers: int
    identities: int
    events: int
    momentRows: int  # noqa: N815
    deliveries: int


def privacy_router(
    store: Store,
    privacy: Privacy,
    ingest: Ingest,
    delivery: Delivery,
    playbook: Playbook,
    clock: Clock,
) -> APIRouter:
    """Consent (an admin key with the ``write`` scope) and privacy rights (``privacy``)."""
    consent_routes = APIRouter(
        tags=["privacy"], dependencies=[Depends(require_scope("write"))], responses=_ERRORS
    )
    router = APIRouter(
        tags=["privacy"], dependencies=[Depends(require_scope("privacy"))], responses=_ERRORS
    )
    spec = playbook.decide
    scopes = {ALL} | {c.name for c in spec.channels} | {c.kind for c in spec.channels}

    @consent_routes.post(
        "/api/customers/{id}/consent",
        response_model=ConsentAnswer,
        responses={400: {"model": models.Error, "description": "a channel the playbook lacks"}},
    )
    def consent(id: str, change: ConsentChange) -> ConsentAnswer:  # noqa: A002 - the path's
        """Record an opt-in or opt-out; an opt-out holds before the next decision and
        cancels the sends already scheduled that it forbids."""
        if change.channel not in scopes:
            raise InvalidInput(f"no channel {change.channel!r} in the playbook", "channel")
        customer = find_customer(store, id)
        identity = ingest.identity(customer)
        if not identity:
            raise InvalidInput("the customer has no userId or anonymousId to record it by", "id")
        now = clock.now_ms()
        ingest.now(
            {
                "type": "track",
                "event": "Subscribed" if change.granted else "Unsubscribed",
                "messageId": f"consent-{uuid.uuid4()}",
                "timestamp": from_ms(now).isoformat().replace("+00:00", "Z"),
                "properties": {
                    "channel": change.channel,
                    "purpose": change.purpose,
                    "source": change.source,
                },
                "context": {"momently": {"customerId": customer}},
                **identity,
            },
            source="momently:api",
        )
        cancelled: list[str] = []
        if not change.granted:
            reason = f"the customer opted out of {change.purpose} on {change.channel}"
            cancelled = cancel_scheduled(
                delivery.outbox, spec, customer, change.channel, change.purpose, reason
            )
        profile = store.profile(customer)
        shown = profile.to_json()["consent"] if profile is not None else {}
        return ConsentAnswer(customerId=customer, consent=shown, cancelled=cancelled)

    @router.get("/api/privacy/export/{id}")
    def export(id: str) -> dict[str, Any]:  # noqa: A002 - the path names it id
        """Everything held about the customer known by ``id``: profile, identities,
        consent, events, moments, decisions, deliveries, journeys and model state."""
        return privacy.export(id)

    @router.post("/api/privacy/delete", response_model=DeleteAnswer)
    def delete(request: DeleteRequest) -> DeleteAnswer:
        """Erase the customer known by ``id`` from every store and scrub the files; events
        naming any of their identifiers are dropped at ingestion from now on."""
        done = privacy.erase(request.id)
        return DeleteAnswer(
            customers=done.customers,
            identities=done.identities,
            events=done.events,
            momentRows=done.moment_rows,
            deliveries=done.deliveries,
        )

    @router.get("/api/privacy/stats")
    def stats() -> dict[str, int]:
        """Erasures, expired events, suppressed identities and events turned away."""
        return privacy.stats()

    combined = APIRouter()
    combined.include_router(consent_routes)
    combined.include_router(router)
    return combined
