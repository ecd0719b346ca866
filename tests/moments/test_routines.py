"""Learned places and routines, on synthetic but realistic GPS traces from a seeded random."""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import msgspec
import pytest

from momently.moments.learned_places import Cluster, credit, distance_m, zone_for
from momently.moments.routines import (
    RoutineSettings,
    RoutineSignal,
    RoutineState,
    learned_places,
    next_due_ms,
    on_fix,
    on_time,
)

LONDON = "Europe/London"
NEW_YORK = "America/New_York"
BRIXTON, CITY, COMMON = (51.4613, -0.1156), (51.5154, -0.0922), (51.4560, -0.1470)
BROOKLYN, MIDTOWN, PARK = (40.6782, -73.9442), (40.7549, -73.9840), (40.7812, -73.9665)
SETTINGS = RoutineSettings()
MIN = 60_000

LatLon = tuple[float, float]


@dataclass(frozen=True)
class Ping:
    lat: float
    lon: float
    accuracy_m: float
    ts_ms: int


def at(tz: str, d: date, hour: int, minute: int = 0) -> int:
    """A local wall-clock time as ms since the epoch."""
    wall = datetime(d.year, d.month, d.day, hour, minute, tzinfo=ZoneInfo(tz))
    return int(wall.timestamp() * 1000)


def local(tz: str, ts_ms: int) -> datetime:
    return datetime.fromtimestamp(ts_ms / 1000, ZoneInfo(tz))


def minute_of_day(tz: str, ts_ms: int) -> int:
    t = local(tz, ts_ms)
    return t.hour * 60 + t.minute


def offset(p: LatLon, north_m: float, east_m: float) -> LatLon:
    return (
        p[0] + north_m / 111_320,
        p[1] + east_m / (111_320 * math.cos(math.radians(p[0]))),
    )


def commuter_plan(
    rng: random.Random,
    tz: str,
    first: date,
    days: int,
    home: LatLon,
    work: LatLon,
    outing: LatLon,
    leave: tuple[int, int] = (8, 0),
    back: tuple[int, int] = (17, 30),
) -> list[tuple[int, LatLon]]:
    """Waypoints of a commuter's days: weekdays at work, a weekend outing to the park."""
    points: list[tuple[int, LatLon]] = [(at(tz, first, 0), home)]
    for k in range(days):
        d = first + timedelta(days=k)
        jitter = rng.uniform(-10, 10) * MIN
        if d.weekday() < 5:
            out = at(tz, d, *leave) + int(jitter)
            home_again = at(tz, d, *back) + int(rng.uniform(-10, 10) * MIN)
            points += [(out, home), (out + 50 * MIN, work)]
            points += [(home_again, work), (home_again + 50 * MIN, home)]
        else:
            out = at(tz, d, 11) + int(jitter)
            points += [(out, home), (out + 20 * MIN, outing)]
            points += [(out + 140 * MIN, outing), (out + 160 * MIN, home)]
    points.append((at(tz, first + timedelta(days=days), 0) - 1, home))
    return points


def sample(rng: random.Random, points: Sequence[tuple[int, LatLon]]) -> list[Ping]:
    """GPS pings every 4-6 minutes along the waypoints, with ±20 m noise."""
    pings: list[Ping] = []
    t, seg = points[0][0], 0
    while t < points[-1][0]:
        while points[seg + 1][0] <= t:
            seg += 1
        (t0, a), (t1, b) = points[seg], points[seg + 1]
        f = (t - t0) / (t1 - t0)
        here = (a[0] + (b[0] - a[0]) * f, a[1] + (b[1] - a[1]) * f)
        lat, lon = offset(here, rng.uniform(-20, 20), rng.uniform(-20, 20))
        pings.append(Ping(lat, lon, rng.uniform(5, 30), t))
        t += rng.randint(240_000, 360_000)
    return pings


