"""Signed, expiring tracking tokens and the links that carry them.

A token is ``<payload>.<signature>``: the payload is compact JSON in base64url
(decision, customer, channel, kind, target URL, expiry in ms) and the signature
is HMAC-SHA256 over the payload's text, in base64url. Tampering with any byte
breaks the signature; a token of one kind is refused where another is asked for.

>>> from momently.clock import FakeClock
>>> signer = TokenSigner(b"k" * 32, FakeClock(1_000))
>>> token = signer.sign(kind="click", decision_id="de-1", customer_id="c1", channel="email",
...                     url="https://shop.example/p/1")
>>> signer.verify(token, kind="click").url
'https://shop.example/p/1'
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from typing import Final, Literal
from urllib.parse import urlsplit

import msgspec

from momently.clock import Clock
from momently.deliver.errors import TokenError, TokenExpired

TokenKind = Literal["click", "open", "unsubscribe", "inapp"]
DAY_MS: Final = 86_400_000
MAX_TOKEN: Final = 8_192


class Claims(msgspec.Struct, frozen=True, omit_defaults=True):
    """What a token says: who, which decision, what for, until when."""

    k: TokenKind
    d: str  # decision id
    c: str  # customer id
    ch: str  # channel name
    x: int  # expires, ms since the epoch
    u: str | None = None  # the target URL of a click

    @property
    def kind(self) -> TokenKind:
        return self.k

    @property
    def decision_id(self) -> str:
        return self.d

    @property
    def customer_id(self) -> str:
        return self.c

    @property
    def channel(self) -> str:
        return self.ch

    @property
    def expires_ms(self) -> int:
        return self.x

    @property
    def url(self) -> str | None:
        return self.u


_decoder: Final = msgspec.json.Decoder(Claims)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenSigner:
    """Signs and verifies tracking tokens with one secret; time comes from ``clock``."""

    def __init__(self, secret: bytes, clock: Clock, *, ttl_ms: int = 90 * DAY_MS) -> None:
        if len(secret) < 32:
            raise ValueError("a tracking secret needs at least 32 bytes")
        if ttl_ms <= 0:
            raise ValueError("ttl_ms must be positive")
        self._secret = secret
        self._clock = clock
        self.ttl_ms = ttl_ms

    def _mac(self, payload: str) -> str:
        return _b64(
            hmac.new(self._secret, payload.encode("utf-8", "replace"), hashlib.sha256).digest()
        )

    def sign(
        self,
        *,
        kind: TokenKind,
        decision_id: str,
        customer_id: str,
        channel: str,
        url: str | None = None,
        ttl_ms: int | None = None,
    ) -> str:
        """A token for one decision's click, open, unsubscribe or in-app stream."""
        if kind == "click" and not _is_web_url(url):
            raise ValueError(f"a click token needs an http(s) URL, not {url!r}")
        expires = self._clock.now_ms() + (ttl_ms if ttl_ms is not None else self.ttl_ms)
        claims = Claims(k=kind, d=decision_id, c=customer_id, ch=channel, x=expires, u=url)
        payload = _b64(msgspec.json.encode(claims))
        return f"{payload}.{self._mac(payload)}"

    def verify(self, token: str, *, kind: TokenKind, allow_expired: bool = False) -> Claims:
        """The token's claims; raise TokenError if forged or of another kind, TokenExpired.

        ``allow_expired`` accepts a genuine token past its time: an unsubscribe
        link must keep working however old the message is.
        """
        if len(token) > MAX_TOKEN or token.count(".") != 1:
            raise TokenError("malformed tracking token")
        payload, signature = token.split(".")
        expected = self._mac(payload).encode("ascii")
        if not hmac.compare_digest(signature.encode("utf-8", "replace"), expected):
            raise TokenError("tracking token signature does not match")
        try:
            claims = _decoder.decode(_unb64(payload))
        except (binascii.Error, ValueError, msgspec.DecodeError) as exc:
            raise TokenError("malformed tracking token") from exc
        if claims.kind != kind:
            raise TokenError(f"a {claims.kind} token cannot be used for {kind}")
        if not allow_expired and self._clock.now_ms() >= claims.expires_ms:
            raise TokenExpired("tracking token has expired")
        return claims


def _is_web_url(url: str | None) -> bool:
    if not url:
        return False
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


class TrackingLinks:
    """Builds tracking URLs under ``base_url`` (served by :func:`tracking_router`).

    >>> from momently.clock import FakeClock
    >>> links = TrackingLinks("https://t.example/", TokenSigner(b"k" * 32, FakeClock()))
    >>> links.open_pixel("de-1", "c1", "email").startswith("https://t.example/t/o/")
    True
    """

    def __init__(self, base_url: str, signer: TokenSigner, *, prefix: str = "/t") -> None:
        if not _is_web_url(base_url):
            raise ValueError(f"tracking base URL must be http(s): {base_url!r}")
        self.base = base_url.rstrip("/") + prefix
        self.signer = signer

    def click(self, decision_id: str, customer_id: str, channel: str, url: str) -> str:
        token = self.signer.sign(
            kind="click", decision_id=decision_id, customer_id=customer_id, channel=channel, url=url
        )
        return f"{self.base}/c/{token}"

    def open_pixel(self, decision_id: str, customer_id: str, channel: str) -> str:
        token = self.signer.sign(
            kind="open", decision_id=decision_id, customer_id=customer_id, channel=channel
        )
        return f"{self.base}/o/{token}.gif"

    def unsubscribe(self, decision_id: str, customer_id: str, channel: str) -> str:
        token = self.signer.sign(
            kind="unsubscribe", decision_id=decision_id, customer_id=customer_id, channel=channel
        )
        return f"{self.base}/u/{token}"
