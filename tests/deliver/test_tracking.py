"""Tracking tokens: signed, expiring, of one kind; and the links that carry them."""

from __future__ import annotations

import base64

import pytest

from momently.clock import FakeClock
from momently.deliver.errors import TokenError, TokenExpired
from momently.deliver.tracking import TokenSigner, TrackingLinks

SECRET = b"s" * 32


def signer(clock: FakeClock, ttl_ms: int = 60_000) -> TokenSigner:
    return TokenSigner(SECRET, clock, ttl_ms=ttl_ms)


def test_round_trip_carries_the_claims(clock: FakeClock) -> None:
    token = signer(clock).sign(
        kind="click", decision_id="de-1", customer_id="c1", channel="email",
        url="https://shop.example/p?x=1&y=é",
    )  # fmt: skip
    claims = signer(clock).verify(token, kind="click")
    assert (claims.decision_id, claims.customer_id, claims.channel) == ("de-1", "c1", "email")
    assert claims.url == "https://shop.example/p?x=1&y=é"
    assert claims.expires_ms == clock.now_ms() + 60_000


def test_expired_token_is_refused(clock: FakeClock) -> None:
    token = signer(clock).sign(kind="open", decision_id="de-1", customer_id="c1", channel="e")
    clock.advance(59_999)
    signer(clock).verify(token, kind="open")
    clock.advance(1)
    with pytest.raises(TokenExpired, match="expired") as caught:
        signer(clock).verify(token, kind="open")
    assert caught.value.status == 410


def test_tampered_token_is_refused(clock: FakeClock) -> None:
    token = signer(clock).sign(
        kind="click", decision_id="de-1", customer_id="c1", channel="email",
        url="https://shop.example/",
    )  # fmt: skip
    payload, mac = token.split(".")
    raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    evil = raw.replace(b"shop.example", b"evil.example")
    forged = base64.urlsafe_b64encode(evil).rstrip(b"=").decode() + "." + mac
    for bad in (forged, token[:-2] + "xx", token + ".x", "", "no-dot", "é.é", "a" * 9000):
        with pytest.raises(TokenError) as caught:
            signer(clock).verify(bad, kind="click")
        assert caught.value.status == 400
    other = TokenSigner(b"t" * 32, clock)
    with pytest.raises(TokenError, match="signature"):
        other.verify(token, kind="click")


def test_kind_must_match(clock: FakeClock) -> None:
    token = signer(clock).sign(kind="open", decision_id="de-1", customer_id="c1", channel="e")
    with pytest.raises(TokenError, match="open token cannot be used for unsubscribe"):
        signer(clock).verify(token, kind="unsubscribe")


def test_bad_arguments(clock: FakeClock) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        TokenSigner(b"short", clock)
    with pytest.raises(ValueError, match="http"):
        signer(clock).sign(kind="click", decision_id="d", customer_id="c", channel="e",
                           url="javascript:alert(1)")  # fmt: skip
    with pytest.raises(ValueError, match="http"):
        TrackingLinks("ftp://x", signer(clock))


def test_links(clock: FakeClock) -> None:
    links = TrackingLinks("https://t.example/base/", signer(clock))
    click = links.click("de-1", "c1", "email", "https://shop.example/")
    assert click.startswith("https://t.example/base/t/c/")
    assert signer(clock).verify(click.rsplit("/", 1)[1], kind="click").url == (
        "https://shop.example/"
    )
    pixel = links.open_pixel("de-1", "c1", "email")
    assert pixel.endswith(".gif")
    signer(clock).verify(pixel.rsplit("/", 1)[1].removesuffix(".gif"), kind="open")
    unsub = links.unsubscribe("de-1", "c1", "email")
    assert signer(clock).verify(unsub.rsplit("/", 1)[1], kind="unsubscribe").customer_id == "c1"
