"""HTTP routes for tracking links: click redirects, open pixels, one-click unsubscribe.

Each valid hit calls ``emit`` with a Segment-shaped ``track`` event, which the
caller sends down the normal ingestion path. Its ``messageId`` is derived from
the token, so a link clicked twice, or fetched again by a mail scanner, counts
once. The customer is named in ``context.momently.customerId``; ``identity``
(customer id -> ``{"userId": …}`` or ``{"anonymousId": …}``) adds the ids the
ingestion path resolves. Opens are inflated by mail clients that prefetch images.

* ``GET {prefix}/c/{token}`` — ``Message Clicked``, then 302 to the signed URL
  (an expired but genuine link still redirects, without an event);
* ``GET {prefix}/o/{token}.gif`` — ``Email Opened``, a 1x1 GIF (always, so a mail
  never shows a broken image);
* ``GET {prefix}/u/{token}`` — a page with one button that POSTs; link scanners
  follow GETs, so a GET never unsubscribes;
* ``POST {prefix}/u/{token}`` — ``Unsubscribed`` (RFC 8058 one-click: the body is
  ``List-Unsubscribe=One-Click``). Expired tokens are honoured. If ``emit``
  fails the answer is 503, so the client retries and no opt-out is lost.
"""

from __future__ import annotations

import hashlib
import html
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Final

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from momently.clock import Clock
from momently.deliver.errors import TokenError
from momently.deliver.tracking import Claims, TokenKind, TokenSigner
from momently.errors import error_body

log = logging.getLogger(__name__)
Emit = Callable[[dict[str, Any]], None]
Identity = Callable[[str], Mapping[str, str]]
PIXEL: Final = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)
EVENTS: Final[dict[TokenKind, str]] = {
    "click": "Message Clicked",  # any channel's link; properties.channel says which
    "open": "Email Opened",
    "unsubscribe": "Unsubscribed",
}
NO_STORE: Final = {"cache-control": "no-store, private"}


def track_event(
    claims: Claims, token: str, now_ms: int, identity: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The Segment ``track`` event for one tracking hit."""
    digest = hashlib.blake2b(f"{claims.kind}\x00{token}".encode(), digest_size=16).hexdigest()
    properties: dict[str, Any] = {"decision_id": claims.decision_id, "channel": claims.channel}
    if claims.url is not None:
        properties["url"] = claims.url
    when = datetime.fromtimestamp(now_ms / 1000, UTC).isoformat().replace("+00:00", "Z")
    event: dict[str, Any] = {
        "type": "track",
        "event": EVENTS[claims.kind],
        "messageId": f"trk-{digest}",
        "timestamp": when,
        "properties": properties,
        "context": {"momently": {"customerId": claims.customer_id}},
    }
    event.update(identity or {})
    return event


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    text = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"</head><body style='font-family:sans-serif;max-width:480px;margin:4em auto'>{body}"
        "</body></html>"
    )
    return HTMLResponse(text, status_code=status, headers=NO_STORE)


def tracking_router(
    signer: TokenSigner,
    emit: Emit,
    clock: Clock,
    *,
    identity: Identity | None = None,
    prefix: str = "/t",
) -> APIRouter:
    """Routes for click, open and unsubscribe links built by :class:`TrackingLinks`."""
    router = APIRouter(prefix=prefix, tags=["tracking"], include_in_schema=False)

    def send(claims: Claims, token: str) -> None:
        ids = identity(claims.customer_id) if identity is not None else None
        emit(track_event(claims, token, clock.now_ms(), ids))

    def refused(exc: TokenError) -> JSONResponse:
        return JSONResponse(exc.to_json(), status_code=exc.status, headers=NO_STORE)

    @router.get("/c/{token}")
    def click(token: str) -> Response:
        try:
            claims = signer.verify(token, kind="click", allow_expired=True)
        except TokenError as exc:
            return refused(exc)
        if clock.now_ms() < claims.expires_ms:
            try:
                send(claims, token)
            except Exception:  # the customer's click goes through regardless
                log.exception("could not record a click for decision %s", claims.decision_id)
        assert claims.url is not None  # signed click tokens always carry one
        return RedirectResponse(claims.url, status_code=302, headers=NO_STORE)

    @router.get("/o/{token}.gif")
    def pixel(token: str) -> Response:
        try:  # a pixel always answers with the image, so a mail never shows a broken one
            claims = signer.verify(token, kind="open")
        except TokenError:
            return Response(PIXEL, media_type="image/gif", headers=NO_STORE)
        try:
            send(claims, token)
        except Exception:
            log.exception("could not record an open for decision %s", claims.decision_id)
        return Response(PIXEL, media_type="image/gif", headers=NO_STORE)

    @router.get("/u/{token}")
    def confirm(token: str) -> Response:
        try:
            signer.verify(token, kind="unsubscribe", allow_expired=True)
        except TokenError as exc:
            return refused(exc)
        return _page(
            "Unsubscribe",
            "<h1>Unsubscribe</h1><p>Stop receiving these messages?</p>"
            "<form method='post'><button type='submit'>Unsubscribe</button></form>",
        )

    @router.post("/u/{token}")
    def unsubscribe(token: str) -> Response:
        try:
            claims = signer.verify(token, kind="unsubscribe", allow_expired=True)
        except TokenError as exc:
            return refused(exc)
        try:
            send(claims, token)
        except Exception:
            log.exception("could not record an unsubscribe for decision %s", claims.decision_id)
            body = error_body("Unavailable", "could not record the unsubscribe; try again")
            return JSONResponse(body, status_code=503, headers={"retry-after": "5", **NO_STORE})
        return _page("Unsubscribed", "<h1>You are unsubscribed</h1>")

    return router
