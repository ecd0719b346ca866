"""Sliding time windows: count, sum and distinct count over the last ``over`` milliseconds.

A :class:`WindowSpec` is what the playbook says under a moment's ``window:``; a
:class:`SlidingWindow` is its runtime logic, a set of pure state transitions over a small
:class:`WindowState` that the caller keeps per customer (quix ``BaseAggregator`` shape).

Boundaries
    An item stamped ``ts`` is inside the window at ``now`` iff ``now - over < ts <= now``: a
    30-minute window queried at 12:30:00.000 holds 12:00:00.001 to 12:30:00.000 inclusive.

Event time
    ``agg`` is driven by event time only. The state remembers the newest event time it has
    seen (the watermark). Items at or before ``watermark - over`` can never be inside a window
    queried at ``now >= watermark``, so they are forgotten, and a late event that old is
    dropped on arrival. A late event newer than that is inserted in time order and counted
    exactly. Queries are meant for ``now >= watermark`` (the clock does not run backwards);
    for an earlier ``now`` the answer is computed from what is retained, which may miss items
    already forgotten.

The bound
    At most ``max_items`` items (for ``distinct``: keys, each with the time it was last seen)
    are remembered. When one more arrives the oldest is forgotten (by time, ties by arrival).
    Every forgotten item is then older than every retained one, so if a forgotten item is still
    inside the window, all retained ones are too. Hence, exactly:

    - ``count`` is ``min(true count, max_items)``;
    - ``distinct`` is ``min(true distinct count, max_items)``;
    - ``sum`` is the sum of the newest ``max_items`` items in the window: exact while the
      window holds at most ``max_items`` items, otherwise a lower bound for non-negative values.

    :class:`WindowSpec` requires ``value < max_items`` for count and distinct, which makes
    :meth:`SlidingWindow.satisfied` exact for every operator. (An "overflow bucket" folding
    the oldest items was considered and rejected: once the window's edge falls inside the
    bucket's time span its contribution is unknowable, and this rule is exact in more cases
    and simpler to state.)

>>> w = SlidingWindow(WindowSpec(over="30m", value=2))
>>> s = w.agg(w.agg(w.initialize(), 0, None), 60_000, None)
>>> w.result(s, 60_000), w.satisfied(s, 60_000), w.next_change_ms(s, 60_000)
(2.0, True, 1800000)
>>> w.result(s, 1_800_000)
1.0
"""

from __future__ import annotations

import math
import operator
from bisect import bisect_right
from collections.abc import Callable
from typing import Final, Literal

import msgspec
from pydantic import Field, model_validator

from momently.moments.spec import Duration, SpecModel

Op = Literal[">=", ">", "<=", "<", "=="]
_OPS: Final[dict[str, Callable[[float, float], bool]]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
    "==": operator.eq,
}


class WindowSpec(SpecModel):
    """A playbook window: ``count``/``sum``/``distinct`` over ``over``, compared with ``value``."""

    agg: Literal["count", "sum", "distinct"] = "count"
    over: Duration
    field: str | None = Field(default=None, min_length=1)
    op: Op = ">="
    value: float = Field(default=1, allow_inf_nan=False)
    max_items: int = Field(default=256, ge=1, le=10_000)

    @model_validator(mode="after")
    def _check(self) -> WindowSpec:
        if self.over <= 0:
            raise ValueError("a window's `over` must be longer than 0")
        if self.agg == "count" and self.field is not None:
            raise ValueError("`count` counts events; `field` is only for `sum` and `distinct`")
        if self.agg != "count" and self.field is None:
            raise ValueError(f"`{self.agg}` needs a `field`, e.g. properties.revenue")
        if self.agg != "sum" and self.value >= self.max_items:
            # below max_items the bounded state decides the threshold exactly (module docs)
            raise ValueError(
                f"a {self.agg} threshold ({self.value:g}) must be below "
                f"max_items ({self.max_items})"
            )
        return self


