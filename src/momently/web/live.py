"""The dashboard's live feed: moments, decisions and ingest rates as Server-Sent Events.

:class:`LiveFeed` is a broadcast hub. ``publish(kind, payload)`` may be called
from any thread (the moment stage publishes moments and decisions, the ingest
writer its rates); every open stream gets every event. Each subscriber has a
bounded queue: a client too slow to keep up loses the *oldest* events, not the
newest, and is told how many with a ``dropped`` event, so a dashboard never
shows a silently incomplete feed. The hub keeps the last few events so a
stream that reconnects (``Last-Event-ID``, or ``?after=``) gets what it missed.
``close()`` ends every stream, so the server can stop: uvicorn waits for every
response in flight before it runs the app's shutdown, and an event stream never
finishes by itself, so the feed must be closed when the server *begins* to stop
(:class:`StreamClosingServer`), not in the lifespan's shutdown.

Authentication: the browser's ``EventSource`` cannot send an ``Authorization``
header, so ``POST /api/live/token`` (with the admin key as a Bearer token, like
the rest of the admin API) mints a short-lived token for ``GET /api/live?token=``.
The admin key itself never goes into a URL, where access logs, proxies and
browser history would keep it; a token that leaks opens only this read-only
stream, and only for ``token_ttl_s`` (60 s by default; an open stream is not
cut when it runs out). Tokens are HMACs under a key derived from the admin key,
so every process that knows the admin key accepts them, and changing the admin
key voids them all. Clients that can send headers (curl, scripts) may open the
stream with ``Authorization: Bearer <admin key>`` instead.

>>> feed = LiveFeed()
>>> feed.publish("moment", {"momentId": "mo-1"})  # nobody listens yet
0
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import logging
import re
import secrets
import socket
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import msgspec
import uvicorn
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel

from momently.clock import Clock, SystemClock
from momently.errors import Unauthorized, error_body
from momently.web.auth import Access, AdminAuth, as_access, bearer_token

if TYPE_CHECKING:
    from momently.moments.model import Moment
    from momently.runtime.stage import Decided

log = logging.getLogger(__name__)

_KIND: Final = re.compile(r"[a-z][a-z0-9_.-]{0,39}")
_TEXT_MAX: Final = 200  # longest string a compact payload carries
_DECISION_FIELDS: Final = (
    "decisionId", "customerId", "momentId", "momentName", "momentKind", "atMs", "action",
    "offer", "channel", "device", "sendAtMs", "expiresMs", "probability", "score", "holdout",
    "status", "reasons", "bound",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class LiveEvent:
    """One published event; ``id`` is ``<feed epoch>.<sequence>``, unique across restarts."""

    id: str
    seq: int
    kind: str
    data: str  # compact JSON, one line

    def sse(self) -> bytes:
        return f"id: {self.id}\nevent: {self.kind}\ndata: {self.data}\n\n".encode()


@dataclass(frozen=True, slots=True)
class Batch:
    """What a subscriber takes in one go: events, and how many were dropped before them."""

    events: list[LiveEvent]
    dropped: int
    closed: bool


class Subscription:
    """One stream's bounded queue; filled by :meth:`LiveFeed.publish` from any thread."""

    def __init__(self, feed: LiveFeed, loop: asyncio.AbstractEventLoop, max_queue: int) -> None:
        self._feed = feed
        self._loop = loop
        self._max = max_queue
        self._items: deque[LiveEvent] = deque()
        self._wake = asyncio.Event()
        self._signalled = False
        self._unreported = 0
        self.dropped = 0  # every event this subscriber lost, since it subscribed
        self.closed = False

    # offer, miss and mark are called by the feed with its lock held; offer and mark
    # answer whether the subscriber's loop must be woken (once per batch, not per event).
    def offer(self, event: LiveEvent) -> bool:
        self._items.append(event)
        if len(self._items) > self._max:
            self._items.popleft()
            self.dropped += 1
            self._unreported += 1
        return self.mark()

    def miss(self, count: int) -> None:
        self.dropped += count
        self._unreported += count
        self.mark()

    def mark(self) -> bool:
        if self._signalled:
            return False
        self._signalled = True
        return True

    def notify(self) -> None:
        """Wake the subscriber's loop; called without the feed's lock."""
        try:
            self._loop.call_soon_threadsafe(self._wake.set)
        except RuntimeError:  # the stream's loop has closed: nobody is waiting any more
            pass

    async def next(self, timeout_s: float | None) -> Batch:
        """The events queued since the last call, waiting up to ``timeout_s`` for one.

        An empty batch that is not ``closed`` means the wait timed out: time for a
        heartbeat.
        """
        if not self._pending():
            try:
                await asyncio.wait_for(self._wake.wait(), timeout_s)
            except TimeoutError:
                pass
        # Cleared before draining: a publish after the drain wakes us again, since its
        # wake-up is a callback that can only run after this coroutine yields.
        self._wake.clear()
        with self._feed.lock:
            self._signalled = False
            events = list(self._items)
            self._items.clear()
            dropped, self._unreported = self._unreported, 0
            return Batch(events, dropped, self.closed)

    def _pending(self) -> bool:
        with self._feed.lock:
            return bool(self._items) or self._unreported > 0 or self.closed

    def close(self) -> None:
        """Stop receiving; the feed forgets this subscriber."""
        self._feed.unsubscribe(self)


