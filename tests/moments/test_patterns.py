"""Sequences agree with a brute-force chain search; absences fire at the deadline, once."""

from __future__ import annotations

import heapq
from itertools import combinations
from typing import Any

import msgspec
import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from momently.clock import FakeClock
from momently.moments.patterns import (
    Absence,
    AbsenceSpec,
    AbsenceState,
    SeqState,
    Sequence,
    SequenceSpec,
)

T0 = 1_700_000_000_000
MINUTE, HOUR = 60_000, 3_600_000

# -- sequences ---------------------------------------------------------------------------


def clamped(times: list[int]) -> list[int]:
    """Each event's time as the patterns read it: never before the newest seen so far."""
    out: list[int] = []
    for ts in times:
        out.append(ts if not out else max(out[-1], ts))
    return out


def brute_sequence(events: list[tuple[int, frozenset[int]]], steps: int, within: int) -> list[bool]:
    """Completes at j iff, among the events after the last completion, some i0 < … < j match
    steps 0 … n-1 in order with i0 no older than t_j - within; a completion consumes them all."""
    times = clamped([ts for ts, _ in events])
    done: list[bool] = []
    after = 0  # the first event not consumed by a completion
    for j, (_, matched) in enumerate(events):
        found = steps - 1 in matched and any(
            all(k in events[i][1] for k, i in enumerate(chain))
            and times[chain[0]] >= times[j] - within
            for chain in combinations(range(after, j), steps - 1)
        )
        done.append(found)
        if found:
            after = j + 1
    return done


@st.composite
def sequence_cases(draw: st.DrawFn) -> tuple[int, int, list[tuple[int, frozenset[int]]]]:
    steps = draw(st.integers(2, 4))
    within = draw(st.sampled_from([1, 5, 20]))
    jumps = draw(st.lists(st.integers(-5, 12), max_size=18))
    matched = st.frozensets(st.integers(0, steps - 1), max_size=steps)
    events, ts = [], T0
    for jump in jumps:
        ts += jump  # may run backwards: late events
        events.append((ts, draw(matched)))
    return steps, within, events


@settings(max_examples=400)
@given(sequence_cases())
def test_sequence_equals_brute_force(
    case: tuple[int, int, list[tuple[int, frozenset[int]]]],
) -> None:
    steps, within, events = case
    names = tuple(f"s{i}" for i in range(steps))
    sequence = Sequence(SequenceSpec(steps=names, within=f"{within}ms"))
    state = sequence.initialize()
    got = []
    for ts, matched in events:
        state, completed = sequence.agg(state, ts, matched)
        got.append(completed)
        assert len(state.starts) == steps - 1
        assert msgspec.msgpack.decode(msgspec.msgpack.encode(state), type=SeqState) == state
    assert got == brute_sequence(events, steps, within)


def test_a_then_b_within_30_minutes() -> None:
    seq = Sequence(SequenceSpec(steps=("searched", "viewed"), within="30m"))
    state, done = seq.agg(seq.initialize(), T0, {0})
    assert not done
    _, done = seq.agg(state, T0 + 30 * MINUTE, {1})  # the start is exactly 30 min old: in time
    assert done
    _, done = seq.agg(state, T0 + 30 * MINUTE + 1, {1})
    assert not done
    _, done = seq.agg(seq.initialize(), T0, {1})  # B alone
    assert not done


def test_an_event_advances_one_step_and_a_completion_consumes_the_chain() -> None:
    seq = Sequence(SequenceSpec(steps=("viewed", "viewed"), within="1h"))
    state, done = seq.agg(seq.initialize(), T0, {0, 1})
    assert not done  # one event is not "viewed twice"
    state, done = seq.agg(state, T0, {0, 1})  # a second event at the same millisecond is
    assert done
    state, done = seq.agg(state, T0 + 1, {0, 1})
    assert not done  # the completing view started nothing: this one is the first again
    _, done = seq.agg(state, T0 + 2, {0, 1})
    assert done


