"""The Segment HTTP Tracking API, so existing Segment and RudderStack clients work as-is.

``POST /v1/{track,identify,page,screen,alias,group}`` take one message,
``/v1/batch`` (also ``/v1/import``) and the mobile clients' ``/v1/b`` take a
batch. A batch is judged message by message: valid messages are stored, bad
ones are listed in the answer with their index, field and reason and counted
(the clients drop a whole batch on a 4xx, so refusing all of it would lose the
good messages). A batch with no valid message at all is a 400.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import msgspec
from fastapi import APIRouter, Request
from fastapi.responses import Response

from momently.clock import Clock
from momently.engine import IngestResult
from momently.errors import InvalidInput, InvalidMessage, Unauthorized, error_body
from momently.events import (
    MAX_BATCH_BYTES,
    MAX_MESSAGE_BYTES,
    Event,
    decode_batch,
    decode_message,
    normalise,
    normalise_batch,
)
from momently.ingest.body import basic_user, check_content_type, decode_body, read_limited
from momently.ingest.parsepool import ParsePool
from momently.metrics import Metrics

# Room on the wire for gzip's worst case on incompressible data.
_WIRE_SLACK = 1024
_encode = msgspec.json.Encoder().encode
BATCH_PATHS = ("/v1/batch", "/v1/import", "/v1/b")
SINGLE_KINDS = ("track", "identify", "page", "screen", "alias", "group")


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        _encode(body), status_code=status, media_type="application/json", headers=headers
    )


def retry_later(name: str, reason: str, status: int, retry_after: int | str) -> Response:
    """A refusal the client should retry (429 or 503): the error body and ``Retry-After``."""
    return json_response(error_body(name, reason), status, {"Retry-After": str(retry_after)})


class WriteKeys:
    """The write keys this server accepts, compared in constant time."""

    def __init__(self, keys: tuple[str, ...]) -> None:
        self._keys = tuple(k.encode() for k in keys)

    def source_of(self, key: str | None) -> str:
        """A short, stable name for the source behind a key; :class:`Unauthorized` if unknown."""
        if key is None:
            raise Unauthorized(
                "no write key: send it as the HTTP Basic user or as writeKey in the body"
            )
        given = key.encode()
        for known in self._keys:
            if hmac.compare_digest(given, known):
                return "wk_" + hashlib.sha256(known).hexdigest()[:12]
        raise Unauthorized("unknown write key")


def _client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


class EventWriter(Protocol):
    """Where the tracking API appends events: the embedded :class:`~momently.runtime.writer.
    Writer`, or distributed mode's JetStream log; returns once they are durable."""

    async def write(self, events: Sequence[Event]) -> IngestResult: ...


