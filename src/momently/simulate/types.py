"""The simulator's aliases and the policy protocol."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from momently.simulate.respond import Send

Message = dict[str, Any]
"""One Segment message in its wire shape (read-only: parts are shared between messages)."""


class Policy(Protocol):
    """Decides what to send, seeing every event in time order and a regular tick.

    ``on_event`` may answer with sends due now or later (``send_at``);
    ``on_tick`` is called every tick of simulated time. A send is delivered
    at its ``send_at`` unless its customer is held out, has opted out of the
    channel, or has no address on it.

    A policy may also have ``wants``, a frozenset of the event names it reads
    (``identify``, ``page`` and ``screen`` name those calls): the harness then
    builds and shows it only those, and the rest still happen unseen — far
    faster for a policy that reads little. Without it, it sees every event.
    And it may have ``still_wanted(send) -> bool``, asked when a send falls
    due: False withdraws it (a purchase or an opt-out cancelled it meanwhile).
    And ``on_delivered(send, response)``, told what became of each send handed to a
    treated customer (delivered, or why not) — what a real sender learns from its
    providers.
    """

    name: str

    def on_event(self, event: Message) -> Sequence[Send]: ...

    def on_tick(self, now_ms: int) -> Sequence[Send]: ...
