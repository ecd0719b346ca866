"""A customer's predictions in distributed mode: asked of the worker that owns them.

The online models live in each worker's memory, one set per partition, learned
from that partition's customers. ``GET /api/customers/{id}/predictions`` on an
ingest node finds the customer's partition (as the node's other reads do) and
asks over core NATS request/reply on ``<stream>.rpc.predictions``; every worker
hears the request and the one that owns the partition answers, with the
embedded route's body worked out in its shards' thread between two batches. No
owner (a takeover under way) is a 503 to retry. ``GET /api/models`` merges every
partition's models (:mod:`momently.distributed.models`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Annotated, Any

import nats.errors
from fastapi import APIRouter, Depends, Query
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from momently.distributed.admin import Partitions
from momently.distributed.log import EventLog
from momently.distributed.worker import Worker
from momently.errors import Unavailable
from momently.web.admin import admin_guard
from momently.web.auth import AdminAuth
from momently.web.models_api import _ERRORS, CustomerPredictions, predictions_body

log = logging.getLogger(__name__)
TIMEOUT_S = 5.0


def rpc_subject(stream: str) -> str:
    """The subject of prediction requests.

    >>> rpc_subject("MOMENTLY")
    'momently.rpc.predictions'
    """
    return f"{stream.lower()}.rpc.predictions"


async def serve_predictions(worker: Worker, client: Client) -> Subscription:
    """Answer the requests for the partitions this worker owns (on its loop)."""

    async def received(msg: Msg) -> None:
        try:
            request = json.loads(msg.data)
            partition, customer = int(request["partition"]), str(request["customer"])
            at = None if request.get("at") is None else int(request["at"])
        except (ValueError, KeyError, TypeError) as error:
            log.warning("dropped a prediction request that is not one: %s", error)
            return
        found = await worker.in_shard(
            partition, lambda shard: shard.stage.predictions(customer, at)
        )
        if found is not None:  # else not ours: its owner answers
            await msg.respond(json.dumps(predictions_body(customer, found)).encode())

    return await client.subscribe(rpc_subject(worker.settings.log.stream), cb=received)


_starting: set[asyncio.Task[Subscription]] = set()


def answer_predictions(worker: Worker, log: EventLog) -> None:
    """From the worker's ``on_start`` (on its loop, once connected): start answering."""
    task = asyncio.get_running_loop().create_task(serve_predictions(worker, log.client))
    _starting.add(task)
    task.add_done_callback(_starting.discard)


def predictions_router(
    partitions: Partitions, log_of: Callable[[], EventLog | None], admin_key: AdminAuth
) -> APIRouter:
    """``GET /api/customers/{id}/predictions`` on an ingest node (module docstring)."""
    router = APIRouter(
        tags=["models"], dependencies=[Depends(admin_guard(admin_key))], responses=_ERRORS
    )

    @router.get("/api/customers/{id}/predictions", response_model=CustomerPredictions)
    async def customer_predictions(
        id: str,  # noqa: A002 - the path names it id
        at: Annotated[
            int | None, Query(description="when (ms since epoch); now by default")
        ] = None,
    ) -> dict[str, Any]:
        """Propensity, receptivity, channel and device, fatigue and next need of one
        customer, from their partition's models."""
        part, customer = await asyncio.to_thread(partitions.find, id)
        found = log_of()
        if found is None:
            raise Unavailable(retry_after=1)
        request = {"partition": part.partition, "customer": customer, "at": at}
        try:
            reply = await found.client.request(
                rpc_subject(partitions.log.stream), json.dumps(request).encode(), TIMEOUT_S
            )
        except (nats.errors.Error, TimeoutError) as error:
            raise Unavailable(retry_after=1) from error  # no owner answered: retry
        body: dict[str, Any] = json.loads(reply.data)
        return body

    return router
