"""The token bucket: never more than ``burst + rate × elapsed`` requests let through in any
stretch of time, a refused request's wait is exactly when the next one passes, and keys
are independent."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from momently.auth.ratelimit import RateLimiter
from momently.clock import FakeClock


@given(
    rate=st.floats(min_value=0.1, max_value=1000),
    burst=st.integers(min_value=1, max_value=50),
    gaps=st.lists(st.integers(min_value=0, max_value=2_000), min_size=1, max_size=200),
)
def test_never_more_than_the_bucket_allows(rate: float, burst: int, gaps: list[int]) -> None:
    clock = FakeClock(1_000)
    limits = RateLimiter(clock)
    allowed: list[int] = []
    for gap in gaps:
        clock.advance(gap)
        wait = limits.take("k", rate=rate, burst=burst)
        assert wait >= 0
        if wait == 0:
            allowed.append(clock.now_ms())
    for i, start in enumerate(allowed):  # every window that starts at an allowed request
        for j in range(i, len(allowed)):
            elapsed_s = (allowed[j] - start) / 1000
            assert j - i + 1 <= burst + rate * elapsed_s + 1e-6


@given(
    rate=st.floats(min_value=0.1, max_value=100),
    burst=st.integers(min_value=1, max_value=5),
)
def test_the_wait_given_is_the_wait_needed(rate: float, burst: int) -> None:
    clock = FakeClock(0)
    limits = RateLimiter(clock)
    for _ in range(burst):
        assert limits.take("k", rate=rate, burst=burst) == 0
    wait = limits.take("k", rate=rate, burst=burst)
    assert wait > 0
    assert limits.take("other", rate=rate, burst=burst) == 0  # another key has its own bucket
    clock.advance(max(0, math.floor(wait * 1000) - 1))
    assert limits.take("k", rate=rate, burst=burst) > 0  # just before: still waiting
    clock.advance(3)
    assert limits.take("k", rate=rate, burst=burst) == 0
