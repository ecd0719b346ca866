"""Webhooks signed per Standard Webhooks (https://www.standardwebhooks.com/).

Headers: ``webhook-id`` (the send's idempotency key: a receiver dedupes on it),
``webhook-timestamp`` (seconds since the epoch) and ``webhook-signature``:
``v1,`` + base64 HMAC-SHA256, keyed with the base64 part of a ``whsec_`` secret,
over ``"{id}.{timestamp}.{body}"``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import msgspec

from momently.clock import Clock
from momently.deliver.channels.http import response_error, transport_error
from momently.deliver.message import OutboundMessage, SendResult
from momently.deliver.ssrf import Resolver, TargetPolicy, pinned, system_resolver


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret."""
    try:
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except binascii.Error as exc:
        raise ValueError("a webhook secret is 'whsec_' followed by base64") from exc
    if len(key) < 24:
        raise ValueError("a webhook secret needs at least 24 bytes of key")
    return key


def signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value for one delivery."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


@dataclass(frozen=True)
class WebhookSettings:
    """Where to post and how to sign."""

    url: str
    secret: str
    name: str = "webhook"
    timeout_s: float = 10.0
    event_type: str = "momently.message"
    allow_private: bool = False  # private, loopback and link-local targets (see deliver.ssrf)

    def __post_init__(self) -> None:
        secret_key(self.secret)
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"webhook url must be http(s): {self.url!r}")


class WebhookChannel:
    """POSTs each message as JSON ``{type, timestamp, data}``; the receiver dedupes on id."""

    dedupes = True

    def __init__(
        self,
        settings: WebhookSettings,
        clock: Clock,
        *,
        transport: httpx.BaseTransport | None = None,
        resolver: Resolver = system_resolver,
    ) -> None:
        self.settings = settings
        self.name = settings.name
        self._clock = clock
        self._policy = TargetPolicy(settings.allow_private, resolver)
        self._client = httpx.Client(
            timeout=settings.timeout_s, transport=transport, follow_redirects=False
        )

    def payload(self, message: OutboundMessage, now_ms: int) -> bytes:
        data: dict[str, Any] = msgspec.to_builtins(message)
        when = datetime.fromtimestamp(now_ms / 1000, UTC).isoformat().replace("+00:00", "Z")
        return msgspec.json.encode(
            {"type": self.settings.event_type, "timestamp": when, "data": data}
        )

    def send(self, message: OutboundMessage) -> SendResult:
        now_ms = self._clock.now_ms()
        timestamp = now_ms // 1000
        body = self.payload(message, now_ms)
        headers = {
            "content-type": "application/json",
            "webhook-id": message.key,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature(self.settings.secret, message.key, timestamp, body),
        }
        url, host, extensions = pinned(self.settings.url, self._policy.check_url(self.settings.url))
        try:
            response = self._client.post(
                url, content=body, headers={**headers, **host}, extensions=extensions
            )
        except httpx.HTTPError as exc:
            raise transport_error(exc) from exc
        if not response.is_success:
            # Standard Webhooks: any non-2xx is retried, except 410 Gone.
            raise response_error(response, now_ms, permanent={410})
        return SendResult(
            provider=self.name, message_id=message.key, detail=str(response.status_code)
        )

    def close(self) -> None:
        self._client.close()