def test_the_latest_start_is_kept() -> None:
    seq = Sequence(SequenceSpec(steps=("a", "b", "c"), within="10m"))
    state = seq.initialize()
    for ts, matched in [(0, {0}), (MINUTE, {1}), (9 * MINUTE, {0}), (10 * MINUTE, {1})]:
        state, _ = seq.agg(state, T0 + ts, matched)
    assert state.starts == (T0 + 9 * MINUTE, T0 + 9 * MINUTE)
    _, done = seq.agg(state, T0 + 15 * MINUTE, {2})  # the chain from minute 0 is too old
    assert done


def test_a_late_event_counts_at_the_newest_time() -> None:
    seq = Sequence(SequenceSpec(steps=("a", "b"), within="10m"))
    state, _ = seq.agg(seq.initialize(), T0 + 20 * MINUTE, set())
    state, _ = seq.agg(state, T0, {0})  # happened at T0, arrives late: read as T0 + 20 min
    assert state.starts == (T0 + 20 * MINUTE,)


def test_sequence_memory_is_constant() -> None:
    seq = Sequence(SequenceSpec(steps=("a", "b", "c", "d"), within="1h"))
    state = seq.initialize()
    sizes = set()
    for i in range(100_000):
        state, _ = seq.agg(state, T0 + 1_000 * i, {i % 4, (i * 7) % 4})
        if i % 1_000 == 0:
            sizes.add(len(msgspec.msgpack.encode(state)))
    assert max(sizes) <= 1 + 9 + 1 + 3 * 9


def test_sequence_rejects_unknown_step_indexes() -> None:
    seq = Sequence(SequenceSpec(steps=("a", "b"), within="1h"))
    with pytest.raises(ValueError, match="from 0 to 1"):
        seq.agg(seq.initialize(), T0, {2})


@pytest.mark.parametrize(
    ("settings_", "message"),
    [
        ({"steps": ("a",), "within": "1h"}, "at least 2"),
        ({"steps": ("a", ""), "within": "1h"}, "needs a name"),
        ({"steps": ("a", "b"), "within": 0}, "longer than 0"),
        ({"steps": ("a", "b")}, "Field required"),
    ],
)
def test_bad_sequence_specs_say_why(settings_: dict[str, Any], message: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=message):
        SequenceSpec(**settings_)


# -- absences ----------------------------------------------------------------------------

Ev = tuple[int, bool, bool]  # (timestamp, armed, cancelled)


def expected_fires(events: list[Ev], looked: list[int], within: int, rearm: str) -> list[int]:
    """The deadlines that must fire, stated per arming event rather than as a state machine.

    ``looked[k]`` is the latest time the runtime had passed to on_time when event k came in
    (the contract: at least the event's own time). An event acts on a deadline only if that
    is before the deadline; otherwise the deadline has fired already. latest: the arming at t
    fires at t + within unless a later event arms or cancels in time (either replaces it).
    first: an arming opens an episode unless an earlier one is still open (not due and not
    cancelled in time by an event after it, this one's own cancel included); an episode fires
    unless a later event cancels it in time."""
    times = clamped([ts for ts, _, _ in events])
    fires = []
    if rearm == "latest":
        for i, (_, armed, _) in enumerate(events):
            deadline = times[i] + within
            if armed and not any(
                (a or c) and looked[k] < deadline for k, (_, a, c) in enumerate(events) if k > i
            ):
                fires.append(deadline)
        return fires
    opened: list[int] = []

    def cancelled_in_time(start: int, stop: int, deadline: int) -> bool:
        return any(events[k][2] and looked[k] < deadline for k in range(start + 1, stop + 1))

    for i, (_, armed, _) in enumerate(events):
        if armed and all(
            looked[i] >= times[s] + within or cancelled_in_time(s, i, times[s] + within)
            for s in opened
        ):
            opened.append(i)
    for s in opened:
        if not cancelled_in_time(s, len(events) - 1, times[s] + within):
            fires.append(times[s] + within)
    return fires


