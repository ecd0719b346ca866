"""Journey analytics: the stage funnel, time between stages, drop-off, top paths.

The store keeps one :class:`JourneyRecord` per customer and journey run;
:func:`funnel` reads many of them. Its unit is the **customer**: each customer
counts once, through their best run in the period (the one that got furthest;
on a tie, the earliest), so a customer who abandons and comes back to buy
counts as one conversion, not one loss and one conversion.

For every stage the report gives:

- ``reached``: customers who entered this stage *or any later one*. A customer
  who skipped straight to purchase has reached every stage before it, so the
  funnel never widens;
- ``entered``: customers who entered this stage itself, and ``skipped``, those
  who went past it without entering it;
- ``conversion``: ``reached`` over the previous stage's ``reached``;
- ``median_ms``: the median time from entering the previous stage to entering
  this one, over the ``timed`` customers who entered both;
- ``drop_off``: customers whose furthest stage is this one and who did not
  reach the goal. Given ``as_of_ms``, customers still within the journey's
  timeout are ``active`` instead: they have not dropped off yet.

Top paths are the stage sequences as entered (``learn>cost>purchase``), most
customers first; ties go to the path earlier in stage order.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterable
from typing import NamedTuple

import msgspec

from momently.moments.journeys import JourneyProgress, JourneySpec


class JourneyRecord(msgspec.Struct, kw_only=True, frozen=True, rename="camel"):
    """What the store keeps per customer and journey run, for analytics."""

    customer_id: str
    journey: str
    run: int
    entered: dict[str, int]  # stage -> first entry in this run
    path: tuple[str, ...]  # touchpoint names, the last few
    completed_ms: int | None
    updated_ms: int
    stage: str = ""
    started_ms: int = 0
    devices: tuple[str, ...] = ()


def record_of(customer_id: str, progress: JourneyProgress) -> JourneyRecord:
    """The record to store for a customer's current run."""
    return JourneyRecord(
        customer_id=customer_id,
        journey=progress.journey,
        run=progress.run,
        entered=dict(progress.entered),
        path=tuple(progress.path),
        completed_ms=progress.completed_ms,
        updated_ms=progress.updated_ms,
        stage=progress.stage,
        started_ms=progress.started_ms,
        devices=tuple(progress.devices),
    )


class StageStats(msgspec.Struct, kw_only=True, frozen=True, rename="camel"):
    """One stage's row of the funnel."""

    name: str
    index: int
    reached: int
    entered: int
    skipped: int
    conversion: float | None  # reached / previous stage's reached; None for the first
    median_ms: float | None  # previous stage -> this one, over ``timed`` customers
    timed: int
    drop_off: int
    drop_off_rate: float | None  # drop_off / reached
    active: int


class PathCount(msgspec.Struct, kw_only=True, frozen=True, rename="camel"):
    """How many customers entered exactly this sequence of stages."""

    path: str  # stage names joined with ">"
    stages: tuple[str, ...]
    customers: int
    share: float  # of all customers in the report


class JourneyReport(msgspec.Struct, kw_only=True, frozen=True, rename="camel"):
    """A journey's funnel over a period; encodes to JSON with ``msgspec.json``."""

    journey: str
    title: str
    goal: str
    since_ms: int | None
    until_ms: int | None
    as_of_ms: int | None
    customers: int  # sample size: customers with a run that began in the period
    runs: int  # runs that began in the period, all of them
    completed: int
    conversion: float | None  # completed / customers
    median_ms_to_goal: float | None  # first touchpoint -> goal, over completed customers
    stages: tuple[StageStats, ...]
    top_paths: tuple[PathCount, ...]


class _Run(NamedTuple):
    record: JourneyRecord
    indices: dict[int, int]  # stage index -> entry time
    furthest: int


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _median(values: list[int]) -> float | None:
    return float(statistics.median(values)) if values else None


