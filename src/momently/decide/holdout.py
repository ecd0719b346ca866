"""Holdouts: a stable share of customers gets decisions logged but not sent.

Assignment is a hash of the customer id and a salt (the offer id for per-offer
holdouts), so it never changes between runs, processes or replays, and the
global control group is independent of every offer's.

>>> in_holdout("c-1", 0.0, "global")
False
>>> in_holdout("c-1", 0.5, "global") == in_holdout("c-1", 0.5, "global")
True
"""

from __future__ import annotations

import functools
import hashlib


@functools.lru_cache(maxsize=8192)
def bucket(customer_id: str, salt: str) -> float:
    """A uniform number in [0, 1) fixed for this customer and salt."""
    digest = hashlib.blake2b(f"{salt}\x00{customer_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def in_holdout(customer_id: str, share: float, salt: str) -> bool:
    """Whether the customer is in the held-out ``share`` for ``salt``."""
    return share > 0 and bucket(customer_id, salt) < share
