"""SMS through a Twilio-shaped API on a loopback endpoint that checks the request."""

from __future__ import annotations

import base64
import json
from urllib.parse import parse_qs

import msgspec
import pytest

from momently.clock import FakeClock
from momently.deliver.channels.sms import SmsChannel, SmsSettings
from momently.deliver.errors import PermanentSendError, RetryableSendError
from momently.deliver.message import OutboundMessage
from tests.deliver.fakes import message
from tests.deliver.servers import Recorder, Reply, Request

pytestmark = pytest.mark.integration
SID = "AC0123456789abcdef0123456789abcdef"


def twilio(request: Request) -> Reply:
    """Answers like Twilio when the request is right, and 400/401 when it is not."""
    auth = base64.b64encode(f"{SID}:secret-token".encode()).decode()
    if request.headers.get("authorization") != f"Basic {auth}":
        return Reply(401, b'{"code": 20003, "message": "Authenticate"}')
    if request.path != f"/2010-04-01/Accounts/{SID}/Messages.json":
        return Reply(404, b'{"code": 20404}')
    if request.headers.get("content-type") != "application/x-www-form-urlencoded":
        return Reply(400, b'{"code": 21620}')
    form = parse_qs(request.body.decode())
    if form.get("To") == ["+15005550001"]:
        return Reply(400, b'{"code": 21211, "message": "Invalid \'To\' Phone Number"}')
    body = {"sid": "SM" + "1" * 32, "status": "queued", "to": form["To"][0]}
    return Reply(201, json.dumps(body).encode(), {"content-type": "application/json"})


def sms(url: str, clock: FakeClock, token: str = "secret-token") -> SmsChannel:
    settings = SmsSettings(
        account_sid=SID,
        auth_token=token,
        from_number="+15005550006",
        base_url=url,
        allow_private=True,  # the fake Twilio is on loopback (see test_ssrf.py)
    )
    return SmsChannel(settings, clock)


def text(to: str, url: str | None = None) -> OutboundMessage:
    return msgspec.structs.replace(message("de-1"), kind="sms", to=to, text="Toast?", url=url)


def test_sends_the_twilio_request_shape(http: Recorder, clock: FakeClock) -> None:
    http.respond = twilio
    channel = sms(http.url, clock)
    try:
        result = channel.send(text("+14155550100", url="https://t.example/c/x"))
    finally:
        channel.close()
    assert (result.provider, result.message_id, result.detail) == (
        "twilio",
        "SM" + "1" * 32,
        "queued",
    )
    (request,) = http.requests
    assert request.method == "POST"
    assert parse_qs(request.body.decode()) == {
        "To": ["+14155550100"],
        "From": ["+15005550006"],
        "Body": ["Toast? https://t.example/c/x"],
    }


def test_refusals_are_classified(http: Recorder, clock: FakeClock) -> None:
    http.respond = twilio
    channel = sms(http.url, clock)
    wrong = sms(http.url, clock, token="wrong")
    try:
        with pytest.raises(PermanentSendError, match="21211"):
            channel.send(text("+15005550001"))
        with pytest.raises(RetryableSendError, match="HTTP 401"):
            wrong.send(text("+14155550100"))
        http.respond = None
        http.script = [Reply(429, b"{}", {"retry-after": "2"}), Reply(500, b"oops")]
        with pytest.raises(RetryableSendError) as caught:
            channel.send(text("+14155550100"))
        assert caught.value.retry_after_ms == 2_000
        with pytest.raises(RetryableSendError, match="HTTP 500"):
            channel.send(text("+14155550100"))
    finally:
        channel.close()
        wrong.close()


def test_settings_need_one_sender() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        SmsSettings(account_sid=SID, auth_token="t")
    with pytest.raises(ValueError, match="http"):
        SmsSettings(account_sid=SID, auth_token="t", from_number="+1", base_url="x")
