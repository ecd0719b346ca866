"""Routines: stays at learned places, and the usual times a customer leaves home and work.

Fed one GPS fix at a time, :func:`on_fix` finds *stays* online (fixes that keep
within ``cluster_radius_m`` of the stay's anchor for at least ``stay_min``),
folds them into dwell clusters (:mod:`momently.moments.learned_places`), says
when the customer arrives at or leaves a trusted home or work, and records each
departure's local time in a histogram per place and day type (weekday or
weekend). :func:`next_due_ms` tells the scheduler when the usual departure,
less ``lead_time``, comes next, and :func:`on_time` then offers the
``about_to_leave`` signal once per local day and place, as a phone offers the
travel time to work before you leave.

Everything is a pure function of the settings, the state and the times passed
in; the state is a small frozen msgspec Struct the caller stores.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final, Literal
from zoneinfo import ZoneInfo

import msgspec
from msgspec.structs import replace
from pydantic import Field, field_validator

from momently.moments.learned_places import (
    Cluster,
    LearnedPlace,
    PlaceLabel,
    attach,
    credit,
    decay,
    distance_m,
    is_weekday,
    label_clusters,
    local_datetime,
    local_day,
    local_ms,
    places_of,
    zone_for,
)
from momently.moments.spec import Duration, SpecModel

MAX_ACCURACY_M: Final = 200.0  # coarser fixes (cell towers, Wi-Fi guesses) are ignored
# A gap between two fixes of one stay credits at most this much dwell: a phone
# silent overnight was most likely still there, one silent for days is unknown.
MAX_GAP_MS: Final = 12 * 3_600_000
# A departure histogram is halved when a bin reaches this count, so a changed
# routine (a new job) takes over within weeks and the counts stay small.
COUNT_CAP: Final = 32


class RoutineSettings(SpecModel):
    """Playbook section ``detectors.routine``: learned places and departure routines."""

    enabled: bool = True
    cluster_radius_m: float = Field(default=150.0, gt=0)
    stay_min: Duration = Field(default="20m", validate_default=True)
    max_clusters: int = Field(default=8, ge=2)
    min_days: int = Field(default=3, ge=1)
    lead_time: Duration = Field(default="20m", validate_default=True, lt=86_400_000)
    bin_minutes: int = Field(default=15, ge=1, le=240)
    expiry: Duration = Field(default="45m", validate_default=True)

    @field_validator("bin_minutes")
    @classmethod
    def _divides_day(cls, value: int) -> int:
        if 1440 % value:
            raise ValueError("bin_minutes must divide a day (1440 minutes), e.g. 5, 10, 15, 30, 60")
        return value


class Fix(msgspec.Struct, frozen=True, array_like=True):
    """One accepted GPS fix."""

    lat: float
    lon: float
    ts_ms: int


class Stay(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """The stay in progress: a candidate until it lasts ``stay_min``, then folded into a cluster."""

    lat: float  # anchor: mean of the fixes inside the stay
    lon: float
    n: int = 1
    start_ms: int
    last_ms: int
    cluster: int | None = None  # index into RoutineState.clusters once confirmed
    pending: Fix | None = (
        None  # a first fix outside; a second one ends the stay, else it was jitter
    )


class Histogram(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Departure counts per local time-of-day bin, and on how many distinct local days."""

    counts: tuple[int, ...]
    days: int = 0
    last_day: int = 0


