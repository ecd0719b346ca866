"""The admin API of moments: moments, journeys, world events and the playbook."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from fastapi import APIRouter, Depends, Query

from momently.errors import InvalidInput
from momently.moments.journey_stats import funnel
from momently.moments.model import MOMENT_KINDS
from momently.moments.playbook import Playbook, playbook_schema
from momently.moments.records import MomentQuery
from momently.moments.world import WorldEvent
from momently.runtime.stage import StageRunner
from momently.types import MomentStore, Store
from momently.web import models
from momently.web.admin import NotFound, admin_guard, find_customer, millis, page_cursor
from momently.web.auth import AdminAuth

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": models.Error, "description": "missing or wrong admin key"},
    404: {"model": models.Error, "description": "no such customer or journey"},
}


def moments_router(
    store: Store,
    moments: MomentStore,
    runner: StageRunner,
    playbook: Playbook,
    admin_key: AdminAuth,
) -> APIRouter:
    """Routes under ``/api`` for moments, journeys, world events and the playbook."""
    router = APIRouter(
        tags=["moments"], dependencies=[Depends(admin_guard(admin_key))], responses=_ERRORS
    )
    journeys = {j.name: j for j in playbook.journeys}

    @router.get("/api/moments", response_model=models.MomentPage)
    def list_moments(
        customer: Annotated[str | None, Query(description="any identifier of the customer")] = None,
        kind: Annotated[str | None, Query(description=", ".join(MOMENT_KINDS))] = None,
        name: Annotated[str | None, Query(max_length=200)] = None,
        since: Annotated[int | None, millis("from this time (ms since epoch)")] = None,
        until: Annotated[
            int | None,
            millis("before this time (ms since epoch)"),
        ] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        cursor: Annotated[str | None, Query(description="`next` from the previous page")] = None,
    ) -> dict[str, Any]:
        """Detected moments, newest first, filtered by customer, kind, name and time."""
        if kind is not None and kind not in MOMENT_KINDS:
            raise InvalidInput(f"unknown kind {kind!r}; one of {', '.join(MOMENT_KINDS)}", "kind")
        customer_id = None if customer is None else find_customer(store, customer, "customer")
        query = MomentQuery(
            customer_id=customer_id,
            kind=kind,
            name=name,
            since_ms=since,
            until_ms=until,
            before=page_cursor(cursor, "mo-"),
            limit=limit + 1,
        )
        found = moments.moments(query)
        page = found[:limit]
        last = page[-1] if page else None
        return {
            "moments": [msgspec.to_builtins(m) for m in page],
            "next": f"{last.at_ms}~{last.moment_id}" if last and len(found) > limit else None,
        }

    @router.get("/api/journeys", response_model=list[models.JourneyInfo])
    def list_journeys() -> list[dict[str, Any]]:
        """The playbook's journeys and their stages."""
        return [
            {"name": j.name, "title": j.title, "stages": [s.name for s in j.stages]}
            for j in playbook.journeys
        ]

    @router.get("/api/journeys/{name}", response_model=models.JourneyReport)
    def journey_report(
        name: str,
        since: Annotated[int | None, millis("runs updated from (ms)")] = None,
        until: Annotated[int | None, millis("runs started before (ms)")] = None,
        top: Annotated[int, Query(ge=1, le=100)] = 10,
    ) -> dict[str, Any]:
        """Funnel, conversion between stages, median time between stages, drop-off, top paths."""
        spec = journeys.get(name)
        if spec is None:
            raise NotFound(f"no journey named {name!r} in the playbook", "name")
        runs = moments.journey_runs(name)
        report = funnel(spec, runs, since_ms=since, until_ms=until, top_paths=top)
        body: dict[str, Any] = msgspec.to_builtins(report)
        return body

    @router.get("/api/customers/{id}/journeys", response_model=list[models.JourneyRunOut])
    def customer_journeys(id: str) -> list[dict[str, Any]]:  # noqa: A002 - the path names it id
        """Every journey run of one customer, across all their devices."""
        customer = find_customer(store, id)
        return [
            msgspec.to_builtins(run)
            for spec in playbook.journeys
            for run in moments.journey_runs(spec.name, customer)
        ]

    @router.post("/api/world-events", response_model=models.WorldEventResult)
    def world_event(event: WorldEvent) -> dict[str, Any]:
        """Fan a business event out to the customers it concerns (once per event id)."""
        if not playbook.detectors.world.enabled:
            raise InvalidInput("world events are switched off in the playbook", "detectors.world")
        if event.near is not None and event.near.place is not None:
            if event.near.place not in {p.id for p in playbook.places}:
                raise InvalidInput(f"no place {event.near.place!r} in the playbook", "near.place")
        with runner.lock:
            # The stage may be giving way to ingestion: read what was acknowledged before
            # this event first, so a customer located just before it is in its audience.
            runner.stage.catch_up()
            result = runner.stage.world_event(event)
        return {"id": result.id, "recipients": result.recipients, "duplicate": result.duplicate}

    @router.get("/api/playbook")
    def current_playbook() -> dict[str, Any]:
        """The playbook the engine runs, as loaded and validated."""
        return playbook.model_dump(mode="json")

    @router.get("/api/playbook/schema")
    def schema() -> dict[str, Any]:
        """The playbook's JSON Schema."""
        return playbook_schema()

    @router.get("/api/moments/stats")
    def stats() -> dict[str, int]:
        """How much the moment stage holds, where it is in the log, and what it held back."""
        counts = moments.moment_stats()
        counts["cooledDown"] = runner.stage.cooled
        counts["failed"] = runner.stage.failed
        return counts

    return router