def commuter(
    seed: int, tz: str, first: date, days: int, places: tuple[LatLon, LatLon, LatLon], **kw: object
) -> list[Ping]:
    rng = random.Random(seed)
    home, work, outing = places
    return sample(rng, commuter_plan(rng, tz, first, days, home, work, outing, **kw))  # type: ignore[arg-type]


def drive(
    state: RoutineState, pings: Iterable[Ping], tz: str, settings: RoutineSettings = SETTINGS
) -> tuple[RoutineState, list[RoutineSignal]]:
    """Feed pings in order, running on_time whenever the scheduler would wake up in between."""
    signals: list[RoutineSignal] = []
    now = max(state.last_ms, 0)
    for p in pings:
        while (due := next_due_ms(settings, state, now, tz)) is not None and due <= p.ts_ms:
            state, fired = on_time(settings, state, due, tz)
            assert fired or next_due_ms(settings, state, due, tz) != due, "scheduler would spin"
            signals += fired
            now = due
        state, out = on_fix(settings, state, p.lat, p.lon, p.accuracy_m, p.ts_ms, tz)
        signals += out
        now = p.ts_ms
    return state, signals


def on_day(tz: str, signals: Iterable[RoutineSignal], d: date) -> list[RoutineSignal]:
    return [s for s in signals if local(tz, s.at_ms).date() == d]


def anticipations(signals: Iterable[RoutineSignal]) -> list[RoutineSignal]:
    return [s for s in signals if s.kind == "about_to_leave"]


MONDAY = date(2024, 5, 6)
NEXT_MONDAY = MONDAY + timedelta(days=7)
LONDON_PLACES = (BRIXTON, CITY, COMMON)


@pytest.fixture(scope="module")
def london_week() -> tuple[RoutineState, list[RoutineSignal]]:
    return drive(RoutineState(), commuter(1, LONDON, MONDAY, 7, LONDON_PLACES), LONDON)


def test_settings_have_defaults_and_reject_nonsense() -> None:
    s = RoutineSettings()
    assert (s.stay_min, s.lead_time, s.expiry) == (20 * MIN, 20 * MIN, 45 * MIN)
    assert RoutineSettings(lead_time="10m", stay_min=600).stay_min == 10 * MIN
    for bad in ({"bin_minutes": 7}, {"cluster_radius_m": 0}, {"min_days": 0}, {"radius": 1}):
        with pytest.raises(ValueError):
            RoutineSettings.model_validate(bad)


def test_a_week_of_commuting_learns_home_and_work(
    london_week: tuple[RoutineState, list[RoutineSignal]],
) -> None:
    state, _ = london_week
    places = {p.label: p for p in learned_places(SETTINGS, state)}
    assert set(places) == {"home", "work"}
    assert distance_m(places["home"].lat, places["home"].lon, *BRIXTON) < 100
    assert distance_m(places["work"].lat, places["work"].lon, *CITY) < 100
    assert all(0.5 < p.confidence <= 1 for p in places.values())


