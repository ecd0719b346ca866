"""Retry backoff, provider rate limits and provider health; all on the injected clock."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from momently.clock import Clock


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter drawn from the send's key, so runs repeat exactly.

    The n-th retry waits ``min(cap, base * 2**(n-1))``, of which a ``jitter`` share
    is scaled by a number in [0, 1) hashed from the key and n.

    >>> policy = RetryPolicy(base_ms=1_000, jitter=0.0)
    >>> [policy.delay_ms("k", n) for n in (1, 2, 3)]
    [1000, 2000, 4000]
    >>> 8_000 <= RetryPolicy(base_ms=1_000).delay_ms("k", 5) < 16_000
    True
    """

    max_attempts: int = 8
    base_ms: int = 1_000
    cap_ms: int = 3_600_000
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.base_ms < 1 or self.cap_ms < self.base_ms:
            raise ValueError("need max_attempts >= 1 and 1 <= base_ms <= cap_ms")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError("jitter is a share between 0 and 1")

    def delay_ms(self, key: str, attempt: int) -> int:
        """How long to wait after the ``attempt``-th failed attempt (1-based)."""
        full = min(self.cap_ms, self.base_ms * 2 ** min(max(attempt - 1, 0), 40))
        digest = hashlib.blake2b(f"{key}\x00{attempt}".encode(), digest_size=8).digest()
        draw = int.from_bytes(digest, "big") / 2**64
        return int(full * (1.0 - self.jitter) + full * self.jitter * draw)


@dataclass(frozen=True)
class RateLimit:
    """At most ``per_second`` sends a second on average, in bursts of up to ``burst``."""

    per_second: float
    burst: int = 1

    def __post_init__(self) -> None:
        if self.per_second <= 0 or self.burst < 1:
            raise ValueError("a rate limit needs per_second > 0 and burst >= 1")


class TokenBucket:
    """A token bucket on the injected clock.

    >>> from momently.clock import FakeClock
    >>> clock = FakeClock()
    >>> bucket = TokenBucket(RateLimit(per_second=2, burst=1), clock)
    >>> bucket.take(), bucket.take()
    (0, 500)
    >>> clock.advance(500); bucket.take()
    0
    """

    def __init__(self, limit: RateLimit, clock: Clock) -> None:
        self.limit = limit
        self._clock = clock
        self._tokens = float(limit.burst)
        self._at = clock.now_ms()

    def take(self) -> int:
        """Take a token: 0 if one was there, else the ms until one will be (none taken)."""
        now = self._clock.now_ms()
        elapsed = max(0, now - self._at)
        self._tokens = min(
            float(self.limit.burst), self._tokens + elapsed * self.limit.per_second / 1000
        )
        self._at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0
        missing = 1.0 - self._tokens
        return max(1, int(-(-missing * 1000 // self.limit.per_second)))


@dataclass
class _Record:
    failures: int = 0
    open_until: int = 0


@dataclass
class Health:
    """A circuit breaker per provider: after ``threshold`` failures in a row a provider
    is failing for ``cooldown_ms``; then one trial send decides (a failure reopens it).
    """

    threshold: int = 3
    cooldown_ms: int = 30_000
    _records: dict[str, _Record] = field(default_factory=dict)

    def failing(self, provider: str, now_ms: int) -> bool:
        record = self._records.get(provider)
        return record is not None and now_ms < record.open_until

    def open_until(self, provider: str) -> int:
        record = self._records.get(provider)
        return record.open_until if record is not None else 0

    def failed(self, provider: str, now_ms: int) -> None:
        record = self._records.setdefault(provider, _Record())
        record.failures += 1
        if record.failures >= self.threshold:
            record.open_until = now_ms + self.cooldown_ms

    def succeeded(self, provider: str) -> None:
        self._records.pop(provider, None)
