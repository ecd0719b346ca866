"""Geofences and beacons: enter, dwell and exit from GPS fixes and beacon sightings.

Pure state transitions over a per-customer :class:`GeoState` (a msgspec Struct,
so it can be stored and snapshotted); every function takes the time in
milliseconds and returns the new state with the :class:`PlaceTransition` s it
produced, ordered by time (at one instant, in causal order: a
place is left before the next is entered). Nothing reads a clock.

GPS rules, with ``d`` the signed distance of the fix from the place's boundary
(negative inside), ``acc`` its accuracy radius (0 when the fix has none) and
``depth`` the place's radius (a polygon: its inscribed radius):

* **enter** when ``d <= -min(acc, depth / 2)``: the fix is inside by at least
  its accuracy, except that a place smaller than the fix's uncertainty is
  entered once the fix is in its inner half (otherwise a 30 m store could never
  be entered with a 40 m fix);
* **exit** when ``d >= hysteresis_m + acc``: even the near edge of the fix's
  accuracy disc is ``hysteresis_m`` outside;
* a fix between the two changes nothing; this band is what keeps jitter at an
  edge from flapping. Fixes less accurate than ``max_accuracy_m``, fixes older
  than the last fix and fixes that are not coordinates are ignored.

Beacon rules: a sighting matching one of a place's beacons (uuid ignoring
case; major and minor where the place gives them) enters the place if the
customer is not already inside, and refreshes its last sighting; with no
sighting for ``beacon_timeout`` the beacon evidence lapses. A place may have
both a shape and beacons: the customer is inside while *either* says so, so
the exit comes from whichever evidence ends last — a confident GPS exit while a
beacon is still fresh, or a beacon timeout while GPS does not say inside. A
sighting already stale when it arrives (``ts + beacon_timeout`` at or before
the latest time seen) is ignored, so a late upload cannot re-open a visit.

Dwell fires once per visit, stamped ``entered + dwell``: by :func:`on_time`
when the runtime's timer (set from :func:`next_due_ms`) comes due, or by the
next fix or sighting if that comes first. Due work always runs before an input
is applied, so the transitions do not depend on when timers happen to fire.
A visit ends only by an exit; GPS presence has no timeout (a phone that goes
quiet in a store is taken to be still there until a fix says otherwise).
``GeoSettings.expiry`` is how long a place moment stays valid, for the caller.
At most ``MAX_INSIDE`` places are held at once (further ones are not entered),
so the state stays small.

>>> from momently.moments.geo import Circle, GeoSettings, PlaceIndex, PlaceSpec
>>> store = PlaceSpec(id="s12", circle=Circle(lat=51.5, lon=-0.12, radius_m=80), dwell="5m")
>>> index = PlaceIndex([store], GeoSettings())
>>> state, out = on_fix(index, geo_state_of(), 51.5, -0.12, 10.0, 0)
>>> [(t.kind, t.at_ms) for t in out], next_due_ms(index, state)
([('enter', 0)], 300000)
>>> state, out = on_time(index, state, 300_000)
>>> [(t.kind, t.at_ms) for t in out]
[('dwell', 300000)]
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final, Literal

import msgspec

from momently.moments.geo import PlaceIndex, PlaceSpec

Via = Literal["gps", "beacon"]
TransitionKind = Literal["enter", "dwell", "exit"]
MAX_INSIDE: Final = 32


class PlaceTransition(msgspec.Struct, frozen=True):
    """The customer entered, dwelt in, or left a place, at ``at_ms``, seen by GPS or beacon."""

    place_id: str
    kind: TransitionKind
    at_ms: int
    via: Via


class Visit(msgspec.Struct, frozen=True, array_like=True):
    """A place the customer is inside: since when, how it was entered, and what says so."""

    entered_ms: int
    dwell_fired: bool
    via: Via
    last_seen_ms: int | None = None  # latest matching beacon sighting
    gps: bool = False  # the latest decisive fix was inside


class Fix(msgspec.Struct, frozen=True, array_like=True):
    """The latest GPS fix that was used."""

    lat: float
    lon: float
    accuracy_m: float | None
    ts_ms: int


class GeoState(msgspec.Struct, frozen=True):
    """One customer's place state; ``clock_ms`` is the latest time any input or timer showed."""

    inside: dict[str, Visit] = {}
    last_fix: Fix | None = None
    clock_ms: int | None = None


