"""Which partition an event belongs to: a stable hash of its customer key.

The key is ``userId`` when the event has one, else ``anonymousId`` (every valid
event has one of them). A known user's events, from every device, land in one
partition in order; so do an anonymous visitor's. The hash is BLAKE2b, the same
in every process and every release (Python's ``hash`` is salted per process).

Identity across partitions: ``identify`` and ``alias`` carry the ``userId``, so
they go to the user's partition, and the merge of the anonymous id into the
user's profile happens there, for every event after the merge. What stays
behind is the visitor's history from before logging in: it was processed in
the anonymous id's partition, which keeps that profile and its moments. The
partitions do not exchange state (an exchange would need a cross-partition
transaction); the SDKs send ``userId`` on every event after ``identify``, so
what splits is the pre-login history only. Changing the partition count moves
customers between partitions, so it is fixed when the stream is created
(:data:`DEFAULT_PARTITIONS`, far more than workers will ever be).

>>> partition_of("user-42", 64) == partition_of("user-42", 64)
True
>>> 0 <= partition_of("anon-7", 64) < 64
True
"""

from __future__ import annotations

import hashlib
from typing import Final

from momently.events import Event

DEFAULT_PARTITIONS: Final = 64


def customer_key(event: Event) -> str:
    """The key an event is partitioned by: ``userId``, else ``anonymousId``."""
    if event.user_id is not None:
        return "u:" + event.user_id
    if event.anonymous_id is not None:
        return "a:" + event.anonymous_id
    raise ValueError(f"event {event.message_id} has neither userId nor anonymousId")


def partition_of(key: str, partitions: int) -> int:
    """The partition of a customer key, in ``range(partitions)``."""
    if partitions < 1:
        raise ValueError("partitions must be at least 1")
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % partitions


def subject(stream: str, partition: int | str) -> str:
    """The subject of a partition: ``momently.ev.<partition>`` for the stream MOMENTLY.

    >>> subject("MOMENTLY", 7)
    'momently.ev.7'
    """
    return f"{stream.lower()}.ev.{partition}"


def parse_partitions(spec: str, partitions: int) -> list[int]:
    """``"all"``, ``"0-15"`` or ``"0,3,8-11"`` as a sorted list of partitions.

    >>> parse_partitions("0,3,8-10", 64)
    [0, 3, 8, 9, 10]
    """
    if spec.strip() == "all":
        return list(range(partitions))
    found: set[int] = set()
    for part in spec.split(","):
        first, dash, last = part.strip().partition("-")
        try:
            low = int(first)
            high = int(last) if dash else low
        except ValueError:
            raise ValueError(f"bad partition range {part!r}: use N, N-M or all") from None
        if not 0 <= low <= high < partitions:
            raise ValueError(f"partitions {part!r} outside 0-{partitions - 1}")
        found.update(range(low, high + 1))
    return sorted(found)
