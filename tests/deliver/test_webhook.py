"""Webhooks against a loopback server that checks the Standard Webhooks signature."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading

import pytest

from momently.clock import FakeClock
from momently.deliver.channels.webhook import WebhookChannel, WebhookSettings, secret_key
from momently.deliver.errors import PermanentSendError, RetryableSendError
from tests.deliver.conftest import START
from tests.deliver.fakes import message
from tests.deliver.servers import Recorder, Reply, Request

pytestmark = pytest.mark.integration
KEY = b"0123456789abcdef0123456789abcdef"
SECRET = "whsec_" + base64.b64encode(KEY).decode()


def verify(request: Request) -> bool:
    """A receiver's check, written from the spec, not from the adapter."""
    signed = b".".join(
        [request.headers["webhook-id"].encode(), request.headers["webhook-timestamp"].encode(),
         request.body]
    )  # fmt: skip
    expected = base64.b64encode(hmac.new(KEY, signed, hashlib.sha256).digest()).decode()
    given = [s.split(",", 1)[1] for s in request.headers["webhook-signature"].split(" ")]
    return any(hmac.compare_digest(expected, g) for g in given)


def channel(url: str, clock: FakeClock, timeout_s: float = 5.0) -> WebhookChannel:
    settings = WebhookSettings(url=url, secret=SECRET, timeout_s=timeout_s, allow_private=True)
    return WebhookChannel(settings, clock)


def test_signed_post(http: Recorder, clock: FakeClock) -> None:
    hook = channel(http.url + "/hooks", clock)
    try:
        result = hook.send(message("de-1"))
    finally:
        hook.close()
    (request,) = http.requests
    assert request.method == "POST" and request.path == "/hooks"
    assert verify(request)
    assert request.headers["webhook-id"] == message("de-1").key == result.message_id
    assert request.headers["webhook-timestamp"] == str(START // 1000)
    assert request.headers["content-type"] == "application/json"
    body = json.loads(request.body)
    assert body["type"] == "momently.message"
    assert body["timestamp"] == "2026-09-21T14:13:20Z"
    assert body["data"]["decision_id"] == "de-1" and body["data"]["text"] == "hello"


def test_status_classification(http: Recorder, clock: FakeClock) -> None:
    http.script = [
        Reply(503, b"busy", {"retry-after": "30"}),
        Reply(400, b"bad"),
        Reply(410, b"gone"),
    ]
    hook = channel(http.url, clock)
    try:
        with pytest.raises(RetryableSendError, match="HTTP 503 busy") as caught:
            hook.send(message())
        assert caught.value.retry_after_ms == 30_000 and not caught.value.maybe_sent
        with pytest.raises(RetryableSendError, match="HTTP 400"):
            hook.send(message())  # Standard Webhooks: retried, the receiver may be mid-deploy
        with pytest.raises(PermanentSendError, match="HTTP 410"):
            hook.send(message())
    finally:
        hook.close()


def test_timeout_is_retryable_and_maybe_sent(http: Recorder, clock: FakeClock) -> None:
    release = threading.Event()

    def stall(request: Request) -> Reply:
        release.wait(10)
        return Reply()

    http.respond = stall
    hook = channel(http.url, clock, timeout_s=0.2)
    try:
        with pytest.raises(RetryableSendError, match="ReadTimeout") as caught:
            hook.send(message())
        assert caught.value.maybe_sent
    finally:
        release.set()
        hook.close()


def test_connection_refused_is_retryable_not_sent(clock: FakeClock) -> None:
    from tests.ports import free_port

    hook = channel(f"http://127.0.0.1:{free_port()}", clock)
    try:
        with pytest.raises(RetryableSendError, match="ConnectError") as caught:
            hook.send(message())
        assert not caught.value.maybe_sent
    finally:
        hook.close()


def test_bad_settings() -> None:
    with pytest.raises(ValueError, match="whsec_"):
        WebhookSettings(url="http://x", secret="whsec_!!!")
    with pytest.raises(ValueError, match="24 bytes"):
        secret_key("whsec_" + base64.b64encode(b"short").decode())
    with pytest.raises(ValueError, match="http"):
        WebhookSettings(url="ftp://x", secret=SECRET)
