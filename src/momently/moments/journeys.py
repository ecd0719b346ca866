"""Customer journeys: touchpoints grouped into stages, tracked per customer.

A journey is an ordered list of stages; each stage is reached through
touchpoints, which are playbook conditions on an event. Events arrive already
resolved to one canonical customer, so a journey started on a phone and
continued on a laptop is one journey; the devices seen are kept with it.

Rules, all in event time:

- An event may match touchpoints of several stages: the furthest stage wins,
  and within a stage the first touchpoint declared.
- The stage is the furthest stage reached; it never moves back. A touchpoint
  of an earlier stage (re-reading reviews after comparing prices) is recorded
  in the path only.
- With ``allow_skip`` (the default) a customer may jump ahead, straight to
  purchase say; the stages jumped over are not *entered*. Without it, only
  the next stage can be entered (in arrival order) and a run must begin at
  the first stage; a touchpoint further ahead is recorded in the path only.
- ``entered`` holds each stage's first entry time. A stage counts as entered
  if its first touchpoint came no later than every touchpoint of the stages
  after it, so events delivered a little out of order give the same entries.
- No touchpoint for ``timeout``: the run is abandoned and the next touchpoint
  starts run 2. An event older than the run's last touchpoint by more than
  the timeout is ignored.

Memory per customer is bounded: one run per journey, the last
:data:`PATH_LIMIT` touchpoints and at most :data:`DEVICE_LIMIT` devices.

Example playbook section::

    journeys:
      - name: clear-braces
        title: Clear braces, from first question to sharing the smile
        goal: purchase
        timeout: 90d
        stages:
          - name: learn
            touchpoints:
              - name: options-page
                when: {event: Clear Braces Options, type: [page, screen]}
              - name: options-search
                when:
                  event: Products Searched
                  where: [{path: properties.query, op: matches, value: "(?i)clear braces|aligner"}]
          - name: cost
            touchpoints:
              - name: cost-page
                when: {event: Clear Braces Cost, type: [page, screen]}
              - name: cost-search
                when:
                  event: Products Searched
                  where: [{path: properties.query, op: contains, value: "cost"}]
              - name: price-search
                when:
                  event: Products Searched
                  where: [{path: properties.query, op: contains, value: "price"}]
          - name: reviews
            touchpoints:
              - name: reviews-page
                when: {event: Clear Braces Reviews, type: [page, screen]}
              - name: reviews-search
                when:
                  event: Products Searched
                  where: [{path: properties.query, op: contains, value: "review"}]
          - name: before-after
            touchpoints:
              - name: gallery
                when: {event: Before After Gallery, type: [page, screen]}
          - name: providers
            touchpoints:
              - name: provider-finder
                when: {event: Find a Provider, type: [page, screen]}
              - name: near-me-search
                when:
                  event: Products Searched
                  where: [{path: properties.query, op: contains, value: "near me"}]
          - name: compare
            touchpoints:
              - name: contact-form
                when: {event: Contact Form Submitted}
          - name: decide
            touchpoints:
              - name: consultation
                when: {event: Consultation Booked}
          - name: purchase
            touchpoints:
              - name: order
                when: {event: Order Completed}
          - name: share
            touchpoints:
              - name: social-post
                when:
                  event: Social Post
                  where: [{path: properties.text, op: matches, value: "(?i)braces|aligner|smile"}]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

import msgspec
from pydantic import Field, field_validator, model_validator

from momently.events import Event
from momently.moments.conditions import Condition, Test, compile_condition
from momently.moments.spec import Duration, SpecModel
from momently.state.profile import Profile

PATH_LIMIT: Final = 50
DEVICE_LIMIT: Final = 10
_SLUG: Final = r"^[a-z0-9][a-z0-9_-]{0,63}$"


class TouchpointSpec(SpecModel):
    """One way of reaching a stage: a named condition on an event."""

    name: str = Field(min_length=1, max_length=100)
    when: Condition


class StageSpec(SpecModel):
    """One stage of a journey and the touchpoints that reach it."""

    name: str = Field(pattern=_SLUG)
    touchpoints: tuple[TouchpointSpec, ...]

    @field_validator("touchpoints")
    @classmethod
    def _some(cls, value: tuple[TouchpointSpec, ...]) -> tuple[TouchpointSpec, ...]:
        if not value:
            raise ValueError("a stage needs at least one touchpoint")
        return value


class JourneySpec(SpecModel):
    """One entry of the playbook's ``journeys:`` list."""

    name: str = Field(pattern=_SLUG)
    title: str = ""
    stages: tuple[StageSpec, ...]
    goal: str | None = Field(None, description="the stage that counts as converted; default last")
    timeout: Duration = Field(
        default="90d",  # validated into ms: the schema shows the readable default
        validate_default=True,
        description="no touchpoint for this long abandons the run; the next starts a new one",
    )
    allow_skip: bool = Field(True, description="may a customer jump ahead to a later stage")

    @field_validator("stages")
    @classmethod
    def _check_stages(cls, value: tuple[StageSpec, ...]) -> tuple[StageSpec, ...]:
        if len(value) < 2:
            raise ValueError(f"a journey needs at least 2 stages, got {len(value)}")
        stages: set[str] = set()
        touchpoints: set[str] = set()
        for stage in value:
            if stage.name in stages:
                raise ValueError(f"duplicate stage name {stage.name!r}")
            stages.add(stage.name)
            for touchpoint in stage.touchpoints:
                if touchpoint.name in touchpoints:
                    raise ValueError(f"duplicate touchpoint name {touchpoint.name!r}")
                touchpoints.add(touchpoint.name)
        return value

    @model_validator(mode="after")
    def _check_goal(self) -> JourneySpec:
        names = self.stage_names()
        if self.goal is not None and self.goal not in names:
            raise ValueError(f"goal {self.goal!r} names no stage; stages are: {', '.join(names)}")
        if self.timeout <= 0:
            raise ValueError("timeout must be longer than 0")
        return self

    def stage_names(self) -> tuple[str, ...]:
        """The stage names, in order."""
        return tuple(stage.name for stage in self.stages)

    def goal_index(self) -> int:
        """The index of the goal stage (the last stage unless ``goal`` names another)."""
        names = self.stage_names()
        return len(names) - 1 if self.goal is None else names.index(self.goal)