_DECODER: Final = msgspec.json.Decoder(GeoState)


def geo_state_of(snapshot: bytes | None = None) -> GeoState:
    """A fresh state, or the one saved by :func:`snapshot`."""
    return GeoState() if snapshot is None else _DECODER.decode(snapshot)


def snapshot(state: GeoState) -> bytes:
    """The state as JSON bytes."""
    return msgspec.json.encode(state)


def _later(a: int | None, b: int) -> int:
    return b if a is None or b > a else a


def _advance(
    index: PlaceIndex, inside: dict[str, Visit], now_ms: int, out: list[PlaceTransition]
) -> dict[str, Visit]:
    """Fire the dwells and beacon exits due at or before ``now_ms``; a new dict if any."""
    if not inside:
        return inside
    timeout = index.settings.beacon_timeout
    changes: dict[str, Visit | None] = {}  # None: the visit ends
    for pid, v in inside.items():
        place = index.get(pid)
        if place is None:
            changes[pid] = None  # the playbook no longer has this place
            continue
        dwell_due = None if v.dwell_fired else v.entered_ms + place.dwell
        exit_due = None if v.gps or v.last_seen_ms is None else v.last_seen_ms + timeout
        if dwell_due is not None and exit_due is not None and exit_due < dwell_due:
            dwell_due = None  # leaves before the dwell comes due
        if dwell_due is not None and dwell_due <= now_ms:
            out.append(PlaceTransition(pid, "dwell", dwell_due, v.via))
            changes[pid] = msgspec.structs.replace(v, dwell_fired=True)
        if exit_due is not None and exit_due <= now_ms:
            out.append(PlaceTransition(pid, "exit", exit_due, "beacon"))
            changes[pid] = None
    if not changes:
        return inside
    new = dict(inside)
    for pid, change in changes.items():
        if change is None:
            del new[pid]
        else:
            new[pid] = change
    return new


def _sorted(out: list[PlaceTransition]) -> list[PlaceTransition]:
    # stable: transitions at the same instant keep the causal order they were made in
    out.sort(key=_at)
    return out


def _at(t: PlaceTransition) -> int:
    return t.at_ms


def _usable(lat: float, lon: float, accuracy_m: float | None, max_accuracy_m: float) -> bool:
    if not (math.isfinite(lat) and math.isfinite(lon)):
        return False
    if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
        return False
    if accuracy_m is None:
        return True
    return math.isfinite(accuracy_m) and 0.0 <= accuracy_m <= max_accuracy_m


def enter_margin_m(place: PlaceSpec, accuracy_m: float) -> float:
    """How far inside a fix must be to enter: its accuracy, at most half the place's depth."""
    return min(accuracy_m, place.depth_m() / 2)


def on_fix(
    index: PlaceIndex,
    state: GeoState,
    lat: float,
    lon: float,
    accuracy_m: float | None,
    ts_ms: int,
) -> tuple[GeoState, list[PlaceTransition]]:
    """Apply one GPS fix: due timers first, then confident exits and enters."""
    settings = index.settings
    if not _usable(lat, lon, accuracy_m, settings.max_accuracy_m):
        return state, []
    if state.last_fix is not None and ts_ms < state.last_fix.ts_ms:
        return state, []  # out of order
    out: list[PlaceTransition] = []
    inside = _advance(index, state.inside, ts_ms, out)
    acc = accuracy_m or 0.0
    exit_at = settings.hysteresis_m + acc
    near = index.near(lat, lon, exit_at)
    distance = {place.id: d for place, d in near}
    new = dict(inside)
    for pid, v in inside.items():
        place = index.get(pid)
        if place is None or not place.has_area:
            continue  # GPS says nothing about a beacon-only place
        d = distance.get(pid, math.inf)
        if d >= exit_at and v.gps:
            beacon_fresh = (
                v.last_seen_ms is not None and v.last_seen_ms + settings.beacon_timeout > ts_ms
            )
            if beacon_fresh:
                new[pid] = msgspec.structs.replace(v, gps=False)
            else:
                del new[pid]
                out.append(PlaceTransition(pid, "exit", ts_ms, "gps"))
        elif d <= -enter_margin_m(place, acc) and not v.gps:
            new[pid] = msgspec.structs.replace(v, gps=True)
    for place, d in near:
        if place.id in new or len(new) >= MAX_INSIDE:
            continue
        if d <= -enter_margin_m(place, acc):
            new[place.id] = Visit(ts_ms, False, "gps", None, True)
            out.append(PlaceTransition(place.id, "enter", ts_ms, "gps"))
    new = _advance(index, new, ts_ms, out)  # a zero dwell is due at once
    fix = Fix(lat, lon, accuracy_m, ts_ms)
    return GeoState(new, fix, _later(state.clock_ms, ts_ms)), _sorted(out)


