"""The admin API of decisions: every decision, silence included, with its explanation."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from fastapi import APIRouter, Depends, Path, Query

from momently.decide.records import ACTIONS, DecisionQuery
from momently.errors import InvalidInput
from momently.types import MomentStore, Store
from momently.web import models
from momently.web.admin import NotFound, admin_guard, find_customer, millis, page_cursor
from momently.web.auth import AdminAuth

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": models.Error, "description": "missing or wrong admin key"},
    404: {"model": models.Error, "description": "no such customer or decision"},
}


def decisions_router(store: Store, moments: MomentStore, admin_key: AdminAuth) -> APIRouter:
    """``GET /api/decisions`` and ``GET /api/decisions/{id}``."""
    router = APIRouter(
        tags=["decisions"], dependencies=[Depends(admin_guard(admin_key))], responses=_ERRORS
    )

    @router.get("/api/decisions", response_model=models.DecisionPage)
    def list_decisions(
        customer: Annotated[str | None, Query(description="any identifier of the customer")] = None,
        moment: Annotated[str | None, Query(max_length=100, description="a moment id")] = None,
        action: Annotated[str | None, Query(description=", ".join(ACTIONS))] = None,
        offer: Annotated[str | None, Query(max_length=100)] = None,
        status: Annotated[str | None, Query(max_length=40)] = None,
        since: Annotated[int | None, millis("from this time (ms since epoch)")] = None,
        until: Annotated[
            int | None,
            millis("before this time (ms since epoch)"),
        ] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        cursor: Annotated[str | None, Query(description="`next` from the previous page")] = None,
    ) -> dict[str, Any]:
        """Decisions, newest first: what was chosen for each moment, or silence, and why."""
        if action is not None and action not in ACTIONS:
            raise InvalidInput(f"unknown action {action!r}; one of {', '.join(ACTIONS)}", "action")
        customer_id = None if customer is None else find_customer(store, customer, "customer")
        query = DecisionQuery(
            customer_id=customer_id,
            moment_id=moment,
            action=action,
            offer=offer,
            status=status,
            since_ms=since,
            until_ms=until,
            before=page_cursor(cursor, "de-"),
            limit=limit + 1,
        )
        found = moments.decisions(query)
        page = found[:limit]
        last = page[-1] if page else None
        return {
            "decisions": [msgspec.to_builtins(d) for d in page],
            "next": f"{last.at_ms}~{last.decision_id}" if last and len(found) > limit else None,
        }

    @router.get("/api/decisions/{decision_id}", response_model=models.Decision)
    def get_decision(
        decision_id: Annotated[str, Path(max_length=100)],
    ) -> dict[str, Any]:
        """One decision with its candidates, their scores, the constraints that bound."""
        decision = moments.decision(decision_id)
        if decision is None:
            raise NotFound(f"no decision {decision_id!r}", "decision_id")
        body: dict[str, Any] = msgspec.to_builtins(decision)
        return body

    return router
