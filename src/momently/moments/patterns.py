"""Sequences ("A then B within 30 min") and absences ("viewed, no purchase within 24 h").

Both are pure state transitions over tiny msgspec states that the caller keeps per customer.
The caller (the rule evaluator) decides which of its conditions an event matches and passes
the answer in: step indexes for a :class:`Sequence`, ``armed``/``cancelled`` for an
:class:`Absence`.

Time and order
    Patterns are about order, so they take events in the order they are given (the log's
    order) and read time from a clock that never runs backwards: an event's time is
    ``max(its timestamp, the newest timestamp seen so far)``. A late event therefore counts
    as happening at the newest time seen; it can neither start a chain in the past nor cancel
    an absence retroactively.

Sequences
    ``steps = (A, B, C), within = W`` completes on an event that matches ``C`` when earlier
    events (after the last completion) matched ``A`` and then ``B`` in order, one event per
    step, with the ``A`` no older than ``now - W``. The state keeps, per step but the last,
    the latest start time of a chain that has reached it (latest start is the best: it
    expires last), so memory is O(steps). An event advances every chain by at most one step,
    so with equal timestamps ``A`` and ``B`` need two events, and ``steps = (viewed, viewed)``
    means "viewed twice". A completion consumes the chain: the state resets, and the completing
    event does not start a new one.

Absences
    ``after = A, missing = B, within = W`` arms on an ``A`` at ``t``, with a deadline
    ``t + W`` (``rearm="first"``: later ``A`` do not move it; ``"latest"``: each ``A`` pushes
    it to its own ``t + W``). A ``B`` at a time before the deadline cancels it; a ``B`` at or
    after the deadline is too late. An event that both cancels and arms first cancels, then
    arms afresh, so ``after = missing = "any event"`` is an inactivity timer.

    The runtime keeps a timer heap keyed by :meth:`Absence.next_due` and calls
    :meth:`Absence.on_time` with its clock; that is how an absence fires with no event
    arriving. It must also call ``on_time(state, max(clock, event time))`` *before*
    :meth:`Absence.on_event` for each event, so an event after the deadline cannot cancel a
    deadline that has already passed; ``on_event`` raises ``ValueError`` if that was missed.
    ``on_time`` fires exactly once, when ``now >= deadline`` and not before; a fired absence
    needs a new ``A`` to arm again.

>>> seq = Sequence(SequenceSpec(steps=("search", "view"), within="30m"))
>>> s, done = seq.agg(seq.initialize(), 0, {0})
>>> seq.agg(s, 60_000, {1})[1]
True
>>> gone = Absence(AbsenceSpec(after="view", missing="buy", within="24h"))
>>> a = gone.on_event(gone.initialize(), 0, armed=True, cancelled=False)
>>> gone.next_due(a), gone.on_time(a, 86_399_999)[1], gone.on_time(a, 86_400_000)[1]
(86400000, None, 86400000)
"""

from __future__ import annotations

from collections.abc import Set
from typing import Literal

import msgspec
from pydantic import Field, model_validator

from momently.moments.spec import Duration, SpecModel


class SequenceSpec(SpecModel):
    """An ordered sequence of steps (condition names) that must happen within ``within``."""

    steps: tuple[str, ...] = Field(min_length=2, max_length=32)
    within: Duration

    @model_validator(mode="after")
    def _check(self) -> SequenceSpec:
        if self.within <= 0:
            raise ValueError("a sequence's `within` must be longer than 0")
        if any(not step for step in self.steps):
            raise ValueError("a sequence step needs a name")
        return self


class SeqState(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """Per step but the last: the latest start time of a chain that reached it, or None."""

    newest: int | None = None
    starts: tuple[int | None, ...] = ()


class Sequence:
    """Runtime logic of one :class:`SequenceSpec`."""

    def __init__(self, spec: SequenceSpec) -> None:
        self.spec = spec
        self._last = len(spec.steps) - 1

    def initialize(self) -> SeqState:
        """The state of a customer with no partial chain."""
        return SeqState(None, (None,) * self._last)

    def agg(self, state: SeqState, ts_ms: int, matched_steps: Set[int]) -> tuple[SeqState, bool]:
        """The state after one event that matched ``matched_steps``, and whether it completed."""
        last = self._last
        if any(not 0 <= step <= last for step in matched_steps):
            raise ValueError(f"step indexes run from 0 to {last}: {sorted(matched_steps)}")
        now = ts_ms if state.newest is None else max(state.newest, ts_ms)
        oldest = now - self.spec.within
        # chains that started too long ago can never complete: forget them
        starts = [s if s is not None and s >= oldest else None for s in state.starts]
        if last in matched_steps and starts[last - 1] is not None:
            return SeqState(now, (None,) * last), True
        advanced = list(starts)
        for step in range(last - 1, 0, -1):  # read `starts`, the values before this event
            before = starts[step - 1]
            if step in matched_steps and before is not None:
                current = advanced[step]
                advanced[step] = before if current is None else max(current, before)
        if 0 in matched_steps:
            advanced[0] = now
        return SeqState(now, tuple(advanced)), False


class AbsenceSpec(SpecModel):
    """``missing`` did not happen within ``within`` of ``after``; fires when time runs out."""

    after: str = Field(min_length=1)
    missing: str = Field(min_length=1)
    within: Duration
    rearm: Literal["first", "latest"] = "first"

    @model_validator(mode="after")
    def _check(self) -> AbsenceSpec:
        if self.within <= 0:
            raise ValueError("an absence's `within` must be longer than 0")
        return self


class AbsenceState(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """The newest event time seen, and the pending deadline if armed."""

    newest: int | None = None
    deadline: int | None = None


class Absence:
    """Runtime logic of one :class:`AbsenceSpec`; a timer in the bytewax ``StatefulLogic`` shape."""

    def __init__(self, spec: AbsenceSpec) -> None:
        self.spec = spec

    def initialize(self) -> AbsenceState:
        """The state of a customer with nothing armed."""
        return AbsenceState()

    def on_event(
        self, state: AbsenceState, ts_ms: int, armed: bool, cancelled: bool
    ) -> AbsenceState:
        """The state after one event; call :meth:`on_time` for the event's time first."""
        now = ts_ms if state.newest is None else max(state.newest, ts_ms)
        deadline = state.deadline
        if deadline is not None and now >= deadline:
            raise ValueError(
                f"the deadline {deadline} passed before this event at {now}: "
                "call on_time(state, now) before on_event"
            )
        if cancelled:
            deadline = None
        if armed and (deadline is None or self.spec.rearm == "latest"):
            deadline = now + self.spec.within
        if deadline == state.deadline and now == state.newest:
            return state
        return AbsenceState(now, deadline)

    def next_due(self, state: AbsenceState) -> int | None:
        """When :meth:`on_time` should next be called: the pending deadline, if any."""
        return state.deadline

    def on_time(self, state: AbsenceState, now_ms: int) -> tuple[AbsenceState, int | None]:
        """Fire once the clock reaches the deadline: the new state and the deadline that fired."""
        deadline = state.deadline
        if deadline is None or now_ms < deadline:
            return state, None
        return AbsenceState(state.newest, None), deadline
