"""``GET /api/deliveries/stats`` on an ingest node: the outbox, and every sender's counters.

The embedded answer is ``{"outbox", "counts", "worker"}``: the outbox by state, and
the delivery's own counters (decisions submitted, cancelled, unroutable, reconciled,
each send's outcome, ``worker``: the sender's passes and errors). In distributed
mode the outbox is one, shared by the workers, and the node reads it; the counters
are each worker's, in its memory. The node asks every worker at once
(:func:`momently.distributed.gather.gather` on ``<stream>.rpc.deliveries``, as
``GET /api/models`` does); each answers with its sender's and its partitions'
submitters' counters, and the node adds them: a count is the sum over the workers
that answered, each since it started (a restarted worker starts again from 0, as
the embedded server's do).

Which workers are in it is in the headers: ``X-Momently-Workers-Answered: 2`` (the
answers added), ``X-Momently-Partitions-Answered: 7/9`` and
``X-Momently-Partitions-Missing: 3,5`` (partitions whose owner did not answer in
time, as on ``/api/models``). The answer is complete once every partition's owner
has answered: a worker that owns no partition at that moment (more workers than
partitions, or one that has just lost its leases) is counted only if its answer
came before the owners' last. No worker answering is not an error: the outbox's
counts, counters of 0, and headers that say so (``X-Momently-Workers-Answered:
0``), with a 200.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

import nats.errors
from fastapi import APIRouter, Depends
from fastapi.responses import Response
from nats.aio.client import Client
from nats.aio.subscription import Subscription

from momently.distributed.gather import COVERAGE_HEADERS, answer, gather, say_coverage
from momently.distributed.log import EventLog
from momently.distributed.worker import Worker
from momently.runtime.delivery import Delivery
from momently.web.admin import admin_guard
from momently.web.auth import AdminAuth

log = logging.getLogger(__name__)
TIMEOUT_S = 5.0
WORKERS = "X-Momently-Workers-Answered"


def rpc_subject(stream: str) -> str:
    return f"{stream}.rpc.deliveries"


def merge_counters(answers: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The workers' ``counts`` and ``worker`` counters, added.

    >>> merge_counters([
    ...     {"counts": {"submitted": 2}, "worker": {"passes": 5, "errors": 0}},
    ...     {"counts": {"submitted": 1, "unroutable": 1}, "worker": {"passes": 3, "errors": 1}},
    ... ])
    {'counts': {'submitted': 3, 'unroutable': 1}, 'worker': {'passes': 8, 'errors': 1}}
    """
    counts: Counter[str] = Counter()
    passes = errors = 0
    for body in answers:
        counts.update({str(k): int(v) for k, v in body["counts"].items()})
        passes += int(body["worker"]["passes"])
        errors += int(body["worker"]["errors"])
    return {"counts": dict(counts), "worker": {"passes": passes, "errors": errors}}


# -- the worker's side ----------------------------------------------------------------


def worker_counters(worker: Worker, counters: Callable[[], dict[str, Any]] | None) -> Any:
    """What a worker answers: its counters and the partitions it owns now (a worker
    without a sender, no ``--outbox``, answers zeros: its partitions send nothing)."""

    async def build() -> dict[str, Any]:
        found = (
            counters()
            if counters is not None
            else {"counts": {}, "worker": {"passes": 0, "errors": 0}}
        )
        return {"owner": worker.settings.owner, "partitions": sorted(worker.shards), **found}

    return build


async def serve_counters(
    worker: Worker, client: Client, counters: Callable[[], dict[str, Any]] | None
) -> Subscription:
    """Answer the ingest nodes' requests for the senders' counters (on the worker's loop)."""
    return await answer(
        client, rpc_subject(worker.settings.log.stream), worker_counters(worker, counters)
    )


_starting: set[asyncio.Task[Subscription]] = set()


def answer_deliveries(
    worker: Worker, log: EventLog, counters: Callable[[], dict[str, Any]] | None
) -> None:
    """From the worker's ``on_start`` (on its loop, once connected): start answering with
    ``counters`` (``WorkerDelivery.counters``; None without ``--outbox``)."""
    task = asyncio.get_running_loop().create_task(serve_counters(worker, log.client, counters))
    _starting.add(task)
    task.add_done_callback(_starting.discard)


# -- the ingest node's side -----------------------------------------------------------


def delivery_stats_router(
    delivery: Delivery,
    log_of: Callable[[], EventLog | None],
    partitions: int,
    admin_key: AdminAuth,
    timeout_s: float | None = None,
) -> APIRouter:
    """``GET /api/deliveries/stats`` on an ingest node (module docstring): ``delivery``
    reads the workers' shared outbox; the workers have ``timeout_s`` (default
    :data:`TIMEOUT_S`) to answer."""
    router = APIRouter(tags=["deliveries"], dependencies=[Depends(admin_guard(admin_key))])
    headers = {
        WORKERS: {"description": "workers whose counters are added", "schema": {"type": "string"}},
        **COVERAGE_HEADERS,
    }

    @router.get("/api/deliveries/stats", responses={200: {"headers": headers}})
    async def delivery_stats(response: Response) -> dict[str, Any]:
        """The outbox by state and what happened to decisions on their way out: the
        counters added over the workers that answered (headers ``X-Momently-*``)."""
        outbox = await asyncio.to_thread(delivery.outbox.store.counts)
        answers: list[dict[str, Any]] = []
        covered = 0
        missing = list(range(partitions))
        found = log_of()
        if found is not None:
            stream = found.settings.stream
            try:
                wait = TIMEOUT_S if timeout_s is None else timeout_s
                gathered = await gather(found.client, rpc_subject(stream), partitions, wait)
            except (nats.errors.Error, TimeoutError, OSError) as error:
                log.warning("could not ask the workers for their counters: %s", error)
            else:
                answers, covered, missing = (
                    gathered.answers,
                    len(gathered.covered),
                    gathered.missing,
                )
        added = []
        for body in answers:
            try:
                merge_counters([body])
            except (KeyError, TypeError, ValueError, AttributeError) as error:
                log.warning("dropped counters from %s: %s", body.get("owner"), error)
            else:
                added.append(body)
        merged = merge_counters(added)
        response.headers[WORKERS] = str(len(added))
        say_coverage(response.headers, covered, partitions, missing)
        return {"outbox": outbox, **merged}

    return router