def _best_runs(
    spec: JourneySpec,
    records: Iterable[JourneyRecord],
    since_ms: int | None,
    until_ms: int | None,
) -> tuple[dict[str, _Run], int]:
    index = {name: i for i, name in enumerate(spec.stage_names())}
    best: dict[str, _Run] = {}
    runs = 0
    for record in records:
        if record.journey != spec.name:
            continue
        # Stages the playbook no longer declares are left out.
        indices = {index[name]: at for name, at in record.entered.items() if name in index}
        if not indices:
            continue
        started = min(indices.values())
        if (since_ms is not None and started < since_ms) or (
            until_ms is not None and started >= until_ms
        ):
            continue
        runs += 1
        run = _Run(record, indices, max(indices))
        held = best.get(record.customer_id)
        if held is None or (run.furthest, -record.run) > (held.furthest, -held.record.run):
            best[record.customer_id] = run
    return best, runs


def funnel(
    spec: JourneySpec,
    records: Iterable[JourneyRecord],
    *,
    since_ms: int | None = None,
    until_ms: int | None = None,
    top_paths: int = 10,
    as_of_ms: int | None = None,
) -> JourneyReport:
    """The funnel of one journey over the runs that began in ``[since_ms, until_ms)``.

    Records of other journeys are ignored; ``as_of_ms`` (the time the report is
    for) separates customers still active from those who dropped off.
    """
    if top_paths < 0:
        raise ValueError("top_paths must be 0 or more")
    names = spec.stage_names()
    goal = spec.goal_index()
    best, runs = _best_runs(spec, records, since_ms, until_ms)
    reached = [0] * len(names)
    entered = [0] * len(names)
    timings: list[list[int]] = [[] for _ in names]
    drop_off = [0] * len(names)
    active = [0] * len(names)
    to_goal: list[int] = []
    paths: Counter[tuple[int, ...]] = Counter()
    for run in best.values():
        for i in range(run.furthest + 1):
            reached[i] += 1
        for i, at in run.indices.items():
            entered[i] += 1
            if i - 1 in run.indices:
                timings[i].append(at - run.indices[i - 1])
        done = run.furthest >= goal or run.record.completed_ms is not None
        if done:
            completed_ms = run.record.completed_ms
            if completed_ms is None:
                completed_ms = min(at for i, at in run.indices.items() if i >= goal)
            to_goal.append(completed_ms - min(run.indices.values()))
        elif as_of_ms is not None and as_of_ms - run.record.updated_ms <= spec.timeout:
            active[run.furthest] += 1
        else:
            drop_off[run.furthest] += 1
        paths[tuple(sorted(run.indices, key=lambda i: (run.indices[i], i)))] += 1

    customers = len(best)
    stages = tuple(
        StageStats(
            name=name,
            index=i,
            reached=reached[i],
            entered=entered[i],
            skipped=reached[i] - entered[i],
            conversion=None if i == 0 else _ratio(reached[i], reached[i - 1]),
            median_ms=_median(timings[i]),
            timed=len(timings[i]),
            drop_off=drop_off[i],
            drop_off_rate=_ratio(drop_off[i], reached[i]),
            active=active[i],
        )
        for i, name in enumerate(names)
    )
    ranked = sorted(paths.items(), key=lambda item: (-item[1], item[0]))[:top_paths]
    return JourneyReport(
        journey=spec.name,
        title=spec.title,
        goal=names[goal],
        since_ms=since_ms,
        until_ms=until_ms,
        as_of_ms=as_of_ms,
        customers=customers,
        runs=runs,
        completed=len(to_goal),
        conversion=_ratio(len(to_goal), customers),
        median_ms_to_goal=_median(to_goal),
        stages=stages,
        top_paths=tuple(
            PathCount(
                path=">".join(names[i] for i in path),
                stages=tuple(names[i] for i in path),
                customers=count,
                share=count / customers,
            )
            for path, count in ranked
        ),
    )
