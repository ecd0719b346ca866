"""Email over SMTP: STARTTLS or implicit TLS, AUTH, text and HTML parts, RFC 8058 headers.

``Message-ID`` is ``<{idempotency key}@{domain}>``: the same send always has
the same id. ``List-Unsubscribe`` carries the https one-click URL (and a
mailto when given) and ``List-Unsubscribe-Post: List-Unsubscribe=One-Click``
(RFC 8058; the relay's DKIM signature must cover both headers). One
connection is kept and reused; it is reopened when the server dropped it.
"""

from __future__ import annotations

import smtplib
import ssl
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime

from momently.clock import Clock
from momently.deliver.errors import PermanentSendError, RetryableSendError, SendError
from momently.deliver.message import OutboundMessage, SendResult


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    from_addr: str
    port: int = 587
    starttls: bool = True  # upgrade with STARTTLS, and refuse a server that cannot
    implicit_tls: bool = False  # SMTPS (port 465): TLS from the first byte
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    domain: str | None = None  # of the Message-ID; the sender's domain if not given
    timeout_s: float = 30.0
    ssl_context: ssl.SSLContext | None = field(default=None, repr=False)
    name: str = "smtp"

    def __post_init__(self) -> None:
        if self.starttls and self.implicit_tls:
            raise ValueError("choose STARTTLS or implicit TLS, not both")
        if (self.username is None) != (self.password is None):
            raise ValueError("give both username and password, or neither")
        if "@" not in self.from_addr:
            raise ValueError(f"not an email address: {self.from_addr!r}")

    @property
    def message_domain(self) -> str:
        return self.domain or self.from_addr.rsplit("@", 1)[1].strip(">")


def build(message: OutboundMessage, settings: SmtpSettings, now_ms: int) -> EmailMessage:
    """The MIME message: text part, HTML alternative when rendered, RFC 8058 headers."""
    mail = EmailMessage()
    mail["From"] = settings.from_addr
    mail["To"] = message.to
    mail["Subject"] = message.subject or message.title or ""
    mail["Date"] = format_datetime(datetime.fromtimestamp(now_ms / 1000, UTC))
    mail["Message-ID"] = f"<{message.key}@{settings.message_domain}>"
    targets = [f"<{u}>" for u in (message.unsubscribe_url, message.unsubscribe_mailto) if u]
    if targets:
        mail["List-Unsubscribe"] = ", ".join(targets)
    if message.unsubscribe_url:
        mail["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    mail.set_content(message.text)
    if message.html:
        mail.add_alternative(message.html, subtype="html")
    return mail


def _reply(code: int, reply: bytes | str) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
    return f"{code} {text}".strip()


def _refusal(stage: str, code: int, reply: bytes | str) -> SendError:
    reason = f"{stage}: {_reply(code, reply)}"
    if 500 <= code < 600 and stage != "MAIL FROM":
        return PermanentSendError(reason)
    # 4xx is transient by definition; a refused sender is our set-up, not the message.
    return RetryableSendError(reason)


def _login(smtp: smtplib.SMTP, username: str, password: str) -> None:
    """AUTH with one mechanism: trying the others after a refusal only hides the reason."""
    offered = (smtp.esmtp_features.get("auth") or "").upper().split()
    mechanism = next((m for m in ("PLAIN", "LOGIN") if m in offered), None)
    if mechanism is None:
        raise RetryableSendError(f"server offers no AUTH PLAIN or LOGIN: {offered}")
    smtp.user, smtp.password = username, password
    authobject = smtp.auth_plain if mechanism == "PLAIN" else smtp.auth_login
    smtp.auth(mechanism, authobject, initial_response_ok=True)


class SmtpChannel:
    dedupes = False  # relays do not dedupe on Message-ID; receivers may

    def __init__(self, settings: SmtpSettings, clock: Clock) -> None:
        self.settings = settings
        self.name = settings.name
        self._clock = clock
        self._smtp: smtplib.SMTP | None = None
        self._lock = threading.Lock()

    def _context(self) -> ssl.SSLContext:
        return self.settings.ssl_context or ssl.create_default_context()

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        smtp: smtplib.SMTP
        if s.implicit_tls:
            smtp = smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout_s, context=self._context())
        else:
            smtp = smtplib.SMTP(s.host, s.port, timeout=s.timeout_s)
        try:
            smtp.ehlo()
            if s.starttls:
                if not smtp.has_extn("starttls"):
                    raise RetryableSendError("server does not offer STARTTLS")
                smtp.starttls(context=self._context())
                smtp.ehlo()
            if s.username is not None and s.password is not None:
                _login(smtp, s.username, s.password)
        except BaseException:
            smtp.close()
            raise
        return smtp

    def close(self) -> None:
        with self._lock:
            self._drop(polite=True)

    def _drop(self, *, polite: bool = False) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is None:
            return
        try:
            if polite:
                smtp.quit()
        except (smtplib.SMTPException, OSError):
            pass
        finally:
            smtp.close()

    def send(self, message: OutboundMessage) -> SendResult:
        try:
            mail = build(message, self.settings, self._clock.now_ms())
            raw = mail.as_bytes(policy=SMTP)
        except (ValueError, TypeError) as exc:  # an address or header that cannot be mailed
            raise PermanentSendError(f"bad message: {exc}") from exc
        with self._lock:
            try:
                return self._send(message, raw, str(mail["Message-ID"]))
            except SendError:
                raise
            except smtplib.SMTPAuthenticationError as exc:
                self._drop()
                raise RetryableSendError(f"AUTH: {_reply(exc.smtp_code, exc.smtp_error)}") from exc
            except (smtplib.SMTPException, ssl.SSLError, OSError) as exc:
                self._drop()
                raise RetryableSendError(f"connect: {type(exc).__name__}: {exc}") from exc

    def _send(self, message: OutboundMessage, raw: bytes, message_id: str) -> SendResult:
        fresh = self._smtp is None
        smtp = self._smtp = self._smtp or self._connect()
        options = ["SMTPUTF8"] if not (message.to + self.settings.from_addr).isascii() else []
        try:
            code, reply = smtp.mail(self.settings.from_addr, options)
        except (smtplib.SMTPServerDisconnected, OSError):
            self._drop()
            if fresh:
                raise
            return self._send(message, raw, message_id)  # the server closed an idle connection
        if code != 250:
            smtp.rset()
            raise _refusal("MAIL FROM", code, reply)
        code, reply = smtp.rcpt(message.to)
        if code not in (250, 251):
            smtp.rset()
            raise _refusal("RCPT TO", code, reply)
        try:
            code, reply = smtp.data(raw)
        except smtplib.SMTPDataError as exc:  # refused before the content went out
            smtp.rset()
            raise _refusal("DATA", exc.smtp_code, exc.smtp_error) from exc
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            self._drop()
            raise RetryableSendError(f"DATA: {type(exc).__name__}", maybe_sent=True) from exc
        if code != 250:
            raise _refusal("DATA", code, reply)
        return SendResult(provider=self.name, message_id=message_id, detail=_reply(code, reply))
