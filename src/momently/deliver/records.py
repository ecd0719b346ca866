"""The outbox entry: one send, its state, and the record of its attempts."""

from __future__ import annotations

from typing import Final, Literal

import msgspec

from momently.deliver.message import OutboundMessage

State = Literal["pending", "claimed", "sent", "dead", "cancelled"]
STATES: Final[tuple[State, ...]] = ("pending", "claimed", "sent", "dead", "cancelled")
LIVE: Final[tuple[State, ...]] = ("pending", "claimed")
DONE: Final[tuple[State, ...]] = ("sent", "dead", "cancelled")


class Entry(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=True):
    """One send in the outbox.

    ``due_ms`` is when a worker next looks at it: the send time while
    ``pending``, the end of the worker's lease while ``claimed`` (a crashed
    worker's claim runs out and the entry is claimed again). ``claims`` counts
    claims and fences updates: a worker may only finish the claim it holds.
    ``recovered`` is set on a claim that took over an expired one, whose send
    may or may not have happened.
    """

    key: str
    decision_id: str
    customer_id: str
    channel: str
    state: State
    due_ms: int
    created_ms: int
    updated_ms: int
    send_at_ms: int = 0
    expires_ms: int | None = None
    attempts: int = 0
    claims: int = 0
    worker: str = ""
    provider: str = ""
    provider_message_id: str = ""
    reason: str = ""
    recovered: bool = False
    message: OutboundMessage | None = None

    def to_json(self) -> dict[str, object]:
        """The entry as the admin API shows it."""
        shown: dict[str, object] = msgspec.to_builtins(self)
        shown.pop("recovered", None)
        return shown
