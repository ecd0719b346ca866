"""World events in distributed mode: one ``POST /api/world-events`` fanned out to every
partition through the log.

The ingest node validates the event as the embedded server does, fixes its time
(``at``: when it was received, if the caller gave none, so that every partition
and every replay uses the same), and publishes it once to each partition's
subject with the header ``Momently-World`` and ``Nats-Msg-Id`` =
``world:<id>:<partition>``. Each partition's worker applies it in stream order
with that partition's events (:meth:`~momently.distributed.shard.Shard.apply`):
its moment stage finds the recipients among its customers, decides for them
and commits; the world event's id makes a repeat, or a replay after a
takeover, a no-op.

The answer is ``202`` with the partitions it was published to, not the number
of recipients the embedded mode returns: those are counted by the workers,
after the answer (their moments are in ``GET /api/moments?kind=world``).
"""

from __future__ import annotations

from typing import Any, Final

import msgspec
import nats.errors
from fastapi import APIRouter, Depends
from fastapi.responses import Response
from nats.js.api import Header

from momently.clock import Clock
from momently.distributed.log import EventLog
from momently.distributed.partition import subject
from momently.errors import InvalidInput, Unavailable
from momently.ingest.http import json_response
from momently.moments.playbook import Playbook
from momently.moments.world import WorldEvent
from momently.web.admin import admin_guard
from momently.web.auth import AdminAuth

HEADER: Final = "Momently-World"


def is_world(headers: dict[str, str] | None) -> bool:
    """Whether a stream message is a world event (else it is a customer's event)."""
    return headers is not None and HEADER in headers


def decode_world(data: bytes) -> WorldEvent:
    """The world event a message carries; raises ``ValueError`` if it is not one."""
    return WorldEvent.model_validate_json(data)


async def publish_world(log: EventLog, event: WorldEvent) -> bool:
    """Publish to every partition and wait for the acks; True if all were repeats."""
    data = event.model_dump_json().encode()
    stream = log.settings.stream
    try:
        acks = [
            await log.js.publish(
                subject(stream, p),
                data,
                stream=stream,
                headers={Header.MSG_ID.value: f"world:{event.id}:{p}", HEADER: "1"},
            )
            for p in range(log.settings.partitions)
        ]
    except (nats.errors.Error, TimeoutError) as error:
        raise Unavailable(retry_after=1) from error  # a resend is deduped
    return all(ack.duplicate for ack in acks)


def world_router(log: Any, playbook: Playbook, clock: Clock, admin_key: AdminAuth) -> APIRouter:
    """``POST /api/world-events`` on an ingest node; ``log()`` is its :class:`EventLog`."""
    router = APIRouter(tags=["moments"], dependencies=[Depends(admin_guard(admin_key))])
    places = {p.id for p in playbook.places}

    @router.post("/api/world-events", status_code=202)
    async def world_event(event: WorldEvent) -> Response:
        """Fan a business event out to every partition's customers (once per event id)."""
        if not playbook.detectors.world.enabled:
            raise InvalidInput("world events are switched off in the playbook", "detectors.world")
        if event.near is not None and event.near.place is not None:
            if event.near.place not in places:
                raise InvalidInput(f"no place {event.near.place!r} in the playbook", "near.place")
        found: EventLog | None = log()
        if found is None:
            raise Unavailable(retry_after=1)
        if event.at is None:
            event = event.model_copy(update={"at": clock.now_ms()})
        duplicate = await publish_world(found, event)
        body = {"id": event.id, "partitions": found.settings.partitions, "duplicate": duplicate}
        return json_response(msgspec.to_builtins(body), 202)

    return router