class JourneyProgress(msgspec.Struct, kw_only=True):
    """One customer's current run of one journey."""

    journey: str
    run: int
    stage: str
    stage_index: int
    started_ms: int
    updated_ms: int  # the latest touchpoint's time
    entered: dict[str, int]  # stage -> first entry in this run, in stage order
    path: list[str]  # touchpoint names in arrival order, the last PATH_LIMIT
    devices: list[str]  # device ids in the order first seen in this run; the last DEVICE_LIMIT
    completed_ms: int | None = None  # when the goal (or a stage past it) was first entered


class JourneyState(msgspec.Struct, kw_only=True):
    """All of one customer's journeys, by journey name."""

    progress: dict[str, JourneyProgress] = {}


@dataclass(frozen=True)
class StageChange:
    """A customer moved to a new stage; ``from_stage`` is None when a run begins.

    ``completed`` is True when this change reaches the goal (or a stage past
    it) for the first time in the run.
    """

    journey: str
    run: int
    from_stage: str | None
    to_stage: str
    at_ms: int
    touchpoint: str
    completed: bool


class _Touchpoint(NamedTuple):
    journey: int
    stage: int
    order: int
    name: str
    test: Test


def _device_of(event: Event) -> str | None:
    device = event.context.get("device")
    if isinstance(device, dict):
        ident: Any = device.get("id")
        if isinstance(ident, str) and ident:
            return ident
    return None


def _with_device(devices: list[str], device: str | None) -> list[str]:
    if device is None or device in devices:
        return devices
    return [*devices, device][-DEVICE_LIMIT:]


def _enter_in_order(entered: dict[str, int], names: Sequence[str], index: int, at: int) -> None:
    """Enter stage ``index`` at ``at`` unless a later stage was entered before then."""
    later = [entered[name] for name in names[index + 1 :] if name in entered]
    if later and at > min(later):
        return  # a step back: the customer had already gone further
    if entered.get(names[index], at + 1) <= at:
        return
    entered[names[index]] = at
    # An earlier stage first touched after this one was a step back, not an entry.
    for name in names[:index]:
        if entered.get(name, -1) > at:
            del entered[name]