def test_the_next_weekday_anticipates_leaving_home_once(
    london_week: tuple[RoutineState, list[RoutineSignal]],
) -> None:
    state, _ = london_week
    due = next_due_ms(SETTINGS, state, at(LONDON, NEXT_MONDAY, 0), LONDON)
    assert due is not None
    assert local(LONDON, due).date() == NEXT_MONDAY
    assert abs(minute_of_day(LONDON, due) - (7 * 60 + 40)) <= SETTINGS.bin_minutes

    monday = commuter(2, LONDON, NEXT_MONDAY, 1, LONDON_PLACES)
    after, signals = drive(state, monday, LONDON)
    ahead = anticipations(signals)
    assert [s.label for s in ahead] == ["home", "work"]  # leave home, later leave work
    home = ahead[0]
    assert home.at_ms == due and home.usual_ms == due + SETTINGS.lead_time
    assert abs(minute_of_day(LONDON, home.usual_ms) - 8 * 60) <= SETTINGS.bin_minutes
    assert abs(minute_of_day(LONDON, ahead[1].at_ms) - (17 * 60 + 10)) <= SETTINGS.bin_minutes
    assert 0 < home.confidence <= 1
    # The day's story in order: anticipated, left home, arrived at work, left work, home again.
    kinds = [(s.kind, s.label) for s in signals]
    assert kinds == [
        ("about_to_leave", "home"),
        ("left", "home"),
        ("arrived", "work"),
        ("about_to_leave", "work"),
        ("left", "work"),
        ("arrived", "home"),
    ]
    # Asked again the same morning, it stays silent: once per local day.
    for minutes in (1, 5, 15):
        _, again = on_time(SETTINGS, after, due + minutes * MIN, LONDON)
        assert again == []
    replay, first = on_time(SETTINGS, state, due + MIN, LONDON)
    assert [s.kind for s in first] == ["about_to_leave"]
    assert on_time(SETTINGS, replay, due + 2 * MIN, LONDON)[1] == []


def test_no_anticipation_when_the_customer_already_left(
    london_week: tuple[RoutineState, list[RoutineSignal]],
) -> None:
    state, _ = london_week
    early = commuter(9, LONDON, NEXT_MONDAY, 1, LONDON_PLACES, leave=(7, 0))
    after, signals = drive(state, early, LONDON)
    assert [s.label for s in anticipations(signals)] == ["work"]  # home was passed over
    assert ("left", "home") in [(s.kind, s.label) for s in signals]
    # The day is done for home: the next anticipation is Tuesday's.
    due = next_due_ms(SETTINGS, after, at(LONDON, NEXT_MONDAY, 23), LONDON)
    assert due is not None and local(LONDON, due).date() == NEXT_MONDAY + timedelta(days=1)


def test_nothing_is_anticipated_before_min_days() -> None:
    pings = commuter(3, LONDON, MONDAY, 5, LONDON_PLACES)
    state, signals = RoutineState(), []
    for k in range(5):
        d = MONDAY + timedelta(days=k)
        if k == 2:  # two weekdays of departures are not yet a routine
            assert next_due_ms(SETTINGS, state, at(LONDON, d, 0), LONDON) is None
        today = [p for p in pings if local(LONDON, p.ts_ms).date() == d]
        state, out = drive(state, today, LONDON)
        signals += out
    days = [local(LONDON, s.at_ms).date() for s in anticipations(signals)]
    assert min(days) == MONDAY + timedelta(days=3)  # Thursday, after three days of departures
    # A stricter playbook waits longer.
    strict = RoutineSettings(min_days=5)
    _, out = drive(RoutineState(), pings, LONDON, strict)
    assert anticipations(out) == []


def test_a_weekend_day_does_not_fire_the_weekday_routine(
    london_week: tuple[RoutineState, list[RoutineSignal]],
) -> None:
    state, signals = london_week
    saturday, sunday = MONDAY + timedelta(days=5), MONDAY + timedelta(days=6)
    assert anticipations(on_day(LONDON, signals, saturday) + on_day(LONDON, signals, sunday)) == []
    # The customer did leave home at the weekend; that is still seen as a departure.
    assert any(s.kind == "left" for s in on_day(LONDON, signals, saturday))
    fresh, _ = drive(
        RoutineState(), commuter(1, LONDON, MONDAY, 5, LONDON_PLACES), LONDON
    )  # Mon-Fri only
    due = next_due_ms(SETTINGS, fresh, at(LONDON, saturday, 0), LONDON)
    assert due is not None and local(LONDON, due).date() == NEXT_MONDAY
    for hour in range(24):
        assert on_time(SETTINGS, fresh, at(LONDON, saturday, hour, 40), LONDON)[1] == []


