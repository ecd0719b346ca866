"""Email against a real SMTP server on loopback (aiosmtpd): STARTTLS, AUTH, parts, RFC 8058."""

from __future__ import annotations

import email
import ssl
from collections.abc import Iterator
from email.message import EmailMessage
from email.policy import default
from pathlib import Path

import msgspec
import pytest

from momently.clock import FakeClock
from momently.deliver.channels.smtp import SmtpChannel, SmtpSettings
from momently.deliver.errors import PermanentSendError, RetryableSendError
from momently.deliver.message import OutboundMessage
from tests.deliver.certs import self_signed
from tests.deliver.fakes import message
from tests.deliver.smtpd import PASSWORD, USER, Mailbox, server_context, smtp_server

pytestmark = pytest.mark.integration


@pytest.fixture
def certs(tmp_path: Path) -> tuple[str, str]:
    cert, key = self_signed(tmp_path)
    return str(cert), str(key)


@pytest.fixture
def secure(certs: tuple[str, str]) -> Iterator[Mailbox]:
    with smtp_server(tls=server_context(*certs), auth=True) as mailbox:
        yield mailbox


def client_context(cert: str) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=cert)


def mail(to: str = "ada@example.com", **changes: object) -> OutboundMessage:
    base = msgspec.structs.replace(
        message("de-1", "email"),
        kind="email",
        to=to,
        subject="A toaster for five",
        text="Hi Ada,\n\nToasts four at once.",
        html="<p>Hi Ada,</p><p>Toasts four at once.</p>",
        unsubscribe_url="https://t.example/t/u/tok",
        unsubscribe_mailto="mailto:unsub@brand.example?subject=unsubscribe%20tok",
    )
    return msgspec.structs.replace(base, **changes)


def parse(mailbox: Mailbox, n: int = 0) -> EmailMessage:
    content = mailbox.envelopes[n].original_content
    assert isinstance(content, bytes)
    parsed = email.message_from_bytes(content, policy=default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def test_starttls_auth_parts_and_headers(
    secure: Mailbox, certs: tuple[str, str], clock: FakeClock
) -> None:
    settings = SmtpSettings(
        host="127.0.0.1", port=secure.port, from_addr="Brand <news@brand.example>",
        username=USER, password=PASSWORD, ssl_context=client_context(certs[0]),
    )  # fmt: skip
    channel = SmtpChannel(settings, clock)
    try:
        first = channel.send(mail())
        second = channel.send(mail(key="msg_other"))  # over the same connection
    finally:
        channel.close()
    key = message("de-1", "email").key
    assert first.message_id == f"<{key}@brand.example>"
    assert first.detail == "250 2.0.0 Ok: queued as Q1" and second.detail.endswith("Q2")
    envelope = secure.envelopes[0]
    assert envelope.mail_from == "news@brand.example" and envelope.rcpt_tos == ["ada@example.com"]
    got = parse(secure)
    assert got["Message-ID"] == f"<{key}@brand.example>"
    assert got["Subject"] == "A toaster for five"
    assert got["Date"] == "Mon, 21 Sep 2026 14:13:20 +0000"
    assert got["List-Unsubscribe"] == (
        "<https://t.example/t/u/tok>, <mailto:unsub@brand.example?subject=unsubscribe%20tok>"
    )
    assert got["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert got.get_content_type() == "multipart/alternative"
    text = got.get_body(("plain",))
    html = got.get_body(("html",))
    assert text is not None and html is not None
    assert text.get_content().replace("\r\n", "\n") == "Hi Ada,\n\nToasts four at once.\n"
    assert "<p>Toasts four at once.</p>" in html.get_content()


def test_wrong_password_is_a_provider_fault(
    secure: Mailbox, certs: tuple[str, str], clock: FakeClock
) -> None:
    settings = SmtpSettings(
        host="127.0.0.1", port=secure.port, from_addr="news@brand.example",
        username=USER, password="wrong", ssl_context=client_context(certs[0]), timeout_s=5,
    )  # fmt: skip
    channel = SmtpChannel(settings, clock)
    try:
        with pytest.raises(RetryableSendError, match="AUTH: 535"):
            channel.send(mail())
    finally:
        channel.close()
    assert secure.envelopes == []


def test_untrusted_certificate_is_refused(secure: Mailbox, clock: FakeClock) -> None:
    settings = SmtpSettings(host="127.0.0.1", port=secure.port, from_addr="n@brand.example")
    channel = SmtpChannel(settings, clock)
    try:
        with pytest.raises(RetryableSendError, match="CERTIFICATE_VERIFY_FAILED"):
            channel.send(mail())
    finally:
        channel.close()


def test_refuses_a_server_without_starttls(clock: FakeClock) -> None:
    with smtp_server() as plain:
        settings = SmtpSettings(host="127.0.0.1", port=plain.port, from_addr="n@brand.example")
        channel = SmtpChannel(settings, clock)
        try:
            with pytest.raises(RetryableSendError, match="does not offer STARTTLS"):
                channel.send(mail())
        finally:
            channel.close()
        assert plain.envelopes == []


def test_recipient_refusals_and_reconnect(clock: FakeClock) -> None:
    with smtp_server() as plain:
        plain.refuse = {
            "gone@example.com": "550 5.1.1 no such user",
            "busy@example.com": "451 4.3.0 try later",
        }
        settings = SmtpSettings(host="127.0.0.1", port=plain.port, from_addr="n@brand.example",
                                starttls=False)  # fmt: skip
        channel = SmtpChannel(settings, clock)
        try:
            with pytest.raises(PermanentSendError, match="RCPT TO: 550 5.1.1 no such user"):
                channel.send(mail("gone@example.com"))
            with pytest.raises(RetryableSendError, match="RCPT TO: 451"):
                channel.send(mail("busy@example.com"))
            assert channel._smtp is not None
            channel._smtp.close()  # as if the server dropped an idle connection
            assert channel.send(mail()).detail.endswith("Q1")
            with pytest.raises(PermanentSendError, match="bad message"):
                channel.send(mail("a@example.com\r\nBcc: victim@example.com"))
        finally:
            channel.close()
        assert [e.rcpt_tos for e in plain.envelopes] == [["ada@example.com"]]


def test_implicit_tls(certs: tuple[str, str], clock: FakeClock) -> None:
    with smtp_server(implicit=server_context(*certs)) as smtps:
        settings = SmtpSettings(
            host="127.0.0.1", port=smtps.port, from_addr="n@brand.example", starttls=False,
            implicit_tls=True, ssl_context=client_context(certs[0]),
        )  # fmt: skip
        channel = SmtpChannel(settings, clock)
        try:
            channel.send(mail())
        finally:
            channel.close()
        assert len(smtps.envelopes) == 1


def test_connection_refused_is_retryable(clock: FakeClock) -> None:
    from tests.ports import free_port

    settings = SmtpSettings(host="127.0.0.1", port=free_port(), from_addr="n@brand.example")
    channel = SmtpChannel(settings, clock)
    with pytest.raises(RetryableSendError, match="ConnectionRefusedError") as caught:
        channel.send(mail())
    assert not caught.value.maybe_sent
    channel.close()


def test_settings_checks() -> None:
    with pytest.raises(ValueError, match="not both"):
        SmtpSettings(host="h", from_addr="a@b", implicit_tls=True)
    with pytest.raises(ValueError, match="username and password"):
        SmtpSettings(host="h", from_addr="a@b", username="u")
    with pytest.raises(ValueError, match="not an email"):
        SmtpSettings(host="h", from_addr="nobody")
