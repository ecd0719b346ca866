"""What the outbox stores and a channel sends: one rendered message, and what came back."""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec


class OutboundMessage(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=True):
    """A message rendered and addressed, ready for a channel adapter.

    ``to`` is the address in the channel's own terms: an email address, an E.164
    phone number, a Web Push subscription as JSON, a device id for in-app, the
    customer id for a webhook. ``data`` carries ids a receiver may want (offer,
    moment) and goes out in webhook and in-app payloads.
    """

    key: str  # the idempotency key: one per decision and channel
    decision_id: str
    customer_id: str
    channel: str  # the playbook's channel name
    kind: str  # the channel kind: email, sms, web_push, in_app, webhook
    to: str
    text: str
    subject: str | None = None
    title: str | None = None
    html: str | None = None
    url: str | None = None  # the tracked link the message points to
    unsubscribe_url: str | None = None
    unsubscribe_mailto: str | None = None
    device: str | None = None
    locale: str | None = None
    data: dict[str, Any] = {}


class SendResult(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=True):
    """A provider accepted the message; ``message_id`` is its id for it."""

    provider: str
    message_id: str
    detail: str = ""


def idempotency_key(decision_id: str, channel: str) -> str:
    """The one key of a send: a decision reaches a channel at most once, on replay too.

    >>> idempotency_key("de-1", "email") == idempotency_key("de-1", "email")
    True
    >>> idempotency_key("de-1", "email") != idempotency_key("de-1", "sms")
    True
    """
    digest = hashlib.blake2b(digest_size=16)
    digest.update(decision_id.encode())
    digest.update(b"\x00")
    digest.update(channel.encode())
    return "msg_" + digest.hexdigest()


def encode(message: OutboundMessage) -> bytes:
    return msgspec.json.encode(message)


def decode(raw: bytes | str) -> OutboundMessage:
    return msgspec.json.decode(raw, type=OutboundMessage)