class TrackingAPI:
    """Routes of the tracking API around an :class:`EventWriter`."""

    def __init__(
        self, writer: EventWriter, keys: WriteKeys, clock: Clock, metrics: Metrics
    ) -> None:
        self.writer = writer
        self.keys = keys
        self.clock = clock
        self.metrics = metrics
        # Worker processes that parse batches (momently serve sets one up), or None.
        self.parser: ParsePool | None = None

    async def _body(self, request: Request, limit: int) -> bytes:
        check_content_type(request.headers.get("content-type"))
        data = await read_limited(
            request.stream(), limit + _WIRE_SLACK, request.headers.get("content-length")
        )
        return decode_body(data, request.headers.get("content-encoding"), limit)

    async def single(self, request: Request, kind: str) -> Response:
        received_ms = self.clock.now_ms()
        header_key = basic_user(request.headers.get("authorization"))
        # A key in the header is checked (and rate-limited) once, before the body is read.
        source = self.keys.source_of(header_key) if header_key is not None else None
        data = await self._body(request, MAX_MESSAGE_BYTES)
        raw = decode_message(data)
        source = source or self.keys.source_of(raw.write_key)
        event = normalise(
            raw,
            received_ms=received_ms,
            source=source,
            raw_size=len(data),
            type_hint=kind,
            ip=_client_ip(request),
        )
        result = await self.writer.write([event])
        self._count(request, result.accepted, result.duplicates)
        return json_response(
            {"success": True, "accepted": result.accepted, "duplicates": result.duplicates}
        )

    async def batch(self, request: Request) -> Response:
        received_ms = self.clock.now_ms()
        header_key = basic_user(request.headers.get("authorization"))
        source = self.keys.source_of(header_key) if header_key is not None else None
        data = await self._body(request, MAX_BATCH_BYTES)
        parsed: tuple[list[Event], list[tuple[int, InvalidInput]]] | None = None
        if self.parser is not None and source is not None:
            # The same parsing in a worker process, off this process's GIL.
            parsed = await self.parser.parse(data, received_ms, source, _client_ip(request))
        if parsed is None:
            envelope = decode_batch(data)
            source = source or self.keys.source_of(envelope.write_key)
            parsed = normalise_batch(
                envelope, received_ms=received_ms, source=source, ip=_client_ip(request)
            )
        events, errors = parsed
        rejected: list[dict[str, Any]] = []
        for index, error in errors:
            self.metrics.rejected.labels(type(error).__name__).inc()
            entry: dict[str, Any] = {"index": index, "error": type(error).__name__}
            entry["reason"] = error.reason
            if error.field is not None:
                entry["field"] = error.field
            rejected.append(entry)
        if rejected and not events:
            raise _AllRejected(rejected)
        result = await self.writer.write(events)
        self._count(request, result.accepted, result.duplicates)
        return json_response(
            {
                "success": True,
                "accepted": result.accepted,
                "duplicates": result.duplicates,
                "rejected": rejected,
            }
        )

    def _count(self, request: Request, accepted: int, duplicates: int) -> None:
        self.metrics.requests.labels(request.url.path, "200").inc()
        self.metrics.accepted.inc(accepted)
        self.metrics.duplicates.inc(duplicates)

    def settings(self, request: Request, write_key: str) -> Response:
        """What analytics-kotlin and analytics-swift fetch first: point them at this server."""
        self.keys.source_of(write_key)
        host = request.headers.get("host") or "localhost"
        api_host = f"{host}/v1"
        return json_response(
            {
                "integrations": {
                    "Segment.io": {
                        "apiKey": write_key,
                        "apiHost": api_host,
                        "unbundledIntegrations": [],
                        "addBundledMetadata": True,
                        "maybeBundledConfigIds": {},
                        "versionSettings": {"version": "4.4.7", "componentTypes": ["browser"]},
                    }
                },
                "plan": {
                    "track": {"__default": {"enabled": True, "integrations": {}}},
                    "identify": {"__default": {"enabled": True}},
                    "group": {"__default": {"enabled": True}},
                },
                "edgeFunction": {},
                "analyticsNextEnabled": True,
                "middlewareSettings": {},
                "enabledMiddleware": {},
                "metrics": {"sampleRate": 0},
                "legacyVideoPluginsEnabled": False,
                "remotePlugins": [],
            }
        )

    def router(self) -> APIRouter:
        router = APIRouter(tags=["tracking"])
        for kind in SINGLE_KINDS:
            router.add_api_route(
                f"/v1/{kind}",
                self._single_route(kind),
                methods=["POST"],
                summary=f"Segment {kind} call",
                response_class=Response,
            )
        for path in BATCH_PATHS:
            router.add_api_route(
                path,
                self.batch,
                methods=["POST"],
                summary="Segment batch upload",
                response_class=Response,
            )
        router.add_api_route(
            "/v1/projects/{write_key}/settings",
            self.settings,
            methods=["GET"],
            summary="Settings the mobile SDKs fetch at start",
            response_class=Response,
        )
        return router

    def post_endpoints(self) -> dict[str, Callable[[Request], Awaitable[Response]]]:
        """The POST endpoints by path, for :class:`momently.ingest.asgi.FastPostAPI`."""
        endpoints = {f"/v1/{kind}": self._single_route(kind) for kind in SINGLE_KINDS}
        endpoints.update(dict.fromkeys(BATCH_PATHS, self.batch))
        return endpoints

    def _single_route(self, kind: str) -> Any:
        async def endpoint(request: Request) -> Response:
            return await self.single(request, kind)

        endpoint.__name__ = f"segment_{kind}"
        return endpoint


class _AllRejected(InvalidMessage):
    """Every message of a batch was invalid: a 400 that lists them all."""

    def __init__(self, rejected: list[dict[str, Any]]) -> None:
        first = rejected[0]
        super().__init__(
            f"no valid message in the batch ({len(rejected)} rejected)",
            str(first.get("field", f"batch[{first['index']}]")),
        )
        self.rejected = rejected

    def to_json(self) -> dict[str, object]:
        # Clients see the public name from the error hierarchy, not this private class.
        return {**error_body("InvalidMessage", self.reason, self.field), "rejected": self.rejected}