def on_beacon(
    index: PlaceIndex,
    state: GeoState,
    uuid: str,
    major: int | None,
    minor: int | None,
    ts_ms: int,
) -> tuple[GeoState, list[PlaceTransition]]:
    """Apply one beacon sighting: enter its places, or keep them alive."""
    places = index.beacon_places(uuid, major, minor)
    timeout = index.settings.beacon_timeout
    if not places or (state.clock_ms is not None and ts_ms + timeout <= state.clock_ms):
        return state, []
    out: list[PlaceTransition] = []
    # a sighting at the very instant its beacon would time out keeps the visit open
    new = dict(_advance(index, state.inside, ts_ms - 1, out))
    for place in places:
        v = new.get(place.id)
        if v is None:
            if len(new) < MAX_INSIDE:
                new[place.id] = Visit(ts_ms, False, "beacon", ts_ms, False)
                out.append(PlaceTransition(place.id, "enter", ts_ms, "beacon"))
        elif v.last_seen_ms is None or v.last_seen_ms < ts_ms:
            new[place.id] = msgspec.structs.replace(v, last_seen_ms=ts_ms)
    new = _advance(index, new, ts_ms, out)
    return GeoState(new, state.last_fix, _later(state.clock_ms, ts_ms)), _sorted(out)


def on_time(
    index: PlaceIndex, state: GeoState, now_ms: int
) -> tuple[GeoState, list[PlaceTransition]]:
    """Fire the dwells and beacon exits due at or before ``now_ms``."""
    out: list[PlaceTransition] = []
    inside = _advance(index, state.inside, now_ms, out)
    clock = _later(state.clock_ms, now_ms)
    if inside is state.inside and clock == state.clock_ms:
        return state, out
    return GeoState(inside, state.last_fix, clock), _sorted(out)


def next_due_ms(index: PlaceIndex, state: GeoState) -> int | None:
    """When :func:`on_time` will next have something to fire with no new input, if ever."""
    due: int | None = None
    timeout = index.settings.beacon_timeout
    for pid, v in state.inside.items():
        place = index.get(pid)
        if place is None:
            continue
        if not v.dwell_fired:
            t = v.entered_ms + place.dwell
            due = t if due is None or t < due else due
        if not v.gps and v.last_seen_ms is not None:
            t = v.last_seen_ms + timeout
            due = t if due is None or t < due else due
    return due


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        return float(value)
    except ValueError:
        return None


def fix_from_context(context: Mapping[str, Any]) -> tuple[float, float, float | None] | None:
    """``(lat, lon, accuracy)`` from an event's ``context.location``, or ``None``."""
    location = context.get("location")
    if not isinstance(location, Mapping):
        return None
    lat, lon = _number(location.get("latitude")), _number(location.get("longitude"))
    if lat is None or lon is None:
        return None
    return lat, lon, _number(location.get("accuracy"))


def sighting_from_properties(
    properties: Mapping[str, Any],
) -> tuple[str, int | None, int | None] | None:
    """``(uuid, major, minor)`` from a ``Beacon Sighted`` event's properties, or ``None``."""
    uuid = properties.get("uuid")
    if not isinstance(uuid, str) or not uuid.strip():
        return None
    major, minor = _number(properties.get("major")), _number(properties.get("minor"))
    return (
        uuid,
        None if major is None or not major.is_integer() else int(major),
        None if minor is None or not minor.is_integer() else int(minor),
    )