class JourneyTracker:
    """Moves customers through the playbook's journeys, one event at a time."""

    def __init__(self, journeys: Sequence[JourneySpec]) -> None:
        self._specs = tuple(journeys)
        seen: set[str] = set()
        for spec in self._specs:
            if spec.name in seen:
                raise ValueError(f"duplicate journey name {spec.name!r}")
            seen.add(spec.name)
        self._names = tuple(spec.stage_names() for spec in self._specs)
        self._goals = tuple(spec.goal_index() for spec in self._specs)
        named: dict[str, list[_Touchpoint]] = {}
        anything: list[_Touchpoint] = []
        for j, spec in enumerate(self._specs):
            for s, stage in enumerate(spec.stages):
                for o, tp in enumerate(stage.touchpoints):
                    touchpoint = _Touchpoint(j, s, o, tp.name, compile_condition(tp.when))
                    event_names = tp.when.names()
                    if event_names is None:
                        anything.append(touchpoint)
                    for name in event_names or ():
                        named.setdefault(name, []).append(touchpoint)

        # Per event name, every touchpoint it could match, furthest stage first, so the
        # first match per journey is the one that counts.
        def ordered(touchpoints: list[_Touchpoint]) -> tuple[_Touchpoint, ...]:
            return tuple(sorted(touchpoints, key=lambda t: (t.journey, -t.stage, t.order)))

        self._any = ordered(anything)
        self._by_name = {name: ordered(tps + anything) for name, tps in named.items()}

    def on_event(
        self, state: JourneyState, event: Event, profile: Profile | None
    ) -> tuple[JourneyState, list[StageChange]]:
        """The state after one event, and the stage changes it caused; ``state`` is not modified."""
        name = event.event if event.type == "track" else event.name
        candidates = self._any if name is None else self._by_name.get(name, self._any)
        matched: dict[int, _Touchpoint] = {}
        for touchpoint in candidates:
            if touchpoint.journey not in matched and touchpoint.test(event, profile):
                matched[touchpoint.journey] = touchpoint
        if not matched:
            return state, []
        progress = state.progress
        changes: list[StageChange] = []
        at, device = event.timestamp_ms, _device_of(event)
        for j, touchpoint in matched.items():
            spec = self._specs[j]
            old = progress.get(spec.name)
            new, change = self._advance(spec, old, touchpoint, at, device)
            if new is not old and new is not None:
                if progress is state.progress:
                    progress = dict(progress)  # copy on first write: the input stays as it was
                progress[spec.name] = new
            if change is not None:
                changes.append(change)
        if progress is state.progress:
            return state, changes
        return JourneyState(progress=progress), changes

    def stage_of(self, state: JourneyState, journey: str) -> str | None:
        """The customer's current stage of a journey, or None if they never began it."""
        progress = state.progress.get(journey)
        return None if progress is None else progress.stage

    def _advance(
        self,
        spec: JourneySpec,
        old: JourneyProgress | None,
        touchpoint: _Touchpoint,
        at: int,
        device: str | None,
    ) -> tuple[JourneyProgress | None, StageChange | None]:
        names = self._names[touchpoint.journey]
        goal = self._goals[touchpoint.journey]
        if old is not None and at < old.updated_ms - spec.timeout:
            return old, None  # too late to belong to this run, and older runs are closed
        if old is None or at - old.updated_ms > spec.timeout:
            if not spec.allow_skip and touchpoint.stage != 0:
                return old, None
            stage = names[touchpoint.stage]
            run = 1 if old is None else old.run + 1
            done = at if touchpoint.stage >= goal else None
            fresh = JourneyProgress(
                journey=spec.name,
                run=run,
                stage=stage,
                stage_index=touchpoint.stage,
                started_ms=at,
                updated_ms=at,
                entered={stage: at},
                path=[touchpoint.name],
                devices=_with_device([], device),
                completed_ms=done,
            )
            change = StageChange(spec.name, run, None, stage, at, touchpoint.name, done is not None)
            return fresh, change

        entered = dict(old.entered)
        target = names[touchpoint.stage]
        if spec.allow_skip:
            _enter_in_order(entered, names, touchpoint.stage, at)
        elif touchpoint.stage == old.stage_index + 1:
            entered[target] = at
        elif target in entered:
            entered[target] = min(entered[target], at)
        entered = {name: entered[name] for name in names if name in entered}
        index = max(i for i, name in enumerate(names) if name in entered)
        reached = [entered[name] for name in names[goal:] if name in entered]
        new = JourneyProgress(
            journey=spec.name,
            run=old.run,
            stage=names[index],
            stage_index=index,
            started_ms=min(old.started_ms, at),
            updated_ms=max(old.updated_ms, at),
            entered=entered,
            path=[*old.path[-(PATH_LIMIT - 1) :], touchpoint.name],
            devices=_with_device(old.devices, device),
            completed_ms=min(reached) if reached else None,
        )
        if index == old.stage_index:
            return new, None
        completed = old.completed_ms is None and new.completed_ms is not None
        change = StageChange(
            spec.name, old.run, old.stage, new.stage, at, touchpoint.name, completed
        )
        return new, change
