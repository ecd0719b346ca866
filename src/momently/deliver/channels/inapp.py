"""In-app messages: a live stream per customer device, served as Server-Sent Events.

:class:`InAppHub` keeps, per (customer, device), the recent messages (for
``keep_ms``, at most ``max_per_device``) and the open streams. A send puts the
message in that mailbox and on every open stream; a stream that opens (or
reconnects with ``Last-Event-ID``) first gets what it has not seen. The SSE
``id`` is the send's idempotency key, and the snippet shows a key once, so a
resend or a replay never shows a message twice. The mailbox is in memory: a
restart drops in-app messages not yet shown, which suits messages about a
fleeting moment.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from momently.clock import Clock
from momently.deliver.errors import PermanentSendError
from momently.deliver.message import OutboundMessage, SendResult

Address = tuple[str, str]  # (customer id, device id)


@dataclass(frozen=True)
class InAppEvent:
    key: str
    at_ms: int
    data: str  # one line of JSON

    def sse(self) -> bytes:
        return f"id: {self.key}\nevent: message\ndata: {self.data}\n\n".encode()


@dataclass
class _Stream:
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[InAppEvent | None] = field(default_factory=asyncio.Queue)


def event_data(message: OutboundMessage) -> str:
    body = {
        "key": message.key,
        "decision_id": message.decision_id,
        "title": message.title or message.subject,
        "body": message.text,
        "url": message.url,
        "data": message.data,
    }
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


class InAppHub:
    """Mailboxes and live streams per device; thread-safe (sends come from worker threads)."""

    def __init__(self, clock: Clock, *, keep_ms: int = 3_600_000, max_per_device: int = 50) -> None:
        self._clock = clock
        self.keep_ms = keep_ms
        self.max_per_device = max_per_device
        self._boxes: dict[Address, deque[InAppEvent]] = {}
        self._streams: dict[Address, list[_Stream]] = {}
        self._lock = threading.Lock()
        self._closed = False

    def _trim(self, box: deque[InAppEvent], now_ms: int) -> None:
        while box and (len(box) > self.max_per_device or box[0].at_ms <= now_ms - self.keep_ms):
            box.popleft()

    def publish(self, address: Address, event: InAppEvent) -> int:
        """Queue ``event`` for the device and push it to its open streams; return how many."""
        with self._lock:
            box = self._boxes.setdefault(address, deque())
            if any(old.key == event.key for old in box):
                return 0  # the same send again: already there
            box.append(event)
            self._trim(box, event.at_ms)
            streams = list(self._streams.get(address, ()))
        for stream in streams:
            try:
                stream.loop.call_soon_threadsafe(stream.queue.put_nowait, event)
            except RuntimeError:  # that stream's loop has closed
                pass
        return len(streams)

    def listeners(self, address: Address) -> int:
        with self._lock:
            return len(self._streams.get(address, ()))

    async def stream(
        self, address: Address, last_id: str | None = None, *, idle_s: float | None = None
    ) -> AsyncIterator[InAppEvent | None]:
        """The device's events: the backlog after ``last_id``, then live ones, until close().

        With ``idle_s``, None is yielded after that long without an event (a heartbeat).
        """
        stream = _Stream(asyncio.get_running_loop())
        with self._lock:
            box = self._boxes.get(address, deque())
            self._trim(box, self._clock.now_ms())
            backlog = list(box)
            keys = [e.key for e in backlog]
            if last_id in keys:
                backlog = backlog[keys.index(last_id) + 1 :]
            closed = self._closed
            self._streams.setdefault(address, []).append(stream)
        try:
            for event in backlog:
                yield event
            while not closed:
                try:
                    item = await asyncio.wait_for(stream.queue.get(), idle_s)
                except TimeoutError:
                    yield None
                    continue
                if item is None:
                    return
                yield item
        finally:
            with self._lock:
                streams = self._streams.get(address, [])
                if stream in streams:
                    streams.remove(stream)
                if not streams:
                    self._streams.pop(address, None)

    def close(self) -> None:
        """End every open stream (at shutdown, so the server can stop)."""
        with self._lock:
            self._closed = True
            streams = [s for group in self._streams.values() for s in group]
        for stream in streams:
            try:
                stream.loop.call_soon_threadsafe(stream.queue.put_nowait, None)
            except RuntimeError:
                pass


class InAppChannel:
    """The outbox side of the hub: a send is queued for the device (``to``)."""

    dedupes = True

    def __init__(self, hub: InAppHub, clock: Clock, *, name: str = "inapp") -> None:
        self.hub = hub
        self.name = name
        self._clock = clock

    def send(self, message: OutboundMessage) -> SendResult:
        if not message.to:
            raise PermanentSendError("in-app message without a device")
        event = InAppEvent(key=message.key, at_ms=self._clock.now_ms(), data=event_data(message))
        live = self.hub.publish((message.customer_id, message.to), event)
        return SendResult(
            provider=self.name, message_id=message.key, detail="live" if live else "queued"
        )

    def close(self) -> None:
        pass
