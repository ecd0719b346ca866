"""The admin read API: profiles, a customer's events, health and stats."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import msgspec
from fastapi import APIRouter, Depends, Query

from momently.errors import InvalidInput
from momently.identity import KINDS
from momently.runtime.writer import Writer
from momently.state.profile import normal_email, normal_phone
from momently.types import Store
from momently.web import models
from momently.web.auth import AdminAuth, as_access

MAX_MS = 2**62  # times beyond this are refused (SQLite holds signed 64-bit integers)


def millis(description: str) -> Any:
    """A query parameter holding a time in ms since the epoch, within what the stores hold."""
    return Query(ge=-MAX_MS, le=MAX_MS, description=description)


def page_cursor(cursor: str | None, prefix: str) -> tuple[int, str] | None:
    """A ``next`` cursor this API gave out, ``"{at_ms}~{id}"``; InvalidInput otherwise.

    >>> page_cursor("12~de-1", "de-")
    (12, 'de-1')
    """
    if cursor is None:
        return None
    at, sep, key = cursor.partition("~")
    if not sep or not at.lstrip("-").isdigit() or len(at) > 19 or not key.startswith(prefix):
        raise InvalidInput("not a cursor this API gave out", "cursor")
    if abs(int(at)) > MAX_MS:
        raise InvalidInput("not a cursor this API gave out", "cursor")
    return int(at), key


class NotFound(InvalidInput):
    status = 404


def profile_body(store: Store, customer: str, identifier: str) -> dict[str, Any]:
    """``GET /api/profiles/{id}``'s answer: the merged profile with its identities."""
    found = store.profile(customer)
    if found is None:
        raise NotFound(f"no customer is known by {identifier!r}", "id")
    body = found.to_json()
    body["identities"] = [{"kind": k, "value": v} for k, v in store.identities(customer)]
    return body


def event_cursor(cursor: str | None) -> int:
    """The log position in a ``next`` cursor of ``GET /api/events`` (0 without one).

    >>> event_cursor("42"), event_cursor(None)
    (42, 0)
    """
    if not cursor:
        return 0
    if not (cursor.isascii() and cursor.isdigit()) or len(cursor) > 18:
        raise InvalidInput("not a cursor this API gave out", "cursor")
    return int(cursor)


def event_page(store: Store, customer_id: str, after: int, limit: int) -> dict[str, Any]:
    """``GET /api/events``'s answer: the customer's events after log position ``after``,
    in log order, ``limit`` at most, with the cursor of the next page."""
    records = store.customer_events(customer_id, after, limit + 1)
    page = records[:limit]
    return {
        "customerId": customer_id,
        "events": [
            {"seq": r.seq, "customerId": r.customer_id, **msgspec.to_builtins(r.event)}
            for r in page
        ],
        "next": str(page[-1].seq) if len(records) > limit else None,
    }


_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": models.Error, "description": "missing or wrong admin key"},
    403: {"model": models.Error, "description": "the admin key lacks the scope needed"},
    429: {"model": models.Error, "description": "the key is over its rate limit"},
    404: {"model": models.Error, "description": "no such customer"},
}


def find_customer(store: Store, identifier: str, field: str = "id") -> str:
    """The canonical customer behind any identifier: customer id, userId, anonymousId,
    device id, email or phone."""
    customer = store.canonical(identifier)
    if customer is not None:
        return customer
    candidates = {kind: identifier for kind in KINDS}
    candidates["email"] = normal_email(identifier) or identifier
    candidates["phone"] = normal_phone(identifier) or identifier
    for kind in KINDS:
        owner = store.owner((kind, candidates[kind]))
        if owner is not None:
            return store.canonical(owner) or owner
    raise NotFound(f"no customer is known by {identifier!r}", field)


def admin_guard(admin_key: AdminAuth) -> Callable[..., object]:
    """A FastAPI dependency that lets through only ``Authorization: Bearer <admin key>``
    holding the scope the request needs (:mod:`momently.web.auth`)."""
    return as_access(admin_key).guard()


def admin_router(store: Store, writer: Writer, admin_key: AdminAuth) -> APIRouter:
    """The admin API; every route but health needs ``Authorization: Bearer <admin key>``."""
    open_routes = APIRouter(tags=["admin"])
    router = APIRouter(
        tags=["admin"], dependencies=[Depends(admin_guard(admin_key))], responses=_ERRORS
    )

    @open_routes.get("/api/health", response_model=models.Health)
    def health() -> models.Health:
        """200 when the engine is up and taking events."""
        return models.Health(status="ok", pending=writer.pending)

    @router.get("/api/stats", response_model=models.Stats)
    def stats() -> models.Stats:
        """How many events, customers and identities the store holds."""
        return models.Stats(**store.stats())

    @router.get("/api/profiles/{id}", response_model=models.Profile)
    def profile(id: str) -> dict[str, Any]:  # noqa: A002 - the path names it id
        """The merged profile of the customer known by ``id`` (any identifier)."""
        return profile_body(store, find_customer(store, id), id)

    @router.get("/api/events", response_model=models.EventPage)
    def events(
        customer: Annotated[str, Query(description="any identifier of the customer")],
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        cursor: Annotated[str | None, Query(description="`next` from the previous page")] = None,
    ) -> dict[str, Any]:
        """The customer's stored events, in log order, a page at a time."""
        after = event_cursor(cursor)
        return event_page(store, find_customer(store, customer, "customer"), after, limit)

    combined = APIRouter()
    combined.include_router(open_routes)
    combined.include_router(router)
    return combined
