"""The dashboard's live feed in distributed mode: workers publish, ingest nodes relay.

A worker's partitions detect moments and make decisions; the dashboard's
``GET /api/live`` stream is served by an ingest node. Each worker's
:class:`LiveRelay` (the embedded :class:`~momently.web.live.LiveFeed`, whose
``on_moments`` and ``on_decisions`` compact each record as the embedded feed
does) publishes every record to the core NATS subject ``<stream>.live``, and
every ingest node subscribes to it (:func:`relay_to`) and hands what arrives to
its own :class:`LiveFeed`. Core NATS, not JetStream: the feed is a live view
(at most once, as the embedded feed's bounded queues are), nothing is stored,
and the subject is outside the stream's ``<stream>.ev.*``. Records from several
workers interleave in arrival order; one partition's stay in order.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from momently.runtime.stage import Decided
from momently.types import MomentStore, Store
from momently.web.live import LiveFeed

log = logging.getLogger(__name__)

Deliver = Callable[[Store, MomentStore], Callable[[Decided], None]]


def live_subject(stream: str) -> str:
    """The core NATS subject of a stream's live records.

    >>> live_subject("MOMENTLY")
    'momently.live'
    """
    return f"{stream.lower()}.live"


class LiveRelay(LiveFeed):
    """A worker's live feed: each record goes to NATS instead of to local streams.

    Called from the shards' thread; publishes on the worker's loop once
    :meth:`attach` has given it the connection (records before then are dropped,
    as a feed with nobody listening drops them).
    """

    def __init__(self, stream: str) -> None:
        super().__init__(replay=0)
        self.subject = live_subject(stream)
        self._client: Client | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def attach(self, client: Client) -> None:
        """On the worker's loop, once connected."""
        self._client, self._loop = client, asyncio.get_running_loop()

    def publish(self, kind: str, payload: Mapping[str, Any]) -> int:
        client, loop = self._client, self._loop
        if client is None or loop is None or loop.is_closed():
            return 0
        data = json.dumps({"kind": kind, "payload": payload}, default=str).encode()
        asyncio.run_coroutine_threadsafe(client.publish(self.subject, data), loop)
        self.published += 1
        return 1

    def deliver(self, deliver: Deliver | None) -> Deliver:
        """The worker's ``deliver`` hook with each partition's decisions relayed too."""

        def for_partition(store: Store, moments: MomentStore) -> Callable[[Decided], None]:
            submit = deliver(store, moments) if deliver is not None else None

            def on_decisions(decided: Decided) -> None:
                try:
                    if submit is not None:
                        submit(decided)
                finally:
                    self.on_decisions(decided)  # never raises

            return on_decisions

        return for_partition


async def relay_to(client: Client, stream: str, feed: LiveFeed) -> Subscription:
    """Subscribe an ingest node's feed to the workers' live records."""

    async def received(msg: Msg) -> None:
        try:
            record = json.loads(msg.data)
            feed.publish(str(record["kind"]), record["payload"])
        except (ValueError, KeyError, TypeError) as error:  # not ours: never a crash
            log.warning("dropped a live record that is not one: %s", error)

    return await client.subscribe(live_subject(stream), cb=received)