class Routine(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Departures from one learned place, by day type, and the last day it was anticipated."""

    weekday: Histogram | None = None
    weekend: Histogram | None = None
    fired_day: int = 0


class RoutineState(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Per-customer state of the routine detector; store it with ``msgspec.json.encode``."""

    clusters: tuple[Cluster, ...] = ()
    stay: Stay | None = None
    home: Routine = Routine()
    work: Routine = Routine()
    last_ms: int = -1  # the last accepted fix: older or equal ones are ignored
    day: int = 0  # its local day, for ageing the clusters


@dataclass(frozen=True)
class RoutineSignal:
    """Arrived at, left, or about to leave a learned home or work."""

    kind: Literal["arrived", "left", "about_to_leave"]
    label: PlaceLabel
    at_ms: int
    usual_ms: int | None  # about_to_leave: today's usual departure time
    confidence: float


_Usual = tuple[int, float] | None  # local minute of day, share of departures


@dataclass(frozen=True)
class _Plan:
    due_ms: int
    usual_ms: int
    share: float


def learned_places(settings: RoutineSettings, state: RoutineState) -> list[LearnedPlace]:
    """The trusted home and work (each seen on at least ``min_days`` local days)."""
    return places_of(state.clusters, settings.min_days)


def on_fix(
    settings: RoutineSettings,
    state: RoutineState,
    lat: float,
    lon: float,
    accuracy_m: float,
    ts_ms: int,
    tz: str | None,
) -> tuple[RoutineState, list[RoutineSignal]]:
    """Take one GPS fix: track the stay, learn places and departures, say arrived or left."""
    valid = (
        math.isfinite(lat)
        and math.isfinite(lon)
        and -90 <= lat <= 90
        and -180 <= lon <= 180
        and 0 <= accuracy_m <= MAX_ACCURACY_M
    )
    if not settings.enabled or not valid or ts_ms <= state.last_ms:
        return state, []
    zone = zone_for(tz)
    today = local_day(ts_ms, zone)
    clusters = decay(state.clusters, today - state.day) if state.day else state.clusters
    state = replace(state, clusters=clusters, last_ms=ts_ms, day=max(today, state.day))
    signals: list[RoutineSignal] = []
    state = _step(settings, state, Fix(lat, lon, ts_ms), accuracy_m, zone, signals)
    return state, signals


def _step(
    settings: RoutineSettings,
    state: RoutineState,
    fix: Fix,
    accuracy_m: float,
    zone: ZoneInfo,
    signals: list[RoutineSignal],
) -> RoutineState:
    stay, radius = state.stay, settings.cluster_radius_m
    if stay is None:
        return replace(state, stay=_start(fix))
    away = distance_m(stay.lat, stay.lon, fix.lat, fix.lon)
    if away <= radius:
        return _extend(settings, state, stay, fix, zone, signals)
    if away <= radius + accuracy_m:
        return state  # inside the accuracy margin: neither in nor out (hysteresis)
    if stay.cluster is None:
        return replace(state, stay=_start(fix))
    if stay.pending is None:
        return replace(state, stay=replace(stay, pending=fix))
    # A second fix away from a confirmed stay: it ended, and the first one started the next.
    state = _depart(settings, state, stay, stay.pending, fix.ts_ms, zone, signals)
    nxt = _start(stay.pending)
    if distance_m(nxt.lat, nxt.lon, fix.lat, fix.lon) <= radius:
        return _extend(settings, replace(state, stay=nxt), nxt, fix, zone, signals)
    return replace(state, stay=_start(fix))


def _start(fix: Fix) -> Stay:
    return Stay(lat=fix.lat, lon=fix.lon, start_ms=fix.ts_ms, last_ms=fix.ts_ms)


def _extend(
    settings: RoutineSettings,
    state: RoutineState,
    stay: Stay,
    fix: Fix,
    zone: ZoneInfo,
    signals: list[RoutineSignal],
) -> RoutineState:
    n = stay.n + 1
    grown = replace(
        stay,
        lat=stay.lat + (fix.lat - stay.lat) / n,
        lon=stay.lon + (fix.lon - stay.lon) / n,
        n=n,
        last_ms=fix.ts_ms,
        pending=None,  # back inside: the fix away was jitter
    )
    confirmed = stay.cluster is not None
    if not confirmed and fix.ts_ms - stay.start_ms < settings.stay_min:
        return replace(state, stay=grown)
    clusters, idx = state.clusters, stay.cluster
    if idx is None:
        clusters, idx = attach(
            clusters, grown.lat, grown.lon, settings.cluster_radius_m, settings.max_clusters
        )
    begin = max(stay.last_ms if confirmed else stay.start_ms, fix.ts_ms - MAX_GAP_MS)
    folded = credit(clusters[idx], grown.lat, grown.lon, begin, fix.ts_ms, zone)
    clusters = (*clusters[:idx], folded, *clusters[idx + 1 :])
    if not confirmed:
        for label, (i, conf) in label_clusters(clusters, settings.min_days).items():
            if i == idx:
                signals.append(RoutineSignal("arrived", label, fix.ts_ms, None, conf))
    return replace(state, clusters=clusters, stay=replace(grown, cluster=idx))


def _depart(
    settings: RoutineSettings,
    state: RoutineState,
    stay: Stay,
    first_out: Fix,
    detected_ms: int,
    zone: ZoneInfo,
    signals: list[RoutineSignal],
) -> RoutineState:
    gap = first_out.ts_ms - stay.last_ms
    left_ms = stay.last_ms + (gap // 2 if gap <= settings.stay_min else 0)
    # Departures are learned from the best candidate home/work even before it is
    # trusted, so the routine is ready about when the place is.
    for label, (i, _) in label_clusters(state.clusters, 1).items():
        if i == stay.cluster:
            routine = _record(settings, getattr(state, label), left_ms, zone)
            state = replace(state, **{label: routine})
    for label, (i, conf) in label_clusters(state.clusters, settings.min_days).items():
        if i == stay.cluster:
            signals.append(RoutineSignal("left", label, detected_ms, None, conf))
    return replace(state, stay=None)


def _bins(settings: RoutineSettings) -> int:
    return 1440 // settings.bin_minutes


def _record(settings: RoutineSettings, routine: Routine, left_ms: int, zone: ZoneInfo) -> Routine:
    when = local_datetime(left_ms, zone)
    day = when.date().toordinal()
    weekday = is_weekday(day)
    hist = routine.weekday if weekday else routine.weekend
    if hist is None or len(hist.counts) != _bins(settings):
        hist = Histogram(counts=(0,) * _bins(settings))  # new, or the bin width changed
    counts = list(hist.counts)
    counts[(when.hour * 60 + when.minute) // settings.bin_minutes] += 1
    if max(counts) >= COUNT_CAP:
        counts = [c // 2 for c in counts]
    fresh = day != hist.last_day
    hist = Histogram(
        counts=tuple(counts), days=hist.days + fresh, last_day=day if fresh else hist.last_day
    )
    return replace(routine, weekday=hist) if weekday else replace(routine, weekend=hist)


def _usual_minute(settings: RoutineSettings, hist: Histogram | None) -> _Usual:
    """The usual local departure minute and its share of departures, if supported enough."""
    if hist is None or len(hist.counts) != _bins(settings) or hist.days < settings.min_days:
        return None
    counts, n = hist.counts, len(hist.counts)
    # The mode over three neighbouring bins, so a departure time that straddles a
    # bin edge (08:00 ± 10 min) is not split into two weak bins.
    # Only windows next to a non-empty bin can win; there are few of them.
    near = sorted({(b + o) % n for b, c in enumerate(counts) if c for o in (-1, 0, 1)})
    window = {b: counts[b - 1] + counts[b] + counts[(b + 1) % n] for b in near}
    best = max(near, key=window.__getitem__, default=0)
    support = window.get(best, 0)
    if support < settings.min_days:
        return None
    centre = sum(counts[(best + o) % n] * (best + o + 0.5) for o in (-1, 0, 1)) / support
    minute = round(centre * settings.bin_minutes) % 1440
    return minute, support / sum(counts)


def _usuals(settings: RoutineSettings, routine: Routine) -> tuple[_Usual, _Usual]:
    """The usual departure on weekdays and at weekends."""
    return _usual_minute(settings, routine.weekday), _usual_minute(settings, routine.weekend)


def _plan(
    settings: RoutineSettings, usuals: tuple[_Usual, _Usual], day: int, zone: ZoneInfo
) -> _Plan | None:
    usual = usuals[0] if is_weekday(day) else usuals[1]
    if usual is None:
        return None
    usual_ms = local_ms(day, usual[0], zone)
    return _Plan(due_ms=usual_ms - settings.lead_time, usual_ms=usual_ms, share=usual[1])


def next_due_ms(
    settings: RoutineSettings, state: RoutineState, now_ms: int, tz: str | None
) -> int | None:
    """When :func:`on_time` should next run: the earliest usual departure less lead time.

    Looks up to a week ahead, so the scheduler need not wait for an event to
    wake the next morning's anticipation. Returns ``now_ms`` when one is due
    now (its window runs until the usual departure), None when nothing is learned.
    """
    if not settings.enabled:
        return None
    zone = zone_for(tz)
    today = local_day(now_ms, zone)
    places = label_clusters(state.clusters, settings.min_days)
    usuals = {label: _usuals(settings, getattr(state, label)) for label in places}
    for day in range(today, today + 8):
        best: int | None = None
        for label in places:
            routine: Routine = getattr(state, label)
            plan = _plan(settings, usuals[label], day, zone)
            if plan is None or routine.fired_day >= day or plan.usual_ms <= now_ms:
                continue
            due = max(plan.due_ms, now_ms)
            best = due if best is None else min(best, due)
        if best is not None:
            return best
    return None


def on_time(
    settings: RoutineSettings, state: RoutineState, now_ms: int, tz: str | None
) -> tuple[RoutineState, list[RoutineSignal]]:
    """Offer ``about_to_leave`` when a usual departure is near, once per local day and place.

    It fires only while the customer is at that place; a day on which they are
    elsewhere at the due time (already left, away) is passed over silently.
    """
    if not settings.enabled:
        return state, []
    zone = zone_for(tz)
    today = local_day(now_ms, zone)
    signals: list[RoutineSignal] = []
    for label, (idx, conf) in label_clusters(state.clusters, settings.min_days).items():
        usuals = _usuals(settings, getattr(state, label))
        # Tomorrow too: a departure just after midnight is anticipated the evening before.
        for day in (today, today + 1):
            routine: Routine = getattr(state, label)
            plan = _plan(settings, usuals, day, zone)
            if plan is None or routine.fired_day >= day:
                continue
            if not plan.due_ms <= now_ms < plan.usual_ms:
                continue
            state = replace(state, **{label: replace(routine, fired_day=day)})
            if _present(settings, state, state.clusters[idx]):
                signals.append(
                    RoutineSignal("about_to_leave", label, now_ms, plan.usual_ms, conf * plan.share)
                )
    return state, signals


def _present(settings: RoutineSettings, state: RoutineState, place: Cluster) -> bool:
    stay = state.stay
    return stay is not None and (
        distance_m(stay.lat, stay.lon, place.lat, place.lon) <= settings.cluster_radius_m
    )