class LiveFeed:
    """A thread-safe broadcast hub of live events for the dashboard's streams."""

    def __init__(
        self,
        *,
        max_queue: int = 1_000,
        replay: int = 256,
        rate_interval_s: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_queue < 1 or replay < 0:
            raise ValueError("max_queue must be at least 1 and replay at least 0")
        self.max_queue = max_queue
        self.lock = threading.Lock()
        self.epoch = secrets.token_hex(4)  # ids from another run of the server never match
        self._seq = 0
        self._recent: deque[LiveEvent] = deque(maxlen=replay)
        self._subscribers: list[Subscription] = []
        self._closed = False
        self.published = 0
        self._monotonic = monotonic
        self._rate_interval = rate_interval_s
        self._rate_lock = threading.Lock()
        self._rate_started = monotonic()
        self._rate_events = 0
        self._rate_commits = 0
        self._rate_seconds = 0.0
        self._rate_max = 0.0

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def subscribers(self) -> int:
        with self.lock:
            return len(self._subscribers)

    def publish(self, kind: str, payload: Mapping[str, Any]) -> int:
        """Send an event to every open stream; returns how many streams got it.

        ``kind`` is the SSE event name (lower case, digits, ``_ . -``). Values JSON
        cannot hold are sent as their ``str()``. After :meth:`close` nothing is sent.
        """
        if not _KIND.fullmatch(kind):
            raise ValueError(f"not an event kind: {kind!r}")
        data = json.dumps(payload, separators=(",", ":"), ensure_ascii=False, default=str)
        woken: list[Subscription] = []
        with self.lock:
            if self._closed:
                return 0
            self._seq += 1
            event = LiveEvent(f"{self.epoch}.{self._seq}", self._seq, kind, data)
            self._recent.append(event)
            self.published += 1
            for sub in self._subscribers:
                if sub.offer(event):
                    woken.append(sub)
            reached = len(self._subscribers)
        for sub in woken:
            sub.notify()
        return reached

    def subscribe(self, after: str | None = None) -> Subscription:
        """A new subscriber, on the running event loop.

        With ``after`` (the id of the last event a client saw), the events since then
        that the hub still holds are queued first; those it no longer holds are
        counted as dropped. An id from another run of the server is ignored.
        """
        sub = Subscription(self, asyncio.get_running_loop(), self.max_queue)
        last = self._seq_of(after)
        with self.lock:
            if self._closed:
                sub.closed = True
                sub.mark()
                return sub
            if last is not None and last < self._seq:
                missed = [e for e in self._recent if e.seq > last]
                lost = self._seq - last - len(missed)
                if lost > 0:
                    sub.miss(lost)
                for event in missed:
                    sub.offer(event)
            self._subscribers.append(sub)
        return sub

    def _seq_of(self, event_id: str | None) -> int | None:
        if not event_id:
            return None
        epoch, _, seq = event_id.partition(".")
        if epoch != self.epoch or not seq.isdigit() or len(seq) > 18:
            return None
        return int(seq)

    def unsubscribe(self, sub: Subscription) -> None:
        with self.lock:
            if sub in self._subscribers:
                self._subscribers.remove(sub)

    def close(self) -> None:
        """End every open stream (at shutdown) and refuse new events and streams."""
        with self.lock:
            self._closed = True
            subs, self._subscribers = self._subscribers, []
            woken = []
            for sub in subs:
                sub.closed = True
                if sub.mark():
                    woken.append(sub)
        for sub in woken:
            sub.notify()

    # -- adapters: the engine's callbacks -----------------------------------------------

    def on_moments(self, moments: list[Moment]) -> None:
        """Publish each new moment (the stage's ``on_moments``); never raises."""
        try:
            for moment in moments:
                self.publish("moment", compact_moment(moment))
        except Exception:
            # The stage has committed already: a failure here must not make it retry.
            log.exception("live feed: could not publish moments")

    def on_decisions(self, decided: Decided) -> None:
        """Publish each decision and each cancelled send (the stage's ``on_decisions``)."""
        try:
            for decision in decided.decisions:
                self.publish("decision", compact_decision(msgspec.to_builtins(decision)))
            for decision_id, why in decided.cancelled.items():
                self.publish("cancelled", {"decisionId": decision_id, "reason": _cut(why)})
        except Exception:
            log.exception("live feed: could not publish decisions")

    def on_commit(self, size: int, seconds: float) -> None:
        """Count one group commit of ``size`` events (the writer's ``on_commit``) and
        publish a ``rate`` event at most once per ``rate_interval_s``."""
        try:
            with self._rate_lock:
                self._rate_events += size
                self._rate_commits += 1
                self._rate_seconds += seconds
                self._rate_max = max(self._rate_max, seconds)
                now = self._monotonic()
                span = now - self._rate_started
                if span < self._rate_interval:
                    return
                rate = {
                    "events": self._rate_events,
                    "commits": self._rate_commits,
                    "seconds": round(span, 3),
                    "perSecond": round(self._rate_events / span, 1),
                    "commitMsMean": round(1000 * self._rate_seconds / self._rate_commits, 3),
                    "commitMsMax": round(1000 * self._rate_max, 3),
                }
                self._rate_started = now
                self._rate_events = self._rate_commits = 0
                self._rate_seconds = self._rate_max = 0.0
            self.publish("rate", rate)
        except Exception:
            log.exception("live feed: could not publish the ingest rate")


def _cut(value: Any) -> Any:
    """Strings shortened, containers walked: a compact payload stays small."""
    if isinstance(value, str):
        return value if len(value) <= _TEXT_MAX else value[: _TEXT_MAX - 1] + "…"
    if isinstance(value, dict):
        return {str(k): _cut(v) for k, v in list(value.items())[:20]}
    if isinstance(value, list | tuple):
        return [_cut(v) for v in list(value)[:20]]
    return value


def compact_moment(moment: Moment) -> dict[str, Any]:
    """A moment as ``GET /api/moments`` shows it, with long strings and lists cut."""
    body: dict[str, Any] = msgspec.to_builtins(moment)
    context = body.get("context") or {}
    device = context.get("device")
    if isinstance(device, dict):  # the model, OS and so on stay on the full record
        context = {**context, "device": {k: device[k] for k in ("id", "type") if k in device}}
    body["context"] = context
    result: dict[str, Any] = _cut(body)
    return result


def compact_decision(decision: Mapping[str, Any]) -> dict[str, Any]:
    """A decision without its candidates and features (``GET /api/decisions/{id}`` has them)."""
    return {k: _cut(decision[k]) for k in _DECISION_FIELDS if k in decision}


# -- stream tokens ------------------------------------------------------------------------


class TokenMint:
    """Short-lived tokens that open the live stream, signed under the admin key."""

    def __init__(self, admin_key: str, clock: Clock, ttl_s: float = 60.0) -> None:
        if ttl_s <= 0:
            raise ValueError("ttl_s must be positive")
        self._key = hmac.new(admin_key.encode(), b"momently live stream v1", "sha256").digest()
        self._clock = clock
        self.ttl_ms = int(ttl_s * 1000)

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()[:18]

    def mint(self) -> tuple[str, int]:
        """A new token and when it runs out (ms since the epoch)."""
        expires = self._clock.now_ms() + self.ttl_ms
        payload = f"{expires}.{secrets.token_hex(6)}".encode()
        token = f"{_b64(payload)}.{_b64(self._mac(payload))}"
        return token, expires

    def check(self, token: str) -> None:
        """Raise :class:`Unauthorized` unless ``token`` is one of ours and still valid."""
        head, sep, mac = token.partition(".")
        try:
            payload = _unb64(head)
            given = _unb64(mac)
        except (binascii.Error, ValueError):
            raise Unauthorized("not a live-stream token", "token") from None
        if not sep or not hmac.compare_digest(given, self._mac(payload)):
            raise Unauthorized("not a live-stream token", "token")
        expires = payload.partition(b".")[0]
        if not expires.isdigit() or int(expires) <= self._clock.now_ms():
            raise Unauthorized("the live-stream token has run out: ask for a new one", "token")


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    if not text.isascii():
        raise ValueError("not base64")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class LiveToken(BaseModel):
    """A token that opens the live stream; ``stream`` is the URL to give ``EventSource``."""

    token: str
    expiresAt: int  # noqa: N815 - the wire format is camelCase
    stream: str


def _is_admin(request: Request, access: Access) -> bool:
    """Whether the request carries an admin key with the read scope (a key without
    it is a 403, one over its rate limit a 429: those propagate)."""
    try:
        access.admin(bearer_token(request), "read")
    except Unauthorized:
        return False
    return True


def _refuse(error: Unauthorized) -> JSONResponse:
    return JSONResponse(
        error_body("Unauthorized", error.reason, error.field),
        status_code=401,
        headers={"www-authenticate": "Bearer"},
    )


_OFF: Final = "the admin API is off: start the server with an admin key"
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "missing or wrong admin key, or a token that is bad or has run out"},
}