@st.composite
def absence_cases(draw: st.DrawFn) -> tuple[AbsenceSpec, list[Ev], list[int]]:
    within = draw(st.sampled_from([1, 5, 20]))
    rearm = draw(st.sampled_from(["first", "latest"]))
    spec = AbsenceSpec(after="a", missing="b", within=f"{within}ms", rearm=rearm)
    events, ts = [], T0
    for jump, armed, cancelled in draw(
        st.lists(st.tuples(st.integers(-4, 12), st.booleans(), st.booleans()), max_size=25)
    ):
        ts += jump
        events.append((ts, armed, cancelled))
    # the runtime's clock between events: usually behind event time, sometimes ahead of it
    ticks = draw(st.lists(st.integers(0, 25), min_size=len(events), max_size=len(events)))
    return spec, events, ticks


@settings(max_examples=400)
@given(absence_cases())
def test_absence_fires_at_the_deadline_once(case: tuple[AbsenceSpec, list[Ev], list[int]]) -> None:
    """A runtime whose clock ticks between events and wakes at next_due, as a timer heap does."""
    spec, events, ticks = case
    absence = Absence(spec)
    state = absence.initialize()
    fired: list[int] = []
    clock = T0 - 100
    looked: list[int] = []  # per event: the latest time given to on_time before it
    latest_look = clock
    since_armed: int | None = None  # the latest look since the pending deadline was set

    def look(now: int) -> None:
        nonlocal state, latest_look, since_armed
        due = absence.next_due(state)
        if due is not None and due > now:
            assert absence.on_time(state, now) == (state, None)  # never before the deadline
        state, deadline = absence.on_time(state, now)
        if deadline is not None:
            assert deadline <= now
            # at the first look that reached it, unless it was already due when armed
            assert since_armed is None or since_armed < deadline
            fired.append(deadline)
            assert absence.on_time(state, now) == (state, None)  # once
            assert absence.next_due(state) is None
        latest_look = max(latest_look, now)
        since_armed = now if since_armed is None else max(since_armed, now)

    for (ts, armed, cancelled), tick in zip(events, ticks, strict=True):
        due = absence.next_due(state)
        if due is not None and clock < due <= clock + tick:
            look(due - 1)  # the heap wakes exactly at `due`; look just before as well
            look(due)
        clock += tick
        look(clock)
        look(max(clock, ts))  # the contract: on_time for the event's time before on_event
        looked.append(latest_look)
        before = absence.next_due(state)
        state = absence.on_event(state, ts, armed, cancelled)
        if absence.next_due(state) != before:
            since_armed = None
        assert msgspec.msgpack.decode(msgspec.msgpack.encode(state), type=AbsenceState) == state
    due = absence.next_due(state)
    if due is not None:
        look(due)
    assert fired == expected_fires(events, looked, spec.within, spec.rearm)


def viewed_no_purchase(rearm: str = "first") -> Absence:
    return Absence(
        AbsenceSpec(after="viewed twice", missing="purchased", within="24h", rearm=rearm)
    )


def test_absence_fires_when_time_runs_out_with_no_event() -> None:
    absence = viewed_no_purchase()
    clock = FakeClock(T0)
    state = absence.on_event(absence.initialize(), clock.now_ms(), armed=True, cancelled=False)
    fired = []
    for _ in range(24 * 60):  # a clock ticking every minute, no more events
        clock.advance(MINUTE)
        state, deadline = absence.on_time(state, clock.now_ms())
        if deadline is not None:
            fired.append((clock.now_ms(), deadline))
    assert fired == [(T0 + 24 * HOUR, T0 + 24 * HOUR)]


def test_a_purchase_before_the_deadline_cancels_and_at_the_deadline_is_too_late() -> None:
    absence = viewed_no_purchase()
    armed = absence.on_event(absence.initialize(), T0, armed=True, cancelled=False)
    state, fired = absence.on_time(armed, T0 + 24 * HOUR - 1)
    assert fired is None
    state = absence.on_event(state, T0 + 24 * HOUR - 1, armed=False, cancelled=True)
    assert absence.next_due(state) is None
    assert absence.on_time(state, T0 + 48 * HOUR) == (state, None)

    state, fired = absence.on_time(armed, T0 + 24 * HOUR)  # the event's time, first
    assert fired == T0 + 24 * HOUR
    state = absence.on_event(state, T0 + 24 * HOUR, armed=False, cancelled=True)
    assert absence.next_due(state) is None


