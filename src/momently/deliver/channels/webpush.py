"""Web Push (RFC 8030) with aes128gcm payload encryption (RFC 8291) and VAPID (RFC 8292).

The message's ``to`` is the browser's subscription as JSON
(``{"endpoint": …, "keys": {"p256dh": …, "auth": …}}``). The payload is JSON
``{title, body, url, key, decision_id, data}``; the service worker should show
it with ``tag: key`` so a repeated send replaces, not duplicates, the
notification. ``Topic`` (from the key) lets the push service replace an
undelivered copy. The endpoint comes from a browser, so it must be https (and,
with ``allowed_hosts``, on a known push service) — it is never a way into the
internal network.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

import requests
import requests.adapters
import urllib3
from py_vapid import Vapid02
from pywebpush import WebPusher
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from momently.clock import Clock
from momently.deliver.channels.http import status_error
from momently.deliver.errors import PermanentSendError, RetryableSendError
from momently.deliver.message import OutboundMessage, SendResult
from momently.deliver.ssrf import Resolver, TargetPolicy, system_resolver

Urgency = Literal["very-low", "low", "normal", "high"]
GONE = frozenset({404, 410})


@dataclass(frozen=True)
class WebPushSettings:
    vapid_private_key: str = field(repr=False)  # PEM, or base64url DER/raw as py_vapid reads
    subject: str  # "mailto:ops@brand.example" or an https URL: who to call about abuse
    ttl_s: int = 86_400
    urgency: Urgency = "normal"
    timeout_s: float = 10.0
    allowed_hosts: tuple[str, ...] | None = None  # e.g. ("fcm.googleapis.com", ...)
    allow_http: bool = False  # only for a loopback push service in tests
    allow_private: bool = False  # private, loopback and link-local endpoints (deliver.ssrf)
    name: str = "webpush"

    def __post_init__(self) -> None:
        if not self.subject.startswith(("mailto:", "https://")):
            raise ValueError("VAPID subject must be a mailto: or https: URL")


def load_vapid(key: str) -> Any:
    """A py_vapid key from PEM text or py_vapid's base64url forms."""
    if key.lstrip().startswith("-----BEGIN"):
        return Vapid02.from_pem(key.encode())
    return Vapid02.from_string(private_key=key)


def topic(key: str) -> str:
    """A ``Topic`` header value (≤ 32 base64url characters) for an idempotency key."""
    digest = hashlib.blake2b(key.encode(), digest_size=24).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii")


def _unsent(exc: requests.RequestException) -> bool:
    """Whether the request surely never reached the push service (no connection made)."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(reason, NewConnectionError)


class _NoRedirects(requests.Session):
    """A session that never follows a redirect: its target was never checked (SSRF)."""

    def get_redirect_target(self, resp: requests.Response) -> str | None:
        return None


def _checked(cls: type[HTTPConnection], policy: TargetPolicy) -> type[HTTPConnection]:
    """``cls`` checking its host with ``policy`` as it connects, and connecting to the
    checked addresses only (no second lookup: DNS rebinding has no window). The name
    stays the connection's host, so TLS still sends and verifies it."""

    def _new_conn(self: HTTPConnection) -> Any:
        name = self._dns_host
        addresses = policy.check_host(name, self.port)
        if not addresses:  # private targets allowed: nothing was resolved
            return cls._new_conn(self)
        failure: Exception | None = None
        try:
            for address in addresses:
                self._dns_host = str(address)
                try:
                    return cls._new_conn(self)
                except (NewConnectionError, ConnectTimeoutError) as exc:
                    failure = exc  # the next checked address, as a resolver's list is meant
        finally:
            self._dns_host = name
        assert failure is not None
        raise failure

    return type(f"Checked{cls.__name__}", (cls,), {"_new_conn": _new_conn})