def live_router(
    feed: LiveFeed,
    admin_key: AdminAuth,
    *,
    token_ttl_s: float = 60.0,
    heartbeat_s: float = 15.0,
    clock: Clock | None = None,
) -> APIRouter:
    """``POST /api/live/token`` and ``GET /api/live`` (Server-Sent Events).

    Events: ``moment`` and ``decision`` (as the admin API shows them, decisions
    without candidates and features), ``cancelled`` (``decisionId``, ``reason``),
    ``rate`` (ingest events per second and commit times), and ``dropped``
    (``dropped``: events this stream lost since the last report, ``total``).
    A comment line every ``heartbeat_s`` keeps idle connections open.
    """
    access = as_access(admin_key)
    mint = (
        TokenMint(access.stream_secret, clock or SystemClock(), token_ttl_s)
        if access.enabled
        else None
    )
    router = APIRouter(tags=["live"], responses=_ERRORS)

    def refusal(request: Request, token: str | None) -> JSONResponse | None:
        if mint is None:
            return _refuse(Unauthorized(_OFF))
        if token is None:
            if _is_admin(request, access):
                return None
            return _refuse(Unauthorized("missing admin key or stream token", "token"))
        try:
            mint.check(token)
        except Unauthorized as error:
            return _refuse(error)
        return None

    @router.post("/api/live/token", response_model=LiveToken)
    def live_token(request: Request) -> Any:
        """A token for ``GET /api/live``, valid for a minute (``Authorization: Bearer``)."""
        if mint is None:
            return _refuse(Unauthorized(_OFF))
        if not _is_admin(request, access):
            return _refuse(Unauthorized("missing or wrong admin key", "Authorization"))
        token, expires = mint.mint()
        return JSONResponse(
            {"token": token, "expiresAt": expires, "stream": f"/api/live?token={token}"},
            headers={"cache-control": "no-store"},
        )

    @router.get("/api/live", response_model=None)
    async def live(
        request: Request,
        token: str | None = Query(None, max_length=200, description="from POST /api/live/token"),
        after: str | None = Query(None, max_length=40, description="the last event id seen"),
    ) -> Response:
        """Moments, decisions and rates as they happen, as Server-Sent Events."""
        refused = refusal(request, token)
        if refused is not None:
            return refused
        resume = request.headers.get("last-event-id") or after
        sub = feed.subscribe(resume)
        return StreamingResponse(
            _stream(sub, heartbeat_s),
            media_type="text/event-stream",
            headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
        )

    return router


