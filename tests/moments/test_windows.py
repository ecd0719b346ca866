"""Sliding windows agree with a brute-force recount over the event list, and stay small."""

from __future__ import annotations

import math
from typing import Any

import msgspec
import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from momently.moments.windows import SlidingWindow, WindowSpec, WindowState

T0 = 1_700_000_000_000  # a realistic epoch time in ms, so encoded sizes are honest
OPS = (">=", ">", "<=", "<", "==")


def feed(window: SlidingWindow, events: list[tuple[int, Any]]) -> WindowState:
    state = window.initialize()
    for ts, value in events:
        state = window.agg(state, ts, value)
    return state


def in_window(spec: WindowSpec, events: list[tuple[int, Any]], now: int) -> list[tuple[int, Any]]:
    """The events inside (now - over, now], oldest first; ties keep arrival order."""
    inside = [e for e in events if now - spec.over < e[0] <= now]
    return sorted(inside, key=lambda e: e[0])  # sorted() is stable


def brute(spec: WindowSpec, events: list[tuple[int, Any]], now: int) -> float:
    """The documented result, recounted from scratch: the newest max_items items in the window."""
    inside = in_window(spec, events, now)
    if spec.agg == "count":
        return float(min(len(inside), spec.max_items))
    if spec.agg == "distinct":
        return float(min(len({str(v) for _, v in inside}), spec.max_items))
    return math.fsum(v for _, v in inside[-spec.max_items :])


def true_value(spec: WindowSpec, events: list[tuple[int, Any]], now: int) -> float:
    """The unbounded aggregate, as if nothing were ever forgotten."""
    inside = in_window(spec, events, now)
    if spec.agg == "distinct":
        return float(len({str(v) for _, v in inside}))
    return float(len(inside))


@st.composite
def streams(draw: st.DrawFn, agg: str) -> tuple[WindowSpec, list[tuple[int, Any]], list[int]]:
    """A spec, a stream whose times jump forward and back (late and too-late events), queries."""
    over = draw(st.sampled_from([1, 3, 10, 1000]))
    max_items = draw(st.sampled_from([1, 2, 3, 5, 10_000]))
    value = draw(st.integers(0, max_items - 1)) if agg != "sum" else draw(st.integers(-5, 5))
    spec = WindowSpec(
        agg=agg,
        over=f"{over}ms",
        field=None if agg == "count" else "properties.x",
        op=draw(st.sampled_from(OPS)),
        value=value,
        max_items=max_items,
    )
    values: st.SearchStrategy[Any]
    if agg == "sum":
        values = st.integers(-100, 100) | st.floats(-1e6, 1e6, allow_nan=False)
    elif agg == "distinct":
        values = st.sampled_from(["a", "b", "c", "d", "e", "f"])
    else:
        values = st.none()
    jumps = draw(st.lists(st.integers(-over - 2, 2 * over), min_size=0, max_size=40))
    newest, events = T0, []
    for jump in jumps:
        ts = newest + jump
        newest = max(newest, ts)
        events.append((ts, draw(values)))
    # query offsets at or after each prefix's watermark
    queries = draw(
        st.lists(st.integers(0, 2 * over + 1), min_size=len(events), max_size=len(events))
    )
    return spec, events, queries


def check_stream(spec: WindowSpec, events: list[tuple[int, Any]], queries: list[int]) -> None:
    window = SlidingWindow(spec)
    state = window.initialize()
    newest = None
    for i, ((ts, value), offset) in enumerate(zip(events, queries, strict=True)):
        state = window.agg(state, ts, value)
        newest = ts if newest is None else max(newest, ts)
        seen = events[: i + 1]
        for now in (newest, newest + offset):
            assert window.result(state, now) == brute(spec, seen, now)
            if spec.agg != "sum":
                # below max_items the threshold is decided exactly, even past the bound
                expected = _OP[spec.op](true_value(spec, seen, now), spec.value)
                assert window.satisfied(state, now) == expected
        assert len(state.ts) <= spec.max_items
        assert list(state.ts) == sorted(state.ts)
    encoded = msgspec.msgpack.encode(state)
    assert msgspec.msgpack.decode(encoded, type=WindowState) == state
    assert msgspec.json.decode(msgspec.json.encode(state), type=WindowState) == state


