"""Delivery's Protocols; nothing else lives here."""

from __future__ import annotations

from collections.abc import Collection
from contextlib import AbstractContextManager
from typing import Protocol

from momently.deliver.message import OutboundMessage, SendResult
from momently.deliver.records import Entry, State


class Channel(Protocol):
    """A provider that sends one message, or raises a classified ``SendError``.

    ``name`` identifies the provider (for rate limits, health and the record of
    who sent what); ``dedupes`` says whether the provider itself drops a second
    send with the same idempotency key, which decides what the outbox does
    after a crash left a send's outcome unknown.
    """

    name: str
    dedupes: bool

    def send(self, message: OutboundMessage) -> SendResult:
        """Send, returning the provider's id; raise RetryableSendError/PermanentSendError."""
        ...

    def close(self) -> None: ...


class OutboxStore(Protocol):
    """Where outbox entries live durably; every change is one atomic step.

    ``put`` is idempotent on the entry's key. ``claim`` moves due ``pending``
    entries, and ``claimed`` ones whose lease ran out, to ``claimed`` with a new
    lease, and returns them. ``release`` (back to pending, for a retry or a
    deferral) and ``finish`` (to sent, dead or cancelled) succeed only for the
    claim the caller holds, named by its ``claims`` count.
    """

    def batch(self) -> AbstractContextManager[None]:
        """Writes made inside share one durable commit (many sends, one fsync)."""
        ...

    def put(self, entry: Entry) -> tuple[Entry, bool]:
        """Store ``entry`` unless its key exists; return what is stored, and if it is new."""
        ...

    def get(self, key: str) -> Entry | None: ...

    def claim(
        self,
        *,
        now_ms: int,
        lease_ms: int,
        limit: int,
        worker: str,
        channels: Collection[str] | None = None,
    ) -> list[Entry]: ...

    def release(
        self, key: str, claims: int, *, due_ms: int, attempts: int, reason: str, now_ms: int
    ) -> bool: ...

    def finish(
        self,
        key: str,
        claims: int,
        *,
        state: State,
        now_ms: int,
        reason: str = "",
        provider: str = "",
        provider_message_id: str = "",
    ) -> bool: ...

    def cancel(
        self,
        *,
        now_ms: int,
        reason: str,
        decision_id: str | None = None,
        customer_id: str | None = None,
    ) -> list[Entry]:
        """Cancel pending entries (and claims that ran out) of a decision or customer."""
        ...

    def entries(
        self,
        *,
        state: State | None = None,
        customer_id: str | None = None,
        decision_id: str | None = None,
        limit: int = 100,
    ) -> list[Entry]: ...

    def counts(self) -> dict[str, int]: ...

    def next_due_ms(self, channels: Collection[str] | None = None) -> int | None:
        """The earliest ``due_ms`` of a live entry: when a worker has work next."""
        ...

    def erase(self, customer_ids: Collection[str]) -> int:
        """Privacy: delete every entry of these customers, whatever its state, and scrub
        the freed bytes from the store's files; returns how many went."""
        ...

    def close(self) -> None: ...