async def _stream(sub: Subscription, heartbeat_s: float) -> AsyncIterator[bytes]:
    try:
        yield b"retry: 3000\n: connected\n\n"
        while True:
            batch = await sub.next(heartbeat_s)
            chunk = _encode(batch.events, batch.dropped, sub.dropped)
            if chunk:
                yield chunk
            elif not batch.closed:
                yield b": ping\n\n"
            if batch.closed:
                return
    finally:
        sub.close()


def _encode(events: Iterable[LiveEvent], dropped: int, total: int) -> bytes:
    parts = []
    if dropped:
        body = json.dumps({"dropped": dropped, "total": total}, separators=(",", ":"))
        parts.append(f"event: dropped\ndata: {body}\n\n".encode())
    parts.extend(event.sse() for event in events)
    return b"".join(parts)


class StreamClosingServer(uvicorn.Server):
    """A uvicorn server that ends open streams as soon as it starts to stop.

    uvicorn's shutdown waits for the responses in flight (for ever, unless a
    graceful-shutdown timeout is set) before the app's lifespan shutdown runs, and
    a dashboard's event stream never ends by itself: ``closing`` (``LiveFeed.close``,
    the in-app hub's ``close``) runs first, on the server's loop, so SIGTERM or
    Ctrl-C stops the server with a dashboard open.
    """

    def __init__(self, config: uvicorn.Config, closing: Sequence[Callable[[], None]]) -> None:
        super().__init__(config)
        self.closing = list(closing)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for close in self.closing:
            try:
                close()
            except Exception:
                log.exception("could not end open streams at shutdown")
        await super().shutdown(sockets)
