"""The playbook and journey reads on an ingest node, over every partition's moment store.

The same routes and shapes as the embedded mode's (:mod:`momently.web.moments_api`):
journey funnels count the runs of every partition (a customer's runs are in
their partition), ``/api/moments/stats`` sums the partitions' counts (no
``checkpoint``: each partition's position is in ``/api/partitions``). What
only a running stage knows (``cooledDown``, ``failed``) is each worker's, in
its ``/metrics``, and is not in these stats.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from fastapi import APIRouter, Depends, Query

from momently.distributed.admin import Partitions
from momently.moments.journey_stats import funnel
from momently.moments.playbook import Playbook, playbook_schema
from momently.web import models
from momently.web.admin import NotFound, admin_guard, millis
from momently.web.auth import AdminAuth


def journeys_router(partitions: Partitions, playbook: Playbook, admin_key: AdminAuth) -> APIRouter:
    """``/api/journeys[/{name}]``, ``/api/customers/{id}/journeys``, ``/api/playbook[/schema]``
    and ``/api/moments/stats`` on an ingest node."""
    router = APIRouter(tags=["moments"], dependencies=[Depends(admin_guard(admin_key))])
    journeys = {j.name: j for j in playbook.journeys}

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
        """Funnel, conversion, median times, drop-off and top paths over every partition."""
        spec = journeys.get(name)
        if spec is None:
            raise NotFound(f"no journey named {name!r} in the playbook", "name")
        runs = [r for rs in partitions.each(lambda p: p.moments.journey_runs(name)) for r in rs]
        report = funnel(spec, runs, since_ms=since, until_ms=until, top_paths=top)
        body: dict[str, Any] = msgspec.to_builtins(report)
        return body

    @router.get("/api/customers/{id}/journeys", response_model=list[models.JourneyRunOut])
    def customer_journeys(id: str) -> list[dict[str, Any]]:  # noqa: A002 - the path names it id
        """Every journey run of one customer, from their partition."""
        part, customer = partitions.find(id)
        return [
            msgspec.to_builtins(run)
            for spec in playbook.journeys
            for run in part.moments.journey_runs(spec.name, customer)
        ]

    @router.get("/api/playbook")
    def current_playbook() -> dict[str, Any]:
        """The playbook this node validates world events with (the workers run theirs)."""
        return playbook.model_dump(mode="json")

    @router.get("/api/playbook/schema")
    def schema() -> dict[str, Any]:
        """The playbook's JSON Schema."""
        return playbook_schema()

    @router.get("/api/moments/stats")
    def stats() -> dict[str, int]:
        """What the partitions' moment stages hold, summed; a world event counts once
        (every partition records it), and each partition's log position is in
        ``/api/partitions``, not here."""
        total: dict[str, int] = {}
        for counts in partitions.each(lambda p: p.moments.moment_stats()):
            for key, value in counts.items():
                if key == "checkpoint":
                    continue
                merge = max if key == "worldEvents" else int.__add__
                total[key] = merge(total.get(key, 0), value)
        return total

    return router
