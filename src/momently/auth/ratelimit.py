"""Per-key rate limits: one token bucket per key, time from an injected clock.

A bucket holds up to ``burst`` tokens and refills at ``rate`` tokens a second;
each request takes one. An empty bucket answers how long until the next token,
which becomes the ``Retry-After`` of a 429.

>>> from momently.clock import FakeClock
>>> clock = FakeClock(0)
>>> limits = RateLimiter(clock)
>>> [limits.take("k", rate=1.0, burst=2) for _ in range(3)]
[0.0, 0.0, 1.0]
>>> clock.advance(1000)
>>> limits.take("k", rate=1.0, burst=2)
0.0
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from momently.clock import Clock


@dataclass
class _Bucket:
    tokens: float
    at_ms: int


class RateLimiter:
    """Token buckets by key id; thread-safe. Buckets exist only for known keys."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def take(self, key: str, *, rate: float, burst: int) -> float:
        """Take a token for ``key``: 0.0 if allowed, else the seconds until one is free."""
        now = self._clock.now_ms()
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = _Bucket(float(burst), now)
            elapsed = max(0, now - bucket.at_ms)  # a clock set back refills nothing
            bucket.tokens = min(float(burst), bucket.tokens + elapsed * rate / 1000.0)
            bucket.at_ms = max(bucket.at_ms, now)
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return 0.0
            return (1.0 - bucket.tokens) / rate
