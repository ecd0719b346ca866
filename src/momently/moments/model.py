"""The moment: a short window in which a customer needs something now.

Every moment has a kind, a confidence and an expiry; it is fleeting.
"""

from __future__ import annotations

import hashlib
from typing import Any, Final, Literal

import msgspec

MomentKind = Literal["know", "go", "do", "buy", "friction", "context"]
MOMENT_KINDS: Final[tuple[MomentKind, ...]] = ("know", "go", "do", "buy", "friction", "context")


class Moment(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=True, rename="camel"):
    """One detected moment.

    ``trigger`` is the messageId of the event that caused it, or for a moment
    fired by time (an absence running out) or by a world event, a key naming
    that cause (``timer:…``, ``world:…``). ``context`` is a snapshot of where
    the customer was (place, device, journey stage); ``details`` holds what the
    detector found (the query and category, the sentiment score, …).
    """

    moment_id: str
    customer_id: str
    kind: MomentKind
    name: str
    confidence: float
    at_ms: int
    expires_ms: int
    trigger: str
    source: str  # the definition or detector that produced it
    context: dict[str, Any] = {}
    details: dict[str, Any] = {}


def moment_id(customer_id: str, name: str, trigger: str) -> str:
    """A deterministic id, so replaying the log yields the same moments.

    >>> moment_id("c1", "cart-abandoned", "m-1") == moment_id("c1", "cart-abandoned", "m-1")
    True
    """
    digest = hashlib.blake2b(digest_size=12)
    for part in (customer_id, name, trigger):
        digest.update(part.encode())
        digest.update(b"\x00")
    return "mo-" + digest.hexdigest()
