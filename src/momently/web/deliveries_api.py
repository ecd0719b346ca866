"""The admin API of delivery: the outbox, template previews, in-app stream tokens, and lift.

``GET /api/lift`` reads every decision in its time range from the moment store
and scans the whole event log for conversions (``Order Completed``). That is
fine at the sizes the embedded mode runs at; a conversions index (or a table the
moment stage keeps) is the next step when it is not.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, Final
from urllib.parse import urlencode

import msgspec
from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from momently.clock import Clock
from momently.decide.records import Decision, DecisionQuery
from momently.deliver.compose import preview
from momently.deliver.inapp_routes import inapp_token
from momently.deliver.records import STATES
from momently.deliver.tracking import TokenSigner
from momently.errors import InvalidInput
from momently.events import Event, from_ms
from momently.measure.lift import HOUR_MS, Conversion, acts, lift
from momently.moments.model import Moment, MomentKind
from momently.runtime.delivery import Delivery
from momently.state.profile import Profile, apply_event, new_profile
from momently.types import MomentStore, Store
from momently.web import models
from momently.web.admin import admin_guard, find_customer, millis
from momently.web.auth import AdminAuth

CONVERSION: Final = "Order Completed"
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": models.Error, "description": "missing or wrong admin key"},
    404: {"model": models.Error, "description": "no such customer"},
}


class Open(BaseModel):
    """An answer documented by its main fields; the rest is described in the route."""

    model_config = ConfigDict(extra="allow")


class DeliveryPage(Open):
    deliveries: list[dict[str, Any]]
    counts: dict[str, int]


class PreviewMoment(BaseModel):
    """The moment to render with; every part optional."""

    model_config = ConfigDict(extra="forbid")

    kind: MomentKind = "know"
    name: str = Field("preview", max_length=200)
    context: dict[str, Any] = {}
    details: dict[str, Any] = {}


class PreviewRequest(BaseModel):
    """An offer's message for one channel, as a known customer or a made-up profile gets it."""

    model_config = ConfigDict(extra="forbid")

    offer: str = Field(max_length=64)
    channel: str = Field(max_length=64)
    customer: str | None = Field(None, max_length=200, description="any identifier")
    traits: dict[str, Any] | None = Field(None, description="a profile's traits, if no customer")
    locale: str | None = Field(None, max_length=35)
    moment: PreviewMoment | None = None


class Preview(Open):
    ok: bool


class TokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customer: str = Field(max_length=200, description="any identifier of the customer")
    device: str = Field(min_length=1, max_length=200)
    ttl_s: int = Field(86_400, ge=60, le=30 * 86_400)


class InAppToken(BaseModel):
    customerId: str  # noqa: N815 - the wire format is camelCase
    device: str
    token: str
    stream: str


class LiftReport(Open):
    windowMs: int  # noqa: N815
    segments: list[dict[str, Any]]


def _profile_of(traits: dict[str, Any], locale: str | None, now_ms: int) -> Profile:
    """A profile folded from one identify carrying ``traits``, as ingestion would build it."""
    when = from_ms(now_ms)
    event = Event(
        message_id="preview", type="identify", timestamp=when, received_at=when,
        user_id="preview", traits=traits, context={"locale": locale} if locale else {},
    )  # fmt: skip
    return apply_event(new_profile("preview", event), event)


def _decisions(moments: MomentStore, since: int | None, until: int | None) -> Iterator[Decision]:
    before: tuple[int, str] | None = None
    while True:
        page = moments.decisions(
            DecisionQuery(since_ms=since, until_ms=until, before=before, limit=1000)
        )
        yield from page
        if len(page) < 1000:
            return
        before = (page[-1].at_ms, page[-1].decision_id)


def _conversions(store: Store, since: int | None, until: int | None) -> Iterator[Conversion]:
    """Every ``Order Completed`` in the log within [since, until): a full scan."""
    after = 0
    while records := store.read_log(after, 5_000):
        for record in records:
            event = record.event
            if event.type != "track" or event.event != CONVERSION:
                continue
            at = event.timestamp_ms
            if (since is not None and at < since) or (until is not None and at >= until):
                continue
            revenue = event.properties.get("revenue", event.properties.get("total"))
            money = float(revenue) if isinstance(revenue, int | float) else 0.0
            yield Conversion(record.customer_id, at, money)
        after = records[-1].seq


