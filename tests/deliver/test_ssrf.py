"""SSRF: webhooks, the SMS API and Web Push never reach private, loopback or link-local addresses
unless the provider allows it; every resolved address is checked; no redirect is followed."""

from __future__ import annotations

import base64
import ipaddress
import json
from typing import Any

import httpcore
import httpx
import msgspec
import pytest
import requests
from py_vapid import Vapid02

from momently.clock import FakeClock
from momently.decide.spec import SmsProvider, WebhookProvider, WebPushProvider
from momently.deliver.channels.sms import SmsChannel, SmsSettings
from momently.deliver.channels.webhook import WebhookChannel, WebhookSettings
from momently.deliver.channels.webpush import WebPushChannel, WebPushSettings, _CheckedAdapter
from momently.deliver.errors import PermanentSendError, RetryableSendError
from momently.deliver.ssrf import (
    BlockedTarget,
    CheckedBackend,
    IPAddress,
    TargetPolicy,
    checked_client,
    is_public,
)
from momently.runtime.delivery import _provider
from tests.deliver.fakes import message
from tests.deliver.servers import Recorder, Reply
from tests.deliver.test_webpush import Browser

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()

PRIVATE = [
    "127.0.0.1", "127.8.9.10", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254",
    "100.64.0.1", "0.0.0.0", "255.255.255.255", "224.0.0.1", "192.0.2.1", "::1", "::",
    "fe80::1", "fc00::1", "fd12:3456::1", "::ffff:10.0.0.1", "::ffff:127.0.0.1",
    "2002:7f00:1::1", "2002:a9fe:a9fe::1", "ff02::1",
]  # fmt: skip
PUBLIC = ["93.184.216.34", "8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "2a00:1450:4001::1"]


@pytest.mark.parametrize("address", PRIVATE)
def test_private_loopback_link_local_and_hidden_v4_are_not_public(address: str) -> None:
    assert not is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_are(address: str) -> None:
    assert is_public(ipaddress.ip_address(address))


def resolver(table: dict[str, list[str]]) -> object:
    asked: list[str] = []

    def resolve(host: str, port: int) -> list[str]:
        asked.append(host)
        if host not in table:
            raise OSError("Name or service not known")
        return table[host]

    resolve.asked = asked  # type: ignore[attr-defined]
    return resolve


def test_every_resolved_address_is_checked() -> None:
    names = {
        "public.example": ["93.184.216.34"],
        "mixed.example": ["93.184.216.34", "10.0.0.5"],  # one bad address is enough
        "metadata.example": ["169.254.169.254"],
        "v6.example": ["2606:4700:4700::1111", "fe80::1%eth0"],
    }
    policy = TargetPolicy(resolver=resolver(names))  # type: ignore[arg-type]
    policy.check_url("https://public.example/hook")
    for host in ("mixed.example", "metadata.example", "v6.example"):
        with pytest.raises(BlockedTarget, match="not a public address"):
            policy.check_url(f"https://{host}/hook")
    for literal in ("http://127.0.0.1:8080/x", "http://[::1]/x", "https://169.254.169.254/x"):
        with pytest.raises(BlockedTarget):
            policy.check_url(literal)
    with pytest.raises(RetryableSendError, match="cannot resolve"):  # DNS down: try later
        policy.check_url("https://unknown.example/hook")


def test_allowed_private_targets_resolve_nothing() -> None:
    def refuse(host: str, port: int) -> list[str]:
        raise AssertionError("no lookup when private targets are allowed")

    TargetPolicy(allow_private=True, resolver=refuse).check_url("http://10.0.0.1/x")


@pytest.mark.integration
def test_a_webhook_to_loopback_is_refused_by_default(http: Recorder) -> None:
    clock = FakeClock(0)
    hook = WebhookChannel(WebhookSettings(url=http.url, secret=SECRET), clock)
    try:
        with pytest.raises(PermanentSendError, match="not a public address"):
            hook.send(message())
    finally:
        hook.close()
    assert http.requests == []  # refused before any connection
    allowed = WebhookChannel(
        WebhookSettings(url=http.url, secret=SECRET, allow_private=True), clock
    )
    try:
        assert allowed.send(message()).detail == "200"
    finally:
        allowed.close()
    assert len(http.requests) == 1


@pytest.mark.integration
def test_a_name_that_resolves_inside_is_refused(http: Recorder) -> None:
    port = http.url.rsplit(":", 1)[1].split("/")[0]
    fake = resolver({"hooks.brand.example": ["127.0.0.1"]})
    hook = WebhookChannel(
        WebhookSettings(url=f"http://hooks.brand.example:{port}/", secret=SECRET),
        FakeClock(0),
        resolver=fake,  # type: ignore[arg-type]
    )
    try:
        with pytest.raises(PermanentSendError, match="127.0.0.1"):
            hook.send(message())
    finally:
        hook.close()
    assert http.requests == [] and fake.asked == ["hooks.brand.example"]  # type: ignore[attr-defined]


def test_a_webhook_goes_to_the_address_that_was_checked() -> None:
    """DNS rebinding: the request connects to the IP the check saw, not to a new lookup;
    the name stays in Host and in TLS (SNI and certificate check)."""
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    names = {"hooks.brand.example": ["93.184.216.34"]}
    settings = WebhookSettings(url="https://hooks.brand.example:8443/in?x=1", secret=SECRET)
    hook = WebhookChannel(
        settings,
        FakeClock(0),
        transport=httpx.MockTransport(answer),
        resolver=resolver(names),  # type: ignore[arg-type]
    )
    try:
        hook.send(message())
        names["hooks.brand.example"] = ["10.0.0.9"]  # the name now points inside
        with pytest.raises(BlockedTarget):
            hook.send(message())
    finally:
        hook.close()
    (request,) = seen
    assert str(request.url) == "https://93.184.216.34:8443/in?x=1"
    assert request.headers["host"] == "hooks.brand.example:8443"
    assert request.extensions["sni_hostname"] == "hooks.brand.example"


@pytest.mark.integration
def test_a_webhook_redirect_is_not_followed(http: Recorder) -> None:
    http.script = [Reply(307, b"", {"location": "http://169.254.169.254/latest/meta-data/"})]
    hook = WebhookChannel(
        WebhookSettings(url=http.url, secret=SECRET, allow_private=True), FakeClock(0)
    )
    try:
        with pytest.raises(RetryableSendError, match="HTTP 307"):
            hook.send(message())
    finally:
        hook.close()
    assert len(http.requests) == 1


def subscription(endpoint: str) -> str:
    return json.dumps({"endpoint": endpoint, "keys": {"p256dh": "x", "auth": "y"}})


@pytest.mark.parametrize(
    "endpoint",
    [
        "https://169.254.169.254/latest/meta-data/",
        "https://127.0.0.1/push",
        "https://[::1]/push",
        "https://10.0.0.1/push",
        "https://push.internal.example/push",  # resolves to a private address
    ],
)
def test_a_push_endpoint_inside_is_refused(endpoint: str) -> None:
    vapid = Vapid02()
    vapid.generate_keys()
    settings = WebPushSettings(
        vapid_private_key=vapid.private_pem().decode(), subject="mailto:o@b.example"
    )
    fake = resolver({"push.internal.example": ["192.168.0.7"]})
    channel = WebPushChannel(settings, FakeClock(0), resolver=fake)  # type: ignore[arg-type]
    push = msgspec.structs.replace(message(channel="web_push"), to=subscription(endpoint))
    try:
        with pytest.raises(PermanentSendError, match="not a public address"):
            channel.send(push)
    finally:
        channel.close()


def test_the_playbook_setting_reaches_the_adapters() -> None:
    environ = {"S": SECRET}
    strict = WebhookProvider(type="webhook", url="https://h.example/x", secret_env="S")
    assert strict.allow_private_targets is False
    built = _provider("hook", "h", strict, environ, FakeClock(0))
    assert isinstance(built, WebhookChannel) and built.settings.allow_private is False
    built.close()
    loose = strict.model_copy(update={"allow_private_targets": True})
    built = _provider("hook", "h", loose, environ, FakeClock(0))
    assert isinstance(built, WebhookChannel) and built.settings.allow_private is True
    built.close()
    assert WebPushProvider.model_fields["allow_private_targets"].default is False


# -- SMS and Web Push: the same check, made as each connection is made ---------------------------


class _Loopback(TargetPolicy):
    """A policy that resolves every name to 127.0.0.1 and lets it through: shows where the
    connection goes without DNS (the names below do not exist)."""

    def check_host(self, host: str, port: int) -> list[IPAddress]:
        return [ipaddress.ip_address("127.0.0.1")]


def _sms(url: str, **extra: object) -> SmsChannel:
    settings = SmsSettings(
        account_sid="AC1", auth_token="tok", from_number="+15005550006", base_url=url,
        **extra,  # type: ignore[arg-type]
    )  # fmt: skip
    return SmsChannel(settings, FakeClock(0))


def _port(url: str) -> str:
    return url.rsplit(":", 1)[1].split("/")[0]


@pytest.mark.integration
def test_an_sms_api_on_loopback_is_refused_by_default(http: Recorder) -> None:
    strict = _sms(http.url)
    try:
        with pytest.raises(PermanentSendError, match="not a public address"):
            strict.send(message(channel="sms"))
    finally:
        strict.close()
    assert http.requests == []  # refused before any connection
    http.default = Reply(201, b'{"sid": "SM1", "status": "queued"}')
    loose = _sms(http.url, allow_private=True)
    try:
        assert loose.send(message(channel="sms")).message_id == "SM1"
    finally:
        loose.close()
    assert len(http.requests) == 1


@pytest.mark.integration
def test_an_sms_api_name_that_resolves_inside_is_refused_at_connect(http: Recorder) -> None:
    fake = resolver({"api.sms.example": ["127.0.0.1"]})
    settings = SmsSettings(
        account_sid="AC1", auth_token="tok", from_number="+1",
        base_url=f"http://api.sms.example:{_port(http.url)}",
    )  # fmt: skip
    channel = SmsChannel(settings, FakeClock(0), resolver=fake)  # type: ignore[arg-type]
    try:
        with pytest.raises(BlockedTarget, match="127.0.0.1"):
            channel.send(message(channel="sms"))
    finally:
        channel.close()
    assert http.requests == [] and fake.asked == ["api.sms.example"]  # type: ignore[attr-defined]


@pytest.mark.integration
def test_the_checked_client_connects_to_the_address_it_checked(http: Recorder) -> None:
    """No second lookup: the name does not resolve at all, yet the request arrives, at the
    address the check gave, with the name kept in Host."""
    with checked_client(_Loopback(), timeout=5) as client:
        answer = client.post(f"http://sms.nowhere.invalid:{_port(http.url)}/x", content=b"hi")
    assert answer.status_code == 200
    (request,) = http.requests
    assert request.headers["host"] == f"sms.nowhere.invalid:{_port(http.url)}"


def test_the_backend_connects_to_the_checked_address_and_checks_each_time() -> None:
    """DNS rebinding: the second connection's lookup points inside, and is refused."""
    connected: list[str] = []

    class Inner(httpcore.SyncBackend):
        def connect_tcp(self, host: str, port: int, *args: object, **kw: object) -> Any:
            connected.append(host)
            raise httpcore.ConnectError("not on this machine")

    names = {"api.sms.example": ["93.184.216.34", "2606:4700:4700::1111"]}
    backend = CheckedBackend(TargetPolicy(resolver=resolver(names)), Inner())  # type: ignore[arg-type]
    with pytest.raises(httpcore.ConnectError):
        backend.connect_tcp("api.sms.example", 443)
    assert connected == ["93.184.216.34", "2606:4700:4700::1111"]  # each checked one in turn
    names["api.sms.example"] = ["10.0.0.9"]
    with pytest.raises(BlockedTarget):
        backend.connect_tcp("api.sms.example", 443)
    assert len(connected) == 2
    with pytest.raises(BlockedTarget):
        backend.connect_unix_socket("/run/docker.sock")


def test_the_playbook_setting_reaches_the_sms_adapter() -> None:
    spec = SmsProvider(type="sms", account_sid="AC1", auth_token_env="T", **{"from": "+1"})
    assert spec.allow_private_targets is False
    built = _provider("sms", "s", spec, {"T": "tok"}, FakeClock(0))
    assert isinstance(built, SmsChannel) and built.settings.allow_private is False
    built.close()
    loose = spec.model_copy(update={"allow_private_targets": True})
    built = _provider("sms", "s", loose, {"T": "tok"}, FakeClock(0))
    assert isinstance(built, SmsChannel) and built.settings.allow_private is True
    built.close()


def _push_channel(fake: object, **extra: object) -> WebPushChannel:
    vapid = Vapid02()
    vapid.generate_keys()
    settings = WebPushSettings(
        vapid_private_key=vapid.private_pem().decode(), subject="mailto:o@b.example",
        allow_http=True, timeout_s=5, **extra,  # type: ignore[arg-type]
    )  # fmt: skip
    return WebPushChannel(settings, FakeClock(0), resolver=fake)  # type: ignore[arg-type]


@pytest.mark.integration
def test_a_push_endpoint_that_rebinds_inside_is_refused_at_connect(http: Recorder) -> None:
    """The first lookup (the subscription's check) says public, the second (as the
    connection is made) says loopback: the connection is refused, nothing arrives."""
    answers = [["93.184.216.34"], ["127.0.0.1"]]
    asked: list[str] = []

    def rebinding(host: str, port: int) -> list[str]:
        asked.append(host)
        return answers[min(len(asked), len(answers)) - 1]

    channel = _push_channel(rebinding)
    endpoint = f"http://push.rebind.example:{_port(http.url)}/p"
    push = msgspec.structs.replace(
        message(channel="web_push"), to=json.dumps(Browser(endpoint).subscription)
    )
    try:
        with pytest.raises(BlockedTarget, match="127.0.0.1"):
            channel.send(push)
    finally:
        channel.close()
    assert http.requests == [] and asked == ["push.rebind.example"] * 2


@pytest.mark.integration
def test_the_push_adapter_connects_to_the_address_it_checked(http: Recorder) -> None:
    session = requests.Session()
    session.trust_env = False
    session.mount("http://", _CheckedAdapter(_Loopback()))
    try:
        answer = session.get(f"http://push.nowhere.invalid:{_port(http.url)}/p", timeout=5)
    finally:
        session.close()
    assert answer.status_code == 200
    (request,) = http.requests
    assert request.headers["host"] == f"push.nowhere.invalid:{_port(http.url)}"