class WindowState(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """What one window remembers for one customer; sorted by time, oldest first."""

    newest: int | None = None  # the watermark: the newest event time seen
    ts: tuple[int, ...] = ()  # item times (distinct: the time each key was last seen)
    vals: tuple[float, ...] = ()  # sum only: the value of each item
    keys: tuple[str, ...] = ()  # distinct only: the key of each item


def _number(value: object) -> float | None:
    """The finite number a sum adds, or None for anything else (a missing field, text, NaN)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _key(value: object) -> str | None:
    """The key a distinct count compares: 7, 7.0 and "7" are one key; None is no key."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


class SlidingWindow:
    """Runtime logic of one :class:`WindowSpec`: pure transitions over :class:`WindowState`."""

    def __init__(self, spec: WindowSpec) -> None:
        self.spec = spec
        # read once: these are on the per-event path of every window of every customer
        self._kind, self._over, self._max = spec.agg, spec.over, spec.max_items
        self._test, self._value = _OPS[spec.op], spec.value

    def initialize(self) -> WindowState:
        """The state of a customer with no events."""
        return WindowState()

    def agg(self, state: WindowState, ts_ms: int, value: float | str | None = None) -> WindowState:
        """The state after one event at ``ts_ms``; ``state`` is returned unchanged if it is ignored.

        ``value`` is the number for ``sum`` and the key for ``distinct`` (ignored by ``count``);
        an event whose value is missing or not a finite number (sum) is ignored, so the caller
        can count it as skipped by testing ``new is state``.
        """
        kind = self._kind
        number = key = None
        if kind == "sum":
            number = _number(value)
            if number is None:
                return state
        elif kind == "distinct":
            key = _key(value)
            if key is None:
                return state
        newest = ts_ms if state.newest is None else max(state.newest, ts_ms)
        cutoff = newest - self._over
        if ts_ms <= cutoff:
            return state  # too late to be inside any window from now on
        ts, vals, keys = state.ts, state.vals, state.keys
        if key is not None and key in keys:
            at = keys.index(key)
            if ts[at] >= ts_ms:
                return state  # already seen at this time or later; watermark cannot move
            ts, keys = ts[:at] + ts[at + 1 :], keys[:at] + keys[at + 1 :]
        at = bisect_right(ts, ts_ms)  # after equal times: ties keep arrival order
        ts = (*ts[:at], ts_ms, *ts[at:])
        if number is not None:
            vals = (*vals[:at], number, *vals[at:])
        if key is not None:
            keys = (*keys[:at], key, *keys[at:])
        first = max(bisect_right(ts, cutoff), len(ts) - self._max)
        if first > 0:
            ts, vals, keys = ts[first:], vals[first:], keys[first:]
        return WindowState(newest, ts, vals, keys)

    def result(self, state: WindowState, now_ms: int) -> float:
        """The aggregate over the items in ``(now - over, now]``."""
        lo = bisect_right(state.ts, now_ms - self._over)
        hi = bisect_right(state.ts, now_ms)
        if self._kind != "sum":
            return float(hi - lo)
        try:
            return math.fsum(state.vals[lo:hi])  # exactly rounded: independent of arrival order
        except OverflowError:
            return sum(state.vals[lo:hi])  # the true sum is beyond a float: +-inf

    def satisfied(self, state: WindowState, now_ms: int) -> bool:
        """Whether the aggregate at ``now_ms`` meets the spec's ``op value``."""
        return self._test(self.result(state, now_ms), self._value)

    def next_change_ms(self, state: WindowState, now_ms: int) -> int | None:
        """The earliest time after ``now_ms`` at which the result can change with no new event.

        That is when the oldest item inside the window leaves it (or, for a ``now`` before
        the watermark, when a retained later item enters). The result is constant from
        ``now_ms`` until then; ``None`` when nothing is retained.
        """
        ts, over = state.ts, self._over
        lo = bisect_right(ts, now_ms - over)
        hi = bisect_right(ts, now_ms)
        times = []
        if lo < hi:
            times.append(ts[lo] + over)
        if hi < len(ts):
            times.append(ts[hi])
        return min(times) if times else None