def test_on_event_refuses_to_skip_a_deadline_that_passed() -> None:
    absence = viewed_no_purchase()
    state = absence.on_event(absence.initialize(), T0, armed=True, cancelled=False)
    with pytest.raises(ValueError, match="call on_time"):
        absence.on_event(state, T0 + 24 * HOUR, armed=False, cancelled=True)


@pytest.mark.parametrize(
    ("rearm", "deadline"), [("first", T0 + 24 * HOUR), ("latest", T0 + 26 * HOUR)]
)
def test_rearm_modes(rearm: str, deadline: int) -> None:
    absence = viewed_no_purchase(rearm)
    state = absence.on_event(absence.initialize(), T0, armed=True, cancelled=False)
    state = absence.on_event(state, T0 + 2 * HOUR, armed=True, cancelled=False)
    assert absence.next_due(state) == deadline


def test_same_after_and_missing_is_an_inactivity_timer() -> None:
    absence = Absence(AbsenceSpec(after="any", missing="any", within="30m"))
    state = absence.initialize()
    for minute in (0, 10, 25):
        state = absence.on_event(state, T0 + minute * MINUTE, armed=True, cancelled=True)
    assert absence.next_due(state) == T0 + 55 * MINUTE


def test_a_late_purchase_counts_at_the_newest_time() -> None:
    absence = viewed_no_purchase()
    state = absence.on_event(absence.initialize(), T0, armed=True, cancelled=False)
    state = absence.on_event(state, T0 - HOUR, armed=False, cancelled=True)  # arrived late
    assert absence.next_due(state) is None


def test_a_timer_heap_fires_many_customers_in_deadline_order() -> None:
    absence = viewed_no_purchase("latest")
    clock = FakeClock(T0)
    states: dict[str, AbsenceState] = {}
    heap: list[tuple[int, str]] = []
    for i, customer in enumerate(["ann", "bob", "cy"]):
        state = absence.on_event(absence.initialize(), T0 + i * HOUR, armed=True, cancelled=False)
        states[customer] = state
        heapq.heappush(heap, (absence.next_due(state) or 0, customer))
    states["bob"] = absence.on_event(states["bob"], T0 + 3 * HOUR, armed=False, cancelled=True)
    fired = []
    while heap:
        due, customer = heapq.heappop(heap)
        clock.advance(max(0, due - clock.now_ms()))
        states[customer], deadline = absence.on_time(states[customer], clock.now_ms())
        if deadline is not None:  # a stale heap entry (bob, cancelled) fires nothing
            fired.append((customer, deadline))
    assert fired == [("ann", T0 + 24 * HOUR), ("cy", T0 + 26 * HOUR)]


def test_absence_state_is_tiny() -> None:
    absence = viewed_no_purchase("latest")
    state = absence.initialize()
    for i in range(100_000):
        state, _ = absence.on_time(state, T0 + i * MINUTE)
        state = absence.on_event(state, T0 + i * MINUTE, armed=i % 3 == 0, cancelled=i % 7 == 0)
        assert len(msgspec.msgpack.encode(state)) <= 19
    assert msgspec.json.decode(msgspec.json.encode(state), type=AbsenceState) == state


@pytest.mark.parametrize(
    ("settings_", "message"),
    [
        ({"after": "a", "missing": "b", "within": 0}, "longer than 0"),
        ({"after": "", "missing": "b", "within": "1h"}, "at least 1 character"),
        ({"after": "a", "missing": "b", "within": "1h", "rearm": "last"}, "'first' or 'latest'"),
    ],
)
def test_bad_absence_specs_say_why(settings_: dict[str, Any], message: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=message):
        AbsenceSpec(**settings_)
