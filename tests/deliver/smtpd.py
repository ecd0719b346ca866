"""A real SMTP server on loopback (aiosmtpd), optionally with STARTTLS, AUTH, implicit TLS."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from tests.ports import free_port

USER, PASSWORD = "momently", "s3cret"


@dataclass
class Mailbox:
    """Every accepted envelope; recipients in ``refuse`` get the given reply."""

    envelopes: list[Envelope] = field(default_factory=list)
    refuse: dict[str, str] = field(default_factory=dict)
    host: str = "127.0.0.1"
    port: int = 0

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.envelopes.append(envelope)
        return f"250 2.0.0 Ok: queued as Q{len(self.envelopes)}"


def authenticate(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        USER.encode(),
        PASSWORD.encode(),
    )
    return AuthResult(success=ok, handled=False)  # let aiosmtpd answer 535 itself


def server_context(cert: str, key: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


@contextmanager
def smtp_server(
    *,
    tls: ssl.SSLContext | None = None,
    implicit: ssl.SSLContext | None = None,
    auth: bool = False,
) -> Iterator[Mailbox]:
    """Start aiosmtpd on a free port; STARTTLS required when ``tls`` is given."""
    mailbox = Mailbox()
    kwargs: dict[str, Any] = {}
    if tls is not None:
        kwargs.update(tls_context=tls, require_starttls=True)
    if auth:
        kwargs.update(authenticator=authenticate, auth_required=True, auth_require_tls=True)
    mailbox.port = free_port()
    controller = Controller(
        mailbox, hostname="127.0.0.1", port=mailbox.port, ssl_context=implicit, **kwargs
    )
    controller.start()
    try:
        yield mailbox
    finally:
        controller.stop()
