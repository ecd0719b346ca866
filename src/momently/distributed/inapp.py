"""In-app messages in distributed mode: a worker sends, the ingest nodes stream them.

A device opens its in-app stream (``GET /api/inapp/stream``) on an ingest node,
but the send happens in a worker's outbox sender. The worker's
:class:`InAppRelay` is the hub its in-app channel sends to; it publishes each
message on the core NATS subject ``<stream>.inapp``, and every ingest node
(:func:`relay_inapp`) puts it in its own :class:`InAppHub` — the device's
mailbox there and its open streams — as the embedded server's hub does. Every
ingest node gets every message, so a device may reconnect to any of them and
find what it has not seen (the mailbox keeps an hour, 50 a device); the SSE id
is the send's key, so a message is never shown twice. Core NATS: a node that is
down while a message goes out does not get it (the mailbox is in memory in the
embedded mode too).
"""

from __future__ import annotations

import asyncio
import json
import logging

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from momently.clock import Clock
from momently.deliver.channels.inapp import Address, InAppEvent, InAppHub
from momently.deliver.errors import RetryableSendError

log = logging.getLogger(__name__)


def inapp_subject(stream: str) -> str:
    """The core NATS subject of a stream's in-app messages.

    >>> inapp_subject("MOMENTLY")
    'momently.inapp'
    """
    return f"{stream.lower()}.inapp"


class InAppRelay(InAppHub):
    """A worker's in-app hub: each message goes to the ingest nodes over NATS.

    Sends come from the sender's thread; they are published on the worker's loop
    once :meth:`attach` has given it the connection. Before then the send fails
    (the outbox retries it), so no message is lost to a worker still starting.
    """

    def __init__(self, stream: str, clock: Clock) -> None:
        super().__init__(clock)
        self.subject = inapp_subject(stream)
        self._client: Client | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def attach(self, client: Client) -> None:
        """On the worker's loop, once connected."""
        self._client, self._loop = client, asyncio.get_running_loop()

    def publish(self, address: Address, event: InAppEvent) -> int:
        client, loop = self._client, self._loop
        if client is None or loop is None or loop.is_closed():
            raise RetryableSendError("the worker is not connected to NATS yet")
        customer, device = address
        data = json.dumps(
            {
                "customer": customer,
                "device": device,
                "key": event.key,
                "at": event.at_ms,
                "data": event.data,
            }  # fmt: skip
        ).encode()
        # Flushed before the send counts as done: the message has left this process.
        try:
            asyncio.run_coroutine_threadsafe(self._send(client, data), loop).result(10)
        except (nats.errors.Error, TimeoutError) as error:
            raise RetryableSendError(f"NATS: {error}", maybe_sent=True) from error
        return 0  # who is listening is the ingest nodes' to know

    async def _send(self, client: Client, data: bytes) -> None:
        await client.publish(self.subject, data)
        await client.flush()


async def relay_inapp(client: Client, stream: str, hub: InAppHub) -> Subscription:
    """Subscribe an ingest node's hub to the workers' in-app messages."""

    async def received(msg: Msg) -> None:
        try:
            record = json.loads(msg.data)
            address = (str(record["customer"]), str(record["device"]))
            event = InAppEvent(key=str(record["key"]), at_ms=int(record["at"]),
                               data=str(record["data"]))  # fmt: skip
        except (ValueError, KeyError, TypeError) as error:  # not ours: never a crash
            log.warning("dropped an in-app record that is not one: %s", error)
            return
        hub.publish(address, event)

    return await client.subscribe(inapp_subject(stream), cb=received)