@pytest.mark.parametrize("first", [date(2024, 3, 25), date(2024, 10, 21)], ids=["spring", "autumn"])
def test_a_daylight_saving_change_keeps_the_routine_in_local_time(first: date) -> None:
    # Two weeks straddling the change (31 March / 27 October 2024 in London): in
    # UTC the departures move by an hour half way through; locally they do not.
    state, signals = drive(RoutineState(), commuter(4, LONDON, first, 14, LONDON_PLACES), LONDON)
    monday = first + timedelta(days=14)
    due = next_due_ms(SETTINGS, state, at(LONDON, monday, 0), LONDON)
    assert due is not None
    assert abs(minute_of_day(LONDON, due) - (7 * 60 + 40)) <= SETTINGS.bin_minutes
    second_week = at(LONDON, first + timedelta(days=7), 0)
    ahead = [s for s in anticipations(signals) if s.at_ms >= second_week]
    weekdays = [s for s in ahead if s.label == "home" and local(LONDON, s.at_ms).weekday() < 5]
    assert len(weekdays) == 5  # every weekday of the second week, at the same local time
    for s in weekdays:
        assert abs(minute_of_day(LONDON, s.at_ms) - (7 * 60 + 40)) <= SETTINGS.bin_minutes
    # By the second weekend the weekend outing (11:00) has become a routine of its own.
    weekend = [s for s in ahead if local(LONDON, s.at_ms).weekday() >= 5]
    assert [s.label for s in weekend] == ["home"]
    assert abs(minute_of_day(LONDON, weekend[0].at_ms) - (10 * 60 + 40)) <= SETTINGS.bin_minutes


def test_a_new_yorker_gets_their_own_local_times() -> None:
    first = date(2024, 6, 3)
    pings = commuter(5, NEW_YORK, first, 7, (BROOKLYN, MIDTOWN, PARK), leave=(7, 15))
    state, _ = drive(RoutineState(), pings, NEW_YORK)
    places = {p.label: p for p in learned_places(SETTINGS, state)}
    assert distance_m(places["home"].lat, places["home"].lon, *BROOKLYN) < 100
    assert distance_m(places["work"].lat, places["work"].lon, *MIDTOWN) < 100
    due = next_due_ms(SETTINGS, state, at(NEW_YORK, first + timedelta(days=7), 0), NEW_YORK)
    assert due is not None
    assert abs(minute_of_day(NEW_YORK, due) - (6 * 60 + 55)) <= SETTINGS.bin_minutes
    assert 10 <= local("UTC", due).hour <= 11  # 06:55 EDT; a UTC or London reading would differ


def test_jitter_inside_a_stay_makes_no_extra_place_and_no_departure() -> None:
    rng = random.Random(6)
    pings, t = [], at(LONDON, MONDAY, 0)
    for i in range(3 * 24 * 12):  # three days at home, a ping every ~5 minutes
        lat, lon = offset(BRIXTON, rng.uniform(-40, 40), rng.uniform(-40, 40))
        accuracy = rng.uniform(5, 60)
        if i % 11 == 5:  # a lone wild fix far off, claiming fair accuracy
            lat, lon = offset(BRIXTON, rng.choice([-1, 1]) * 400, rng.uniform(-300, 300))
            accuracy = 40
        if i % 13 == 7:  # a coarse cell-tower fix: ignored
            lat, lon = offset(BRIXTON, 2000, 0)
            accuracy = 900
        pings.append(Ping(lat, lon, accuracy, t))
        t += rng.randint(240_000, 360_000)
    state, signals = drive(RoutineState(), pings, LONDON)
    assert len(state.clusters) == 1
    assert distance_m(state.clusters[0].lat, state.clusters[0].lon, *BRIXTON) < 30
    assert [s.kind for s in signals] == []  # never trusted-then-left; no flapping
    assert [p.label for p in learned_places(SETTINGS, state)] == ["home"]


