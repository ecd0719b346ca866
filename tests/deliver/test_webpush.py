"""Web Push to a loopback push service that decrypts the aes128gcm payload and checks VAPID."""

from __future__ import annotations

import base64
import json
import os

import http_ece
import msgspec
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from py_vapid import Vapid02

from momently.clock import FakeClock
from momently.deliver.channels.webpush import WebPushChannel, WebPushSettings, topic
from momently.deliver.errors import PermanentSendError, RetryableSendError
from momently.deliver.message import OutboundMessage
from tests.deliver.conftest import START
from tests.deliver.fakes import message
from tests.deliver.servers import Recorder, Reply

pytestmark = pytest.mark.integration


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Browser:
    """What a browser holds for one subscription: its P-256 key pair and auth secret."""

    def __init__(self, endpoint: str) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.auth = os.urandom(16)
        public = self.key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        self.subscription = {
            "endpoint": endpoint,
            "keys": {"p256dh": b64url(public), "auth": b64url(self.auth)},
        }

    def decrypt(self, body: bytes) -> bytes:
        plain: bytes = http_ece.decrypt(
            body, private_key=self.key, auth_secret=self.auth, version="aes128gcm"
        )
        return plain


def vapid_claims(authorization: str) -> tuple[dict[str, object], bytes]:
    """Verify the VAPID JWT (ES256) with the key in ``k``; return its claims and the key."""
    scheme, params = authorization.split(" ", 1)
    assert scheme == "vapid"
    fields = dict(part.strip().split("=", 1) for part in params.split(","))
    token, key = fields["t"], unb64url(fields["k"])
    header, claims, signature = token.split(".")
    assert json.loads(unb64url(header)) == {"typ": "JWT", "alg": "ES256"}
    raw = unb64url(signature)
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), key)
    public.verify(der, f"{header}.{claims}".encode(), ec.ECDSA(hashes.SHA256()))  # raises if bad
    return json.loads(unb64url(claims)), key


@pytest.fixture
def vapid() -> Vapid02:
    key = Vapid02()
    key.generate_keys()
    return key


def channel(vapid: Vapid02, clock: FakeClock) -> WebPushChannel:
    settings = WebPushSettings(
        vapid_private_key=vapid.private_pem().decode(),
        subject="mailto:ops@brand.example",
        ttl_s=3600,
        urgency="high",
        allow_http=True,
        allow_private=True,  # the fake push service listens on loopback
        timeout_s=5,
    )
    return WebPushChannel(settings, clock)


def push(browser: Browser) -> OutboundMessage:
    return msgspec.structs.replace(
        message("de-1", "webpush"),
        kind="web_push",
        to=json.dumps(browser.subscription),
        title="Hot doughnuts",
        text="Fresh at store 12",
        url="https://t.example/t/c/tok",
        data={"offer": "doughnuts"},
    )


def test_encrypted_payload_and_vapid(http: Recorder, vapid: Vapid02, clock: FakeClock) -> None:
    http.default = Reply(201, b"", {"location": f"{http.url}/m/abc"})
    browser = Browser(f"{http.url}/push/sub-1")
    ch = channel(vapid, clock)
    try:
        result = ch.send(push(browser))
    finally:
        ch.close()
    assert result.message_id == f"{http.url}/m/abc"
    (request,) = http.requests
    assert request.method == "POST" and request.path == "/push/sub-1"
    assert request.headers["content-encoding"] == "aes128gcm"
    assert request.headers["ttl"] == "3600" and request.headers["urgency"] == "high"
    assert request.headers["topic"] == topic(message("de-1", "webpush").key)
    assert len(request.headers["topic"]) <= 32
    payload = json.loads(browser.decrypt(request.body))
    assert payload == {
        "title": "Hot doughnuts",
        "body": "Fresh at store 12",
        "url": "https://t.example/t/c/tok",
        "key": message("de-1", "webpush").key,
        "decision_id": "de-1",
        "data": {"offer": "doughnuts"},
    }
    claims, key = vapid_claims(request.headers["authorization"])
    assert claims == {
        "sub": "mailto:ops@brand.example",
        "aud": http.url,
        "exp": START // 1000 + 43200,
    }
    assert key == vapid.public_key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    with pytest.raises(Exception, match="InvalidTag|decrypt"):  # only the browser can read it
        Browser(http.url).decrypt(request.body)


def test_push_service_answers(http: Recorder, vapid: Vapid02, clock: FakeClock) -> None:
    browser = Browser(f"{http.url}/push/sub-1")
    http.script = [Reply(410, b"gone"), Reply(429, b"", {"retry-after": "5"}), Reply(413, b"big")]
    ch = channel(vapid, clock)
    try:
        with pytest.raises(PermanentSendError, match="subscription expired"):
            ch.send(push(browser))
        with pytest.raises(RetryableSendError, match="HTTP 429") as caught:
            ch.send(push(browser))
        assert caught.value.retry_after_ms == 5_000
        with pytest.raises(PermanentSendError, match="HTTP 413"):
            ch.send(push(browser))
    finally:
        ch.close()


def test_endpoint_must_be_https_and_allowed(vapid: Vapid02, clock: FakeClock) -> None:
    strict = WebPushChannel(
        WebPushSettings(
            vapid_private_key=vapid.private_pem().decode(), subject="mailto:o@b.example",
            allowed_hosts=("push.example",),
        ),
        clock,
    )  # fmt: skip
    try:
        for endpoint, match in (
            ("http://push.example/x", "https"),
            ("https://169.254.169.254/latest", "not allowed"),
        ):
            with pytest.raises(PermanentSendError, match=match):
                strict.send(push(Browser(endpoint)))
        bad = msgspec.structs.replace(push(Browser("https://push.example/x")), to="{}")
        with pytest.raises(PermanentSendError, match="not a push subscription"):
            strict.send(bad)
    finally:
        strict.close()


def test_unreachable_service_is_retryable_not_sent(vapid: Vapid02, clock: FakeClock) -> None:
    from tests.ports import free_port

    ch = channel(vapid, clock)
    try:
        with pytest.raises(RetryableSendError) as caught:
            ch.send(push(Browser(f"http://127.0.0.1:{free_port()}/p")))
        assert not caught.value.maybe_sent
    finally:
        ch.close()