class _CheckedAdapter(requests.adapters.HTTPAdapter):
    """Every connection checked at connect time (SSRF, DNS rebinding); no retries."""

    def __init__(self, policy: TargetPolicy) -> None:
        self._policy = policy
        super().__init__(max_retries=0)

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any
    ) -> None:
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)
        manager: urllib3.PoolManager = self.poolmanager
        plain = _checked(HTTPConnection, self._policy)
        tls = _checked(HTTPSConnection, self._policy)
        manager.pool_classes_by_scheme = {
            "http": type("CheckedHTTPPool", (HTTPConnectionPool,), {"ConnectionCls": plain}),
            "https": type("CheckedHTTPSPool", (HTTPSConnectionPool,), {"ConnectionCls": tls}),
        }


class WebPushChannel:
    dedupes = True  # Topic at the push service, the notification tag on the device

    def __init__(
        self, settings: WebPushSettings, clock: Clock, *, resolver: Resolver = system_resolver
    ) -> None:
        self.settings = settings
        self.name = settings.name
        self._clock = clock
        self._vapid = load_vapid(settings.vapid_private_key)
        self._policy = TargetPolicy(settings.allow_private, resolver)
        self._session = _NoRedirects()
        self._session.trust_env = False  # no proxy from the environment around the check
        adapter = _CheckedAdapter(self._policy)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)

    def close(self) -> None:
        self._session.close()

    def subscription(self, message: OutboundMessage) -> dict[str, Any]:
        try:
            sub = json.loads(message.to)
            endpoint, keys = sub["endpoint"], sub["keys"]
            if not (isinstance(keys["p256dh"], str) and isinstance(keys["auth"], str)):
                raise TypeError("keys must be strings")
        except (ValueError, TypeError, KeyError) as exc:
            raise PermanentSendError(f"not a push subscription: {exc}") from exc
        parts = urlsplit(endpoint) if isinstance(endpoint, str) else None
        schemes = ("https", "http") if self.settings.allow_http else ("https",)
        if parts is None or parts.scheme not in schemes or not parts.hostname:
            raise PermanentSendError("push endpoint must be an https URL")
        allowed = self.settings.allowed_hosts
        if allowed is not None and parts.hostname not in allowed:
            raise PermanentSendError(f"push endpoint host {parts.hostname} is not allowed")
        # The browser chose it: never into our network. Checked here, before any work,
        # and again as the connection is made, to the address then checked.
        self._policy.check_url(endpoint)
        return {"endpoint": endpoint, "keys": {"p256dh": keys["p256dh"], "auth": keys["auth"]}}

    def payload(self, message: OutboundMessage) -> bytes:
        body = {
            "title": message.title or message.subject or "",
            "body": message.text,
            "url": message.url,
            "key": message.key,
            "decision_id": message.decision_id,
            "data": message.data,
        }
        return json.dumps(body, separators=(",", ":")).encode()

    def send(self, message: OutboundMessage) -> SendResult:
        sub = self.subscription(message)
        parts = urlsplit(sub["endpoint"])
        now_ms = self._clock.now_ms()
        claims = {
            "sub": self.settings.subject,
            "aud": f"{parts.scheme}://{parts.netloc}",
            "exp": now_ms // 1000 + 12 * 3600,
        }
        headers: dict[str, str] = dict(self._vapid.sign(claims))
        headers.update(Topic=topic(message.key), Urgency=self.settings.urgency)
        try:
            response = WebPusher(sub, requests_session=self._session).send(
                data=self.payload(message),
                headers=headers,
                ttl=self.settings.ttl_s,
                content_encoding="aes128gcm",
                timeout=self.settings.timeout_s,
            )
        except requests.RequestException as exc:
            reason = f"{type(exc).__name__}: {exc}"
            raise RetryableSendError(reason, maybe_sent=not _unsent(exc)) from exc
        except (ValueError, TypeError) as exc:  # bad keys: the encryption cannot be done
            raise PermanentSendError(f"cannot encrypt for this subscription: {exc}") from exc
        status = response.status_code
        if status in GONE:
            raise PermanentSendError(f"subscription expired (HTTP {status})")
        if not 200 <= status < 300:
            raise status_error(
                status,
                response.text,
                response.headers.get("retry-after"),
                now_ms,
                permanent={400, 413},
            )
        location = response.headers.get("location", "")
        return SendResult(
            provider=self.name, message_id=location or message.key, detail=str(status)
        )