_OP = {
    ">=": float.__ge__,
    ">": float.__gt__,
    "<=": float.__le__,
    "<": float.__lt__,
    "==": float.__eq__,
}


@settings(max_examples=300)
@given(streams("count"))
def test_count_equals_brute_force(
    case: tuple[WindowSpec, list[tuple[int, Any]], list[int]],
) -> None:
    check_stream(*case)


@settings(max_examples=300)
@given(streams("sum"))
def test_sum_equals_brute_force(case: tuple[WindowSpec, list[tuple[int, Any]], list[int]]) -> None:
    check_stream(*case)


@settings(max_examples=300)
@given(streams("distinct"))
def test_distinct_equals_brute_force(
    case: tuple[WindowSpec, list[tuple[int, Any]], list[int]],
) -> None:
    check_stream(*case)


@settings(max_examples=200)
@given(streams("count"), st.integers(0, 3000))
def test_result_is_constant_until_next_change(
    case: tuple[WindowSpec, list[tuple[int, Any]], list[int]], step: int
) -> None:
    spec, events, _ = case
    window = SlidingWindow(spec)
    state = feed(window, events)
    now = max((ts for ts, _ in events), default=T0)
    change = window.next_change_ms(state, now)
    if change is None:
        assert window.result(state, now) == window.result(state, now + step) == 0
        return
    assert change > now
    later = now + step % (change - now)
    assert window.result(state, later) == window.result(state, now)
    assert window.result(state, change) < window.result(state, now)


def test_boundaries_are_half_open() -> None:
    window = SlidingWindow(WindowSpec(over="30m"))
    state = window.agg(window.initialize(), T0, None)
    assert window.result(state, T0 - 1) == 0  # not yet happened
    assert window.result(state, T0) == 1
    assert window.result(state, T0 + 1_800_000 - 1) == 1
    assert window.result(state, T0 + 1_800_000) == 0  # now - over < ts fails
    assert window.next_change_ms(state, T0) == T0 + 1_800_000


def test_late_events_inside_the_window_count_and_older_ones_are_dropped() -> None:
    window = SlidingWindow(WindowSpec(over="10s", value=2))
    state = window.agg(window.initialize(), T0 + 20_000, None)
    late = window.agg(state, T0 + 10_001, None)
    assert window.result(late, T0 + 20_000) == 2
    assert list(late.ts) == [T0 + 10_001, T0 + 20_000]
    assert window.agg(late, T0 + 10_000, None) is late  # at watermark - over: never inside again


def test_count_past_the_bound_keeps_the_newest_and_decides_thresholds_exactly() -> None:
    window = SlidingWindow(WindowSpec(over="1h", op="<", value=3, max_items=4))
    state = feed(window, [(T0 + i, None) for i in range(10)])
    assert list(state.ts) == [T0 + 6, T0 + 7, T0 + 8, T0 + 9]
    assert window.result(state, T0 + 9) == 4  # min(10, max_items)
    assert not window.satisfied(state, T0 + 9)  # 10 < 3 is false, and so is 4 < 3


def test_sum_reads_numbers_and_ignores_the_rest() -> None:
    window = SlidingWindow(WindowSpec(agg="sum", over="1d", field="properties.revenue"))
    state = window.initialize()
    for value in ("12.5", 7, 0.5):
        state = window.agg(state, T0, value)
    for junk in (None, "n/a", math.nan, math.inf, True):
        assert window.agg(state, T0, junk) is state
    assert window.result(state, T0) == 20.0
    assert window.satisfied(state, T0)