def deliveries_router(
    store: Store,
    moments: MomentStore,
    delivery: Delivery,
    signer: TokenSigner,
    clock: Clock,
    admin_key: AdminAuth,
    *,
    stats: bool = True,
) -> APIRouter:
    """Routes under ``/api`` for deliveries, previews, in-app tokens and lift; without
    ``GET /api/deliveries/stats`` if not ``stats`` (an ingest node asks its workers:
    :mod:`momently.distributed.deliveries`)."""
    router = APIRouter(
        tags=["deliveries"], dependencies=[Depends(admin_guard(admin_key))], responses=_ERRORS
    )
    outbox = delivery.outbox

    @router.get("/api/deliveries", response_model=DeliveryPage)
    def list_deliveries(
        customer: Annotated[str | None, Query(description="any identifier of the customer")] = None,
        decision: Annotated[str | None, Query(max_length=100, description="a decision id")] = None,
        status: Annotated[str | None, Query(description=", ".join(STATES))] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> dict[str, Any]:
        """Outbox entries, newest first: each send's state, attempts, provider and reason."""
        if status is not None and status not in STATES:
            raise InvalidInput(f"unknown status {status!r}; one of {', '.join(STATES)}", "status")
        customer_id = None if customer is None else find_customer(store, customer, "customer")
        found = outbox.store.entries(
            state=status,
            customer_id=customer_id,
            decision_id=decision,
            limit=limit,
        )
        return {"deliveries": [e.to_json() for e in found], "counts": outbox.store.counts()}

    if stats:

        @router.get("/api/deliveries/stats")
        def delivery_stats() -> dict[str, Any]:
            """The outbox by state and what happened to decisions on their way out."""
            return delivery.stats()

    @router.post("/api/templates/preview", response_model=Preview)
    def preview_template(body: PreviewRequest) -> dict[str, Any]:
        """Render an offer's message as it would go out; a template error is an answer too."""
        now = clock.now_ms()
        if body.customer is not None:
            customer_id = find_customer(store, body.customer, "customer")
            profile = store.profile(customer_id)
        else:
            customer_id = "preview"
            profile = _profile_of(body.traits or {}, body.locale, now)
        shape = body.moment or PreviewMoment()
        moment = Moment(
            moment_id="mo-preview", customer_id=customer_id, kind=shape.kind, name=shape.name,
            confidence=1.0, at_ms=now, expires_ms=now + HOUR_MS, trigger="preview",
            source="preview", context=shape.context, details=shape.details,
        )  # fmt: skip
        return preview(
            delivery.spec,
            delivery.renderer,
            offer_id=body.offer,
            channel=body.channel,
            profile=profile,
            moment=moment,
            locale=body.locale,
        )

    @router.post("/api/inapp/token", response_model=InAppToken)
    def stream_token(body: TokenRequest) -> dict[str, Any]:
        """A token that lets one device of one customer open its in-app stream."""
        customer_id = find_customer(store, body.customer, "customer")
        token = inapp_token(signer, customer_id, body.device, body.ttl_s * 1000)
        query = urlencode({"customer": customer_id, "device": body.device, "token": token})
        return {
            "customerId": customer_id,
            "device": body.device,
            "token": token,
            "stream": f"/api/inapp/stream?{query}",
        }

    @router.get("/api/lift", response_model=LiftReport)
    def get_lift(
        window_h: Annotated[float, Query(gt=0, le=24 * 90, description="attribution window")] = 72,
        since: Annotated[int | None, millis("decisions from (ms since epoch)")] = None,
        until: Annotated[
            int | None,
            millis("decisions before (ms since epoch)"),
        ] = None,
        seed: Annotated[int, Query(ge=0, description="the bootstrap's seed")] = 0,
    ) -> dict[str, Any]:
        """Conversion rate and revenue per customer, treated against held out, per offer,
        moment kind and channel, with 95% intervals and sample sizes."""
        window = int(window_h * HOUR_MS)
        if window < 1:  # found by schemathesis: 1e-300 h passed gt=0 and failed in lift()
            raise InvalidInput("the attribution window is under a millisecond", "window_h")
        canonical: dict[str, str] = {}

        def who(customer: str) -> str:
            found = canonical.get(customer)
            if found is None:
                found = canonical[customer] = store.canonical(customer) or customer
            return found

        decisions = [
            _with_customer(d, who(d.customer_id))
            for d in _decisions(moments, since, until)
            if acts(d)
        ]
        horizon = None if until is None else until + window
        conversions = [
            Conversion(who(c.customer_id), c.at_ms, c.revenue)
            for c in _conversions(store, since, horizon)
        ]
        return lift(decisions, conversions, window_ms=window, seed=seed).to_json()

    return router


def _with_customer(decision: Decision, customer_id: str) -> Decision:
    """The decision under the customer's canonical id (merges since it was made)."""
    if decision.customer_id == customer_id:
        return decision
    return msgspec.structs.replace(decision, customer_id=customer_id)
