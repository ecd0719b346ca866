"""HTTP routes for in-app messages: the SSE stream and the snippet that shows them.

``GET {prefix}/stream?customer=…&device=…&token=…`` streams a device's messages
as Server-Sent Events; ``GET {prefix}/inapp.js`` serves the snippet. With a
signer, ``token`` must be an ``inapp`` token for that customer and device
(:func:`inapp_token`: the brand's page gets one from its own server), so
nobody can read another customer's stream by guessing ids.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from importlib import resources
from typing import Final

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from momently.deliver.channels.inapp import InAppHub
from momently.deliver.errors import TokenError
from momently.deliver.tracking import TokenSigner

SNIPPET: Final = resources.files("momently.deliver").joinpath("static/inapp.js")


def inapp_token(signer: TokenSigner, customer_id: str, device: str, ttl_ms: int) -> str:
    """A token that lets one device of one customer open its stream."""
    return signer.sign(
        kind="inapp", decision_id="-", customer_id=customer_id, channel=f"in_app:{device}",
        ttl_ms=ttl_ms,
    )  # fmt: skip


def inapp_router(
    hub: InAppHub,
    signer: TokenSigner | None,
    *,
    prefix: str = "/api/inapp",
    heartbeat_s: float = 15.0,
) -> APIRouter:
    """Routes for the in-app stream and snippet; ``signer=None`` leaves streams open to all."""
    router = APIRouter(prefix=prefix, tags=["in-app"])

    @router.get("/stream", response_model=None)
    async def stream(
        request: Request,
        customer: str = Query(min_length=1, max_length=200),
        device: str = Query(min_length=1, max_length=200),
        token: str | None = Query(None, max_length=4096),
    ) -> Response:
        if signer is not None:
            try:
                claims = signer.verify(token or "", kind="inapp")
                if (claims.customer_id, claims.channel) != (customer, f"in_app:{device}"):
                    raise TokenError("token is for another customer or device")
            except TokenError as exc:
                return JSONResponse(exc.to_json(), status_code=exc.status)
        last_id = request.headers.get("last-event-id")
        return StreamingResponse(
            _events(hub, (customer, device), last_id, heartbeat_s),
            media_type="text/event-stream",
            headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
        )

    @router.get("/inapp.js", include_in_schema=False)
    async def snippet() -> Response:
        return Response(
            SNIPPET.read_bytes(),
            media_type="application/javascript",
            headers={"cache-control": "public, max-age=300"},
        )

    return router


async def _events(
    hub: InAppHub, address: tuple[str, str], last_id: str | None, heartbeat_s: float
) -> AsyncIterator[bytes]:
    yield b"retry: 3000\n: connected\n\n"
    async for event in hub.stream(address, last_id, idle_s=heartbeat_s):
        # None: a heartbeat, which keeps proxies from closing an idle stream
        yield b": ping\n\n" if event is None else event.sse()
