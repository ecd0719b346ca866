"""Exponentially decayed counters: the smooth, O(1)-state analogue of a sliding window.

A count with time constant ``tau`` is the sum of ``exp(-(t - t_i) / tau)``
over past events ``t_i``. It needs one float per window instead of a list of
times, and it is the same whatever order the events arrive in: an event older
than the counter's clock is added already decayed.

>>> values = [0.0, 0.0]
>>> at = bump(values, 0, 0, (1000.0, 2000.0), 0)
>>> at = bump(values, at, 1000, (1000.0, 2000.0), 0)
>>> [round(v, 3) for v in read(values, at, 1000, (1000.0, 2000.0))]
[1.368, 1.607]
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence


def advance(values: list[float], at: int, ts: int, taus: Sequence[float]) -> int:
    """Decay ``values`` (laid out as rows of ``len(taus)``) from ``at`` to ``ts``, in place.

    Returns the counters' new time: ``ts`` when it is later, else ``at``.
    """
    if ts <= at:
        return at
    dt = ts - at
    width = len(taus)
    factors = [math.exp(-dt / tau) for tau in taus] * (len(values) // width + 1)
    values[:] = map(operator.mul, values, factors)  # stops at the end of values
    return ts


def bump(
    values: list[float], at: int, ts: int, taus: Sequence[float], row: int, w: float = 1.0
) -> int:
    """Count one event at ``ts`` in row ``row``; returns the counters' new time."""
    width = len(taus)
    if len(values) < (row + 1) * width:
        values.extend([0.0] * ((row + 1) * width - len(values)))
    at = advance(values, at, ts, taus)
    base = row * width
    if ts >= at:
        for j in range(base, base + width):
            values[j] += w
    else:
        for j, tau in enumerate(taus):
            values[base + j] += w * math.exp(-(at - ts) / tau)
    return at


def read(values: Sequence[float], at: int, now: int, taus: Sequence[float]) -> list[float]:
    """The counters as they stand at ``now`` (never later than they are when ``now < at``)."""
    if now <= at:
        return list(values)
    factors = [math.exp(-(now - at) / tau) for tau in taus]
    width = len(taus)
    return [v * factors[i % width] for i, v in enumerate(values)]