def test_memory_stays_bounded_for_a_wanderer() -> None:
    rng = random.Random(7)
    state, t = RoutineState(), at(LONDON, MONDAY, 0)
    for _ in range(30 * 12):  # a month of stays of 25-90 minutes all over London
        spot = offset(BRIXTON, rng.uniform(-15_000, 15_000), rng.uniform(-15_000, 15_000))
        end = t + rng.randint(25, 90) * MIN
        while t < end:
            lat, lon = offset(spot, rng.uniform(-20, 20), rng.uniform(-20, 20))
            state, _ = on_fix(SETTINGS, state, lat, lon, 15.0, t, LONDON)
            assert len(state.clusters) <= SETTINGS.max_clusters
            t += 5 * MIN
    assert len(state.clusters) == SETTINGS.max_clusters
    assert len(msgspec.json.encode(state)) < 2_500


def test_state_round_trips_through_json_and_stays_small() -> None:
    pings = commuter(8, LONDON, MONDAY, 30, LONDON_PLACES)
    half = len(pings) // 2
    state, _ = drive(RoutineState(), pings[:half], LONDON)
    decoded = msgspec.json.decode(msgspec.json.encode(state), type=RoutineState)
    assert decoded == state
    # Carrying on from the stored copy gives exactly what carrying on in memory gives.
    two_days = pings[half : half + 2 * 24 * 12]
    assert drive(decoded, two_days, LONDON) == drive(state, two_days, LONDON)
    final, _ = drive(state, pings[half:], LONDON)
    assert len(final.clusters) == 3  # home, work, the weekend park
    assert len(msgspec.json.encode(final)) < 2_000  # 30 days of history in under 2 kB


@pytest.mark.parametrize(
    ("evening", "night_hours"), [(date(2024, 3, 30), 7), (date(2024, 10, 26), 9)]
)
def test_a_night_across_a_clock_change_counts_its_real_length(
    evening: date, night_hours: int
) -> None:
    zone = zone_for(LONDON)
    start, end = at(LONDON, evening, 22), at(LONDON, evening + timedelta(days=1), 6)
    place = credit(Cluster(lat=BRIXTON[0], lon=BRIXTON[1]), *BRIXTON, start, end, zone)
    assert place.night_ms == night_hours * 3_600_000 == place.dwell_ms
    assert place.days == 2 and place.weekday_work_ms == 0
    # Split into five-minute pieces (the fast path for each), the sums agree.
    pieces = Cluster(lat=BRIXTON[0], lon=BRIXTON[1])
    for t in range(start, end, 5 * MIN):
        pieces = credit(pieces, *BRIXTON, t, min(t + 5 * MIN, end), zone)
    assert (pieces.night_ms, pieces.dwell_ms, pieces.days) == (
        place.night_ms,
        place.dwell_ms,
        place.days,
    )


def test_late_duplicate_and_coarse_fixes_are_ignored(
    london_week: tuple[RoutineState, list[RoutineSignal]],
) -> None:
    state, _ = london_week
    last = state.last_ms
    assert on_fix(SETTINGS, state, *CITY, 10.0, last - MIN, LONDON) == (state, [])
    assert on_fix(SETTINGS, state, *CITY, 10.0, last, LONDON) == (state, [])
    assert on_fix(SETTINGS, state, *CITY, 250.0, last + MIN, LONDON) == (state, [])
    assert on_fix(SETTINGS, state, math.nan, 0.0, 10.0, last + MIN, LONDON) == (state, [])


def test_disabled_does_nothing_and_unknown_zone_means_utc(
    london_week: tuple[RoutineState, list[RoutineSignal]],
) -> None:
    state, _ = london_week
    off = RoutineSettings(enabled=False)
    assert on_fix(off, state, *CITY, 10.0, state.last_ms + MIN, LONDON) == (state, [])
    assert next_due_ms(off, state, state.last_ms, LONDON) is None
    now = at("UTC", NEXT_MONDAY, 0)
    assert next_due_ms(SETTINGS, state, now, None) == next_due_ms(SETTINGS, state, now, "Mars/Base")
