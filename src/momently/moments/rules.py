"""Moment definitions from the playbook, evaluated on every event of a customer.

A definition fires a moment in one of four ways::

    - name: big-spender-browsing          # plain: an event matches `when`
      kind: buy
      when: {event: Product Viewed, where: [{path: properties.price, op: ">=", value: 500}]}

    - name: comparing-toasters            # window: events matching `when`, aggregated
      kind: know
      when: {event: Product Viewed, where: [{path: properties.category, op: ==, value: toaster}]}
      window: {agg: count, over: 30m, op: ">=", value: 3}

    - name: search-then-store             # sequence: steps in order within a time
      kind: go
      sequence: {steps: [{event: Products Searched}, {event: Store Locator}], within: 30m}

    - name: viewed-not-bought             # absence: armed, then nothing for a while
      kind: buy
      absence:
        after: {event: Product Viewed}
        times: 2                          # armed by the 2nd view within `within`
        missing: {event: Order Completed}
        within: 24h

Definitions are evaluated in playbook order; a definition whose moment fired
less than ``cooldown`` ago for this customer is suppressed (and counted).
Absences fire when their time runs out: :meth:`RuleSet.next_due` tells the
runtime when, and :meth:`RuleSet.on_time` fires them — driven by event time
and the injected clock, never by a sleeping thread per customer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import msgspec
from pydantic import Field, model_validator

from momently.events import Event
from momently.moments.conditions import (
    _MISSING,
    Condition,
    compile_condition,
    event_value,
)
from momently.moments.model import MomentKind
from momently.moments.patterns import (
    Absence,
    AbsenceSpec,
    AbsenceState,
    SeqState,
    Sequence,
    SequenceSpec,
)
from momently.moments.spec import Duration, SpecModel
from momently.moments.windows import SlidingWindow, WindowSpec, WindowState
from momently.state.profile import Profile

Test = Callable[[Event, Profile | None], bool]


class SequenceDef(SpecModel):
    """Steps that must happen in this order within ``within``."""

    steps: tuple[Condition, ...] = Field(min_length=2, max_length=10)
    within: Duration


class AbsenceDef(SpecModel):
    """``after`` happened (``times`` times within ``within``), then no ``missing`` for as long."""

    after: Condition
    missing: Condition
    within: Duration
    times: int = Field(1, ge=1, le=255)
    rearm: Literal["first", "latest"] = "first"


class MomentDef(SpecModel):
    """One moment definition of the playbook."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,79}$")
    kind: MomentKind
    title: str = ""
    confidence: float = Field(0.8, ge=0, le=1)
    expires_in: Duration = Field(
        default="2h", validate_default=True, description="how long the moment lives"
    )
    cooldown: Duration = Field(
        default="1h", validate_default=True, description="per customer, between firings"
    )
    when: Condition | None = None
    window: WindowSpec | None = None
    sequence: SequenceDef | None = None
    absence: AbsenceDef | None = None

    @model_validator(mode="after")
    def _one_trigger(self) -> MomentDef:
        given = [n for n in ("when", "sequence", "absence") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError(
                "a moment needs exactly one of when (with an optional window), sequence, absence;"
                f" got {', '.join(given) or 'none'}"
            )
        if self.window is not None and self.when is None:
            raise ValueError("window aggregates the events that match `when`; add `when`")
        return self


class RuleState(msgspec.Struct, omit_defaults=True):
    """What one definition remembers about one customer."""

    window: WindowState | None = None
    seq: SeqState | None = None
    armed: WindowState | None = None
    absence: AbsenceState | None = None


class RulesState(msgspec.Struct, omit_defaults=True):
    rules: dict[str, RuleState] = {}
    fired: dict[str, int] = {}  # definition name -> when it last fired (cooldowns)


@dataclass(frozen=True, slots=True)
class Firing:
    """A definition that fired: which, when, on what, and what it saw."""

    definition: MomentDef
    at_ms: int
    trigger: str
    details: dict[str, Any]


@dataclass(frozen=True, slots=True)
class _Compiled:
    spec: MomentDef
    names: frozenset[str] | None  # event names it can react to; None: any
    when: Test | None
    window: SlidingWindow | None
    steps: tuple[Test, ...]
    seq: Sequence | None
    after: Test | None
    missing: Test | None
    armed: SlidingWindow | None
    absence: Absence | None


def _names(*conditions: Condition) -> frozenset[str] | None:
    names: set[str] = set()
    for condition in conditions:
        found = condition.names()
        if found is None:
            return None
        names |= found
    return frozenset(names)


def _ms(duration: int) -> str:
    """A duration already in ms, written so :data:`Duration` reads it back unchanged."""
    return f"{duration}ms"


def _compile(spec: MomentDef) -> _Compiled:
    when = window = seq = after = missing = armed = absence = None
    steps: tuple[Test, ...] = ()
    if spec.when is not None:
        names = _names(spec.when)
        when = compile_condition(spec.when)
        window = SlidingWindow(spec.window) if spec.window is not None else None
    elif spec.sequence is not None:
        names = _names(*spec.sequence.steps)
        steps = tuple(compile_condition(c) for c in spec.sequence.steps)
        seq = Sequence(
            SequenceSpec(
                steps=tuple(str(i) for i in range(len(steps))), within=_ms(spec.sequence.within)
            )
        )
    else:
        assert spec.absence is not None
        definition = spec.absence
        names = _names(definition.after, definition.missing)
        after = compile_condition(definition.after)
        missing = compile_condition(definition.missing)
        armed = SlidingWindow(
            WindowSpec(agg="count", over=_ms(definition.within), op=">=", value=definition.times)
        )
        absence = Absence(
            AbsenceSpec(
                after="after",
                missing="missing",
                within=_ms(definition.within),
                rearm=definition.rearm,
            )
        )
    return _Compiled(spec, names, when, window, steps, seq, after, missing, armed, absence)


def _event_name(event: Event) -> str | None:
    return event.event if event.type == "track" else event.name


class RuleSet:
    """All moment definitions of a playbook, compiled once."""

    def __init__(self, definitions: tuple[MomentDef, ...]) -> None:
        self._rules = [_compile(d) for d in definitions]
        self._by_name: dict[str, list[int]] = {}
        self._any: list[int] = []
        for index, rule in enumerate(self._rules):
            if rule.names is None:
                self._any.append(index)
            else:
                for name in rule.names:
                    self._by_name.setdefault(name, []).append(index)

    def __len__(self) -> int:
        return len(self._rules)

    def _candidates(self, event: Event) -> list[int]:
        name = _event_name(event)
        named = self._by_name.get(name, []) if name is not None else []
        if not self._any:
            return named
        return sorted({*named, *self._any})  # playbook order

    def on_event(
        self, state: RulesState, event: Event, profile: Profile | None
    ) -> tuple[RulesState, list[Firing], int]:
        """Feed one event to every definition it can concern, in playbook order.

        Returns the new state, the firings, and how many a cooldown held back.
        """
        ts = event.timestamp_ms
        firings: list[Firing] = []
        for index in self._candidates(event):
            rule = self._rules[index]
            name = rule.spec.name
            current = state.rules.get(name)
            fresh = current if current is not None else RuleState()
            fired, details = self._step(rule, fresh, event, profile, ts)
            if current is None and fresh == RuleState():
                pass  # the event touched nothing: keep no state for it
            else:
                state.rules[name] = fresh
            if fired:
                firings.append(Firing(rule.spec, ts, event.message_id, details))
        passed = self._cool(state, firings)
        return state, passed, len(firings) - len(passed)

    def _step(
        self, rule: _Compiled, st: RuleState, event: Event, profile: Profile | None, ts: int
    ) -> tuple[bool, dict[str, Any]]:
        if rule.when is not None:
            if not rule.when(event, profile):
                return False, {}
            if rule.window is None:
                return True, {}
            spec = rule.spec.window
            assert spec is not None
            value = None
            if spec.field is not None:
                found = event_value(event, spec.field)
                value = None if found is _MISSING else found
            if st.window is None:
                st.window = rule.window.initialize()
            st.window = rule.window.agg(st.window, ts, value)
            # A late event is judged at the newest time seen, not back in its own past.
            now = max(ts, st.window.newest or ts)
            if rule.window.satisfied(st.window, now):
                return True, {"window": rule.window.result(st.window, now)}
            return False, {}
        if rule.seq is not None:
            matched = {i for i, test in enumerate(rule.steps) if test(event, profile)}
            if not matched:
                return False, {}
            if st.seq is None:
                st.seq = rule.seq.initialize()
            st.seq, done = rule.seq.agg(st.seq, ts, matched)
            return done, {}
        assert rule.after is not None and rule.missing is not None
        assert rule.armed is not None and rule.absence is not None
        is_after = rule.after(event, profile)
        is_missing = rule.missing(event, profile)
        if not (is_after or is_missing):
            return False, {}
        if st.absence is None:
            st.absence = rule.absence.initialize()
        armed = False
        if is_after:
            if st.armed is None:
                st.armed = rule.armed.initialize()
            st.armed = rule.armed.agg(st.armed, ts, None)
            armed = rule.armed.satisfied(st.armed, max(ts, st.armed.newest or ts))
        if is_missing:
            st.armed = None  # what armed it is answered: count afresh
        st.absence = rule.absence.on_event(st.absence, ts, armed, is_missing)
        return False, {}

    def next_due(self, state: RulesState) -> int | None:
        """When the earliest absence of this customer runs out, if any is armed."""
        due: int | None = None
        for rule in self._rules:
            if rule.absence is None:
                continue
            st = state.rules.get(rule.spec.name)
            if st is None or st.absence is None:
                continue
            when = rule.absence.next_due(st.absence)
            if when is not None and (due is None or when < due):
                due = when
        return due

    def on_time(self, state: RulesState, now_ms: int) -> tuple[RulesState, list[Firing], int]:
        """Fire every absence whose time ran out by ``now_ms``.

        The runtime calls this when a timer is due, and before feeding a new
        event, so an event after a deadline cannot cancel a deadline passed.
        """
        firings: list[Firing] = []
        for rule in self._rules:
            if rule.absence is None:
                continue
            st = state.rules.get(rule.spec.name)
            if st is None or st.absence is None:
                continue
            st.absence, deadline = rule.absence.on_time(st.absence, now_ms)
            if deadline is not None:
                st.armed = None
                trigger = f"timer:{rule.spec.name}:{deadline}"
                firings.append(Firing(rule.spec, deadline, trigger, {"deadline": deadline}))
        passed = self._cool(state, firings)
        return state, passed, len(firings) - len(passed)

    def _cool(self, state: RulesState, firings: list[Firing]) -> list[Firing]:
        """Drop firings inside their definition's cooldown; note the ones that pass."""
        passed = []
        for firing in firings:
            name = firing.definition.name
            last = state.fired.get(name)
            if last is not None and firing.at_ms - last < firing.definition.cooldown:
                continue
            state.fired[name] = firing.at_ms
            passed.append(firing)
        return passed