def test_distinct_keeps_the_last_time_per_key() -> None:
    spec = WindowSpec(agg="distinct", over="10s", field="properties.sku", value=2)
    window = SlidingWindow(spec)
    state = feed(window, [(T0, 7), (T0 + 5_000, "7"), (T0 + 6_000, 7.0), (T0 + 7_000, "x")])
    assert state.keys == ("7", "x") and state.ts == (T0 + 6_000, T0 + 7_000)
    assert window.agg(state, T0 + 1_000, "7") is state  # an older sighting changes nothing
    assert window.result(state, T0 + 15_999) == 2
    assert window.result(state, T0 + 16_000) == 1
    assert window.agg(state, T0, None) is state


def test_distinct_past_the_bound_forgets_the_oldest_seen_key() -> None:
    window = SlidingWindow(WindowSpec(agg="distinct", over="1h", field="p.k", max_items=2))
    state = feed(window, [(T0, "a"), (T0 + 1, "b"), (T0 + 2, "a"), (T0 + 3, "c")])
    assert state.keys == ("a", "c")


def test_agg_is_pure() -> None:
    window = SlidingWindow(WindowSpec(agg="sum", over="1m", field="x"))
    before = window.agg(window.initialize(), T0, 5)
    after = window.agg(before, T0 + 1, 6)
    assert window.result(before, T0 + 1) == 5 and window.result(after, T0 + 1) == 11


@pytest.mark.parametrize(
    ("settings_", "message"),
    [
        ({"agg": "sum", "over": "1h"}, "needs a `field`"),
        ({"agg": "distinct", "over": "1h"}, "needs a `field`"),
        ({"over": "1h", "field": "x"}, "only for `sum` and `distinct`"),
        ({"over": 0}, "longer than 0"),
        ({"over": "1h", "value": 256}, "must be below max_items"),
        ({"over": "1h", "max_items": 0}, "greater than or equal to 1"),
        ({"over": "1h", "max_items": 10_001}, "less than or equal to 10000"),
        ({"over": "1h", "op": "!="}, "Input should be"),
        ({"over": "1h", "value": math.inf}, "finite"),
        ({"over": "1h", "overr": "1h"}, "Extra inputs are not permitted"),
        ({"over": "soon"}, "is not a duration"),
    ],
)
def test_bad_specs_say_why(settings_: dict[str, Any], message: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=message):
        WindowSpec(**settings_)


def test_spec_defaults_and_durations() -> None:
    spec = WindowSpec(over="30m")
    assert (spec.agg, spec.over, spec.op, spec.value, spec.max_items) == (
        "count",
        1_800_000,
        ">=",
        1,
        256,
    )
    assert WindowSpec(agg="sum", over="24h", field="properties.revenue", value=1e6).value == 1e6


@pytest.mark.parametrize(
    ("agg", "field", "bound"),
    [
        ("count", None, 9),  # bytes per remembered item: one msgpack uint64 time
        ("sum", "properties.revenue", 18),  # time + float64
        ("distinct", "properties.sku", 9 + 11),  # time + a key of up to 10 characters
    ],
)
def test_memory_is_bounded_after_100_000_events(agg: str, field: str | None, bound: int) -> None:
    spec = WindowSpec(agg=agg, over="24h", field=field, max_items=256)
    window = SlidingWindow(spec)
    state = window.initialize()
    largest = 0
    for i in range(100_000):
        # one event every 2 s, a few of them late: far more than 256 inside 24 h
        ts = T0 + 2_000 * i - (7_000 if i % 97 == 0 else 0)
        state = window.agg(state, ts, f"sku-{i % 5_000}" if agg == "distinct" else i % 50)
        if i % 1_000 == 0:
            largest = max(largest, len(msgspec.msgpack.encode(state)))
    size = len(msgspec.msgpack.encode(state))
    assert len(state.ts) == 256
    assert max(largest, size) <= 24 + 256 * bound
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(state), type=WindowState) == state


def test_typical_window_is_small() -> None:
    window = SlidingWindow(WindowSpec(over="24h", value=2))
    state = feed(window, [(T0, None), (T0 + 60_000, None), (T0 + 120_000, None)])
    assert len(msgspec.msgpack.encode(state)) <= 40
    assert len(msgspec.msgpack.encode(window.initialize())) <= 8
