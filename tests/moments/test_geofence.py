"""Geofences and beacons: enter, dwell and exit, jitter at the edge, beacons, bad specs."""

from __future__ import annotations

import math
import random

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from momently.moments.geo import (
    EARTH_RADIUS_M,
    BeaconSpec,
    Circle,
    GeoSettings,
    PlaceIndex,
    PlaceSpec,
    boundary_distance_m,
    distance_m,
)
from momently.moments.geofence import (
    MAX_INSIDE,
    GeoState,
    PlaceTransition,
    enter_margin_m,
    fix_from_context,
    geo_state_of,
    next_due_ms,
    on_beacon,
    on_fix,
    on_time,
    sighting_from_properties,
    snapshot,
)

T0 = 1_790_000_000_000
MIN = 60_000
LAT, LON = 51.5155, -0.1420  # a store on Oxford Street
UUID = "F7826DA6-4FA2-4E98-8024-BC5B71E0893E"
SETTINGS = GeoSettings()


def offset(lat: float, lon: float, bearing_deg: float, metres: float) -> tuple[float, float]:
    """The point ``metres`` from (lat, lon) along a bearing, on the same sphere as distance_m."""
    delta = metres / EARTH_RADIUS_M
    theta, p1, l1 = math.radians(bearing_deg), math.radians(lat), math.radians(lon)
    p2 = math.asin(
        math.sin(p1) * math.cos(delta) + math.cos(p1) * math.sin(delta) * math.cos(theta)
    )
    l2 = l1 + math.atan2(
        math.sin(theta) * math.sin(delta) * math.cos(p1),
        math.cos(delta) - math.sin(p1) * math.sin(p2),
    )
    return math.degrees(p2), math.degrees(l2)


def store(radius_m: float = 60.0, dwell: str = "5m", **extra: object) -> PlaceSpec:
    return PlaceSpec.model_validate(
        {"id": "s12", "circle": {"lat": LAT, "lon": LON, "radius_m": radius_m}, "dwell": dwell}
        | extra
    )


def square(side_m: float = 100.0, dwell: str = "5m") -> PlaceSpec:
    """A square whose south-west corner is the store's point."""
    north, _ = offset(LAT, LON, 0, side_m)
    _, east = offset(LAT, LON, 90, side_m)
    vertices = [(LAT, LON), (north, LON), (north, east), (LAT, east)]
    return PlaceSpec.model_validate({"id": "mall", "polygon": vertices, "dwell": dwell})


def kinds(out: list[PlaceTransition]) -> list[tuple[str, str, int]]:
    return [(t.kind, t.place_id, t.at_ms) for t in out]


# --- geometry ---------------------------------------------------------------------------------


def test_distance_and_signed_boundary_distance_of_a_circle() -> None:
    assert distance_m(0.0, 0.0, 1.0, 0.0) == pytest.approx(111_195, abs=1)
    place = store(radius_m=60)
    assert boundary_distance_m(place, LAT, LON) == pytest.approx(-60)
    assert boundary_distance_m(place, *offset(LAT, LON, 33, 100)) == pytest.approx(40, abs=1e-6)


def test_signed_boundary_distance_of_a_polygon() -> None:
    mall = square(100)
    centre = offset(*offset(LAT, LON, 0, 50), 90, 50)
    assert boundary_distance_m(mall, *centre) == pytest.approx(-50, abs=0.5)
    assert boundary_distance_m(mall, *offset(LAT, LON, 180, 30)) == pytest.approx(30, abs=0.5)
    assert mall.depth_m() == pytest.approx(50, abs=1)


def test_index_candidates_agree_with_measuring_every_place() -> None:
    rng = random.Random(7)
    places = [
        PlaceSpec(id=f"c{i}", circle=Circle(lat=LAT + rng.uniform(-0.05, 0.05),
                  lon=LON + rng.uniform(-0.08, 0.08), radius_m=rng.uniform(20, 400)))
        for i in range(300)
    ]  # fmt: skip
    places.append(PlaceSpec(id="city", circle=Circle(lat=LAT, lon=LON, radius_m=40_000)))
    places.append(PlaceSpec(id="aisle-7", beacons=(BeaconSpec(uuid=UUID, major=7),)))
    index = PlaceIndex(places, SETTINGS)
    for _ in range(400):
        lat, lon = LAT + rng.uniform(-0.06, 0.06), LON + rng.uniform(-0.09, 0.09)
        pad = rng.uniform(0, 600)
        want = {p.id for p in places if boundary_distance_m(p, lat, lon) <= pad}
        got = [p.id for p in index.candidates(lat, lon, pad)]
        assert set(got) == want
        assert len(got) == len(want)
    assert index.place("city").circle is not None
    with pytest.raises(KeyError):
        index.place("nowhere")


# --- GPS: enter, dwell, exit ------------------------------------------------------------------


def test_circle_enter_dwell_exit() -> None:
    index = PlaceIndex([store(dwell="5m")], SETTINGS)
    state, out = on_fix(index, geo_state_of(), *offset(LAT, LON, 10, 20), 15.0, T0)
    assert kinds(out) == [("enter", "s12", T0)] and out[0].via == "gps"
    state, out = on_fix(index, state, LAT, LON, 12.0, T0 + 2 * MIN)
    assert out == []
    # the next fix comes after the dwell time: the dwell is stamped when it came due
    state, out = on_fix(index, state, LAT, LON, 12.0, T0 + 7 * MIN)
    assert kinds(out) == [("dwell", "s12", T0 + 5 * MIN)]
    state, out = on_fix(index, state, LAT, LON, 12.0, T0 + 9 * MIN)
    assert out == []  # once per visit
    state, out = on_fix(index, state, *offset(LAT, LON, 200, 300), 20.0, T0 + 12 * MIN)
    assert kinds(out) == [("exit", "s12", T0 + 12 * MIN)] and out[0].via == "gps"
    assert state.inside == {}
    # a new visit dwells again
    state, out = on_fix(index, state, LAT, LON, 5.0, T0 + 20 * MIN)
    state, out2 = on_time(index, state, T0 + 25 * MIN)
    assert kinds(out + out2) == [("enter", "s12", T0 + 20 * MIN), ("dwell", "s12", T0 + 25 * MIN)]


def test_polygon_enter_dwell_exit() -> None:
    index = PlaceIndex([square(120, dwell="10m")], SETTINGS)
    centre = offset(*offset(LAT, LON, 0, 60), 90, 60)
    state, out = on_fix(index, geo_state_of(), *centre, 20.0, T0)
    assert kinds(out) == [("enter", "mall", T0)]
    assert next_due_ms(index, state) == T0 + 10 * MIN
    state, out = on_time(index, state, T0 + 10 * MIN)
    assert kinds(out) == [("dwell", "mall", T0 + 10 * MIN)]
    # 40 m south of the south edge with 10 m accuracy: inside the 25 + 10 m band, no exit yet
    state, out = on_fix(index, state, *offset(*centre, 180, 60 + 30), 10.0, T0 + 11 * MIN)
    assert out == []
    state, out = on_fix(index, state, *offset(*centre, 180, 60 + 36), 10.0, T0 + 12 * MIN)
    assert kinds(out) == [("exit", "mall", T0 + 12 * MIN)]


def test_enter_needs_the_fix_confidently_inside() -> None:
    index = PlaceIndex([store(radius_m=100)], SETTINGS)
    # 20 m inside the edge with 30 m accuracy: it may be outside, so no enter
    state, out = on_fix(index, geo_state_of(), *offset(LAT, LON, 0, 80), 30.0, T0)
    assert out == [] and state.inside == {}
    # 31 m inside with 30 m accuracy: enter
    state, out = on_fix(index, state, *offset(LAT, LON, 0, 69), 30.0, T0 + 1000)
    assert kinds(out) == [("enter", "s12", T0 + 1000)]


def test_a_place_smaller_than_the_fix_uncertainty_can_still_be_entered() -> None:
    tiny = store(radius_m=30)
    index = PlaceIndex([tiny], SETTINGS)
    assert enter_margin_m(tiny, 80.0) == 15.0  # half the radius, not the accuracy
    state, out = on_fix(index, geo_state_of(), *offset(LAT, LON, 0, 16), 80.0, T0)
    assert out == []
    state, out = on_fix(index, state, *offset(LAT, LON, 0, 14), 80.0, T0 + 1000)
    assert kinds(out) == [("enter", "s12", T0 + 1000)]


def test_exit_needs_the_fix_beyond_hysteresis_plus_accuracy() -> None:
    index = PlaceIndex([store(radius_m=60)], GeoSettings(hysteresis_m=25))
    state, _ = on_fix(index, geo_state_of(), LAT, LON, 10.0, T0)
    state, out = on_fix(index, state, *offset(LAT, LON, 90, 60 + 25 + 20 - 1), 20.0, T0 + 1000)
    assert out == [] and "s12" in state.inside
    state, out = on_fix(index, state, *offset(LAT, LON, 90, 60 + 25 + 20 + 1), 20.0, T0 + 2000)
    assert kinds(out) == [("exit", "s12", T0 + 2000)]


def test_a_fix_without_accuracy_counts_as_exact() -> None:
    index = PlaceIndex([store(radius_m=60)], SETTINGS)
    state, out = on_fix(index, geo_state_of(), *offset(LAT, LON, 0, 59), None, T0)
    assert kinds(out) == [("enter", "s12", T0)]
    state, out = on_fix(index, state, *offset(LAT, LON, 0, 84), None, T0 + 1)
    assert out == []
    state, out = on_fix(index, state, *offset(LAT, LON, 0, 86), None, T0 + 2)
    assert kinds(out) == [("exit", "s12", T0 + 2)]


def test_inaccurate_invalid_and_out_of_order_fixes_are_ignored() -> None:
    index = PlaceIndex([store()], GeoSettings(max_accuracy_m=100))
    empty = geo_state_of()
    for lat, lon, acc in [(LAT, LON, 101.0), (math.nan, LON, 5.0), (LAT, 200.0, 5.0),
                          (LAT, LON, -1.0), (LAT, LON, math.inf)]:  # fmt: skip
        state, out = on_fix(index, empty, lat, lon, acc, T0)
        assert state is empty and out == []
    state, _ = on_fix(index, empty, LAT, LON, 10.0, T0 + MIN)
    # an older fix far away arrives late: it is not the customer's current position
    after, out = on_fix(index, state, *offset(LAT, LON, 0, 2000), 10.0, T0)
    assert after is state and out == []


def test_walking_from_one_place_into_the_next_exits_before_it_enters() -> None:
    east = offset(LAT, LON, 90, 400)
    places = [store(radius_m=100), PlaceSpec(id="cafe", circle=Circle(lat=east[0], lon=east[1],
              radius_m=100))]  # fmt: skip
    index = PlaceIndex(places, SETTINGS)
    state, _ = on_fix(index, geo_state_of(), LAT, LON, 10.0, T0)
    state, out = on_fix(index, state, *east, 10.0, T0 + MIN)
    assert kinds(out) == [("exit", "s12", T0 + MIN), ("enter", "cafe", T0 + MIN)]
    assert list(state.inside) == ["cafe"]


# --- jitter at the edge -----------------------------------------------------------------------


def test_jitter_at_the_edge_does_not_flap() -> None:
    """A customer standing at the door for an hour, fixes every 10 s with 10-30 m accuracy."""
    rng = random.Random(3)
    index = PlaceIndex([store(radius_m=60, dwell="2h")], SETTINGS)
    door = offset(LAT, LON, 45, 60)  # exactly on the boundary
    state = geo_state_of()
    transitions: list[PlaceTransition] = []
    for i in range(360):
        accuracy = rng.uniform(10, 30)
        # the reported position is off by up to its accuracy, in any direction
        fix = offset(*door, rng.uniform(0, 360), accuracy * math.sqrt(rng.random()))
        state, out = on_fix(index, state, *fix, accuracy, T0 + i * 10_000)
        transitions += out
    assert [t.kind for t in transitions] in ([], ["enter"])


def test_a_random_walk_inside_the_band_enters_once_and_never_exits() -> None:
    rng = random.Random(11)
    radius = 80.0
    index = PlaceIndex([store(radius_m=radius, dwell="1d")], SETTINGS)
    state, out = on_fix(index, geo_state_of(), LAT, LON, 10.0, T0)
    assert kinds(out) == [("enter", "s12", T0)]
    d, bearing = 0.0, 0.0  # signed distance from the edge
    for i in range(1, 2000):
        accuracy = rng.uniform(10, 30)
        d = min(max(d + rng.gauss(0, 6), -radius), SETTINGS.hysteresis_m + 10 - 0.01)
        bearing = (bearing + rng.gauss(0, 3)) % 360
        state, out = on_fix(index, state, *offset(LAT, LON, bearing, radius + d), accuracy, T0 + i)
        assert out == [], (i, d, accuracy)


def test_a_walk_in_the_band_never_enters_from_outside() -> None:
    rng = random.Random(5)
    radius = 80.0
    index = PlaceIndex([store(radius_m=radius, dwell="1d")], SETTINGS)
    state = geo_state_of()
    for i in range(2000):
        accuracy = rng.uniform(10, 30)
        d = rng.uniform(-accuracy + 0.01, SETTINGS.hysteresis_m + accuracy)
        fix = offset(LAT, LON, rng.uniform(0, 360), radius + d)
        state, out = on_fix(index, state, *fix, accuracy, T0 + i)
        assert out == []


band_fix = st.tuples(
    st.floats(0, 360),  # bearing
    st.floats(0, 1),  # where in the band
    st.floats(0, 150),  # accuracy
)


@given(radius=st.floats(10, 500), fixes=st.lists(band_fix, max_size=60))
def test_fixes_in_the_band_cause_no_transition_after_the_enter(
    radius: float, fixes: list[tuple[float, float, float]]
) -> None:
    place = store(radius_m=radius, dwell="1d")
    index = PlaceIndex([place], SETTINGS)
    state, out = on_fix(index, geo_state_of(), LAT, LON, 0.0, T0)
    assert kinds(out) == [("enter", "s12", T0)]
    for i, (bearing, where, accuracy) in enumerate(fixes, start=1):
        low, high = -radius, SETTINGS.hysteresis_m + accuracy - 0.01
        d = low + where * (high - low)
        state, out = on_fix(index, state, *offset(LAT, LON, bearing, radius + d), accuracy, T0 + i)
        assert out == []


@given(radius=st.floats(10, 500), fixes=st.lists(band_fix, max_size=60))
def test_fixes_in_the_band_never_enter(
    radius: float, fixes: list[tuple[float, float, float]]
) -> None:
    place = store(radius_m=radius, dwell="1d")
    index = PlaceIndex([place], SETTINGS)
    state = geo_state_of()
    for i, (bearing, where, accuracy) in enumerate(fixes):
        low = -enter_margin_m(place, accuracy) + 0.01
        d = low + where * (SETTINGS.hysteresis_m + accuracy + 100 - low)
        state, out = on_fix(index, state, *offset(LAT, LON, bearing, radius + d), accuracy, T0 + i)
        assert out == []


def test_polygon_edge_jitter_does_not_flap() -> None:
    rng = random.Random(2)
    mall = square(150, dwell="1d")
    index = PlaceIndex([mall], SETTINGS)
    centre = offset(*offset(LAT, LON, 0, 75), 90, 75)
    state, out = on_fix(index, geo_state_of(), *centre, 5.0, T0)
    assert len(out) == 1
    used = 0
    for i in range(3000):
        accuracy = rng.uniform(10, 30)
        fix = offset(*centre, rng.uniform(0, 360), rng.uniform(40, 75 * math.sqrt(2) + 40))
        if boundary_distance_m(mall, *fix) >= SETTINGS.hysteresis_m + accuracy:
            continue  # keep only fixes inside the band (or deeper inside)
        used += 1
        state, out = on_fix(index, state, *fix, accuracy, T0 + i)
        assert out == []
    assert used > 1000


# --- dwell by timer ---------------------------------------------------------------------------


def test_dwell_fires_by_timer_exactly_when_due_and_not_before() -> None:
    index = PlaceIndex([store(dwell="5m")], SETTINGS)
    state, _ = on_fix(index, geo_state_of(), LAT, LON, 10.0, T0)
    due = next_due_ms(index, state)
    assert due == T0 + 5 * MIN
    same, out = on_time(index, state, due - 1)
    assert out == [] and same.inside == state.inside
    state, out = on_time(index, state, due)
    assert kinds(out) == [("dwell", "s12", due)] and out[0].via == "gps"
    assert next_due_ms(index, state) is None
    state, out = on_time(index, state, due + 60 * MIN)
    assert out == []


def test_a_zero_dwell_fires_with_the_enter() -> None:
    index = PlaceIndex([store(dwell="0s")], SETTINGS)
    _, out = on_fix(index, geo_state_of(), LAT, LON, 10.0, T0)
    assert kinds(out) == [("enter", "s12", T0), ("dwell", "s12", T0)]


# --- beacons ----------------------------------------------------------------------------------


def aisle(**beacon: object) -> PlaceSpec:
    return PlaceSpec.model_validate(
        {"id": "aisle-7", "kind": "aisle", "beacons": [{"uuid": UUID} | beacon], "dwell": "10m"}
    )


def test_beacon_enter_refresh_and_timeout_exit() -> None:
    index = PlaceIndex([aisle(major=7)], GeoSettings(beacon_timeout="3m"))
    state, out = on_beacon(index, geo_state_of(), UUID.lower(), 7, 1, T0)
    assert kinds(out) == [("enter", "aisle-7", T0)] and out[0].via == "beacon"
    state, out = on_beacon(index, state, UUID, 7, 2, T0 + 2 * MIN)
    assert out == []
    assert next_due_ms(index, state) == T0 + 5 * MIN  # last sighting + timeout, before the dwell
    state, out = on_time(index, state, T0 + 5 * MIN - 1)
    assert out == []
    state, out = on_time(index, state, T0 + 5 * MIN)
    assert kinds(out) == [("exit", "aisle-7", T0 + 5 * MIN)] and out[0].via == "beacon"
    assert state.inside == {} and next_due_ms(index, state) is None


def test_beacon_sightings_must_match_uuid_major_and_minor() -> None:
    index = PlaceIndex([aisle(major=7, minor=3)], SETTINGS)
    empty = geo_state_of()
    for uuid, major, minor in [(UUID, 7, 4), (UUID, 8, 3), (UUID, None, 3), ("other", 7, 3)]:
        state, out = on_beacon(index, empty, uuid, major, minor, T0)
        assert state is empty and out == []
    _, out = on_beacon(index, empty, f"  {UUID.lower()} ", 7, 3, T0)
    assert len(out) == 1
    # a beacon given by uuid only matches any major and minor
    index = PlaceIndex([aisle()], SETTINGS)
    _, out = on_beacon(index, empty, UUID, 1234, None, T0)
    assert len(out) == 1


def test_a_beacon_visit_that_ends_before_the_dwell_has_no_dwell() -> None:
    index = PlaceIndex([aisle()], GeoSettings(beacon_timeout="3m"))  # dwell 10m
    state, _ = on_beacon(index, geo_state_of(), UUID, 1, 1, T0)
    state, out = on_time(index, state, T0 + 60 * MIN)
    assert kinds(out) == [("exit", "aisle-7", T0 + 3 * MIN)]
    # with sightings every 2 minutes, the dwell fires and the exit comes after the last one
    state = geo_state_of()
    transitions: list[PlaceTransition] = []
    for k in range(7):
        state, out = on_beacon(index, state, UUID, 1, 1, T0 + k * 2 * MIN)
        transitions += out
    state, out = on_time(index, state, T0 + 60 * MIN)
    assert kinds(transitions + out) == [
        ("enter", "aisle-7", T0),
        ("dwell", "aisle-7", T0 + 10 * MIN),
        ("exit", "aisle-7", T0 + 12 * MIN + 3 * MIN),
    ]


def test_a_sighting_at_the_timeout_instant_keeps_the_visit() -> None:
    index = PlaceIndex([aisle()], GeoSettings(beacon_timeout="3m"))
    state, _ = on_beacon(index, geo_state_of(), UUID, 1, 1, T0)
    state, out = on_beacon(index, state, UUID, 1, 1, T0 + 3 * MIN)
    assert out == [] and state.inside["aisle-7"].last_seen_ms == T0 + 3 * MIN


def test_a_stale_sighting_does_not_reopen_a_visit() -> None:
    index = PlaceIndex([aisle()], GeoSettings(beacon_timeout="3m"))
    state, _ = on_beacon(index, geo_state_of(), UUID, 1, 1, T0)
    state, out = on_time(index, state, T0 + 10 * MIN)
    assert [t.kind for t in out] == ["exit"]
    late, out = on_beacon(index, state, UUID, 1, 1, T0 + 5 * MIN)  # uploaded late
    assert late is state and out == []


def test_gps_and_beacon_of_one_place_keep_the_customer_inside_while_either_does() -> None:
    place = store(radius_m=60, dwell="1h", beacons=[{"uuid": UUID}])
    index = PlaceIndex([place], GeoSettings(beacon_timeout="3m"))
    state, out = on_fix(index, geo_state_of(), LAT, LON, 10.0, T0)
    assert kinds(out) == [("enter", "s12", T0)]
    state, out = on_beacon(index, state, UUID, 1, 1, T0 + MIN)
    assert out == []  # already inside: no second enter
    # indoors the GPS drifts far out; the fresh beacon keeps the visit
    far = offset(LAT, LON, 0, 500)
    state, out = on_fix(index, state, *far, 20.0, T0 + 2 * MIN)
    assert out == [] and "s12" in state.inside
    state, out = on_time(index, state, T0 + 10 * MIN)
    assert kinds(out) == [("exit", "s12", T0 + 4 * MIN)] and out[0].via == "beacon"

    # entered by beacon; GPS confirms; the beacon lapsing does not end the visit, GPS does
    state, out = on_beacon(index, geo_state_of(), UUID, 1, 1, T0)
    assert [t.via for t in out] == ["beacon"]
    state, out = on_fix(index, state, LAT, LON, 10.0, T0 + MIN)
    assert out == []
    state, out = on_time(index, state, T0 + 30 * MIN)
    assert out == []
    state, out = on_fix(index, state, *far, 10.0, T0 + 31 * MIN)
    assert kinds(out) == [("exit", "s12", T0 + 31 * MIN)] and out[0].via == "gps"


def test_the_state_stays_bounded() -> None:
    places = [PlaceSpec(id=f"p{i}", circle=Circle(lat=LAT, lon=LON, radius_m=50 + i))
              for i in range(MAX_INSIDE + 10)]  # fmt: skip
    index = PlaceIndex(places, SETTINGS)
    state, out = on_fix(index, geo_state_of(), LAT, LON, 5.0, T0)
    assert len(state.inside) == len(out) == MAX_INSIDE


# --- specs, snapshots, event parsing ----------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"id": "x", "circle": {"lat": 1, "lon": 1, "radius_m": 5},
          "polygon": [[0, 0], [0, 1], [1, 1]]}, "a circle or a polygon, not both"),
        ({"id": "x", "polygon": [[0, 0], [1, 1], [1, 0], [0, 1]]}, "Self-intersection"),
        ({"id": "x", "polygon": [[0, 0], [1, 1], [0, 0]]}, "at least 3"),
        ({"id": "x", "polygon": [[0, 0], [95, 1], [1, 0]]}, "out of range"),
        ({"id": "x", "circle": {"lat": 1, "lon": 1, "radius_m": 0}}, "greater than 0"),
        ({"id": "x", "circle": {"lat": 91, "lon": 1, "radius_m": 5}}, "less than or equal to 90"),
        ({"id": "x"}, "needs a circle, a polygon or beacons"),
        ({"id": "x", "circle": {"lat": 1, "lon": 1, "radius_m": 5}, "shape": "round"}, "shape"),
        ({"id": "x", "beacons": [{"uuid": UUID, "major": 70000}]}, "less than or equal to 65535"),
        ({"id": "x", "beacons": [{"uuid": UUID}], "dwell": "soon"}, "not a duration"),
    ],
)  # fmt: skip
def test_bad_place_specs_fail_with_a_clear_message(spec: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        PlaceSpec.model_validate(spec)


def test_settings_defaults_and_durations() -> None:
    assert (SETTINGS.hysteresis_m, SETTINGS.max_accuracy_m) == (25.0, 150.0)
    assert (SETTINGS.beacon_timeout, SETTINGS.expiry) == (3 * MIN, 30 * MIN)
    assert store().dwell == 5 * MIN and store(dwell="90s").dwell == 90_000
    with pytest.raises(ValidationError, match="beacon_timeout"):
        GeoSettings(beacon_timeout=0)
    with pytest.raises(ValueError, match="appears twice"):
        PlaceIndex([store(), store()], SETTINGS)


def test_geo_state_round_trips_through_msgspec_json() -> None:
    place = store(radius_m=60, dwell="1m", beacons=[{"uuid": UUID}])
    index = PlaceIndex([place, aisle()], SETTINGS)
    state, _ = on_fix(index, geo_state_of(), LAT, LON, None, T0)
    state, out = on_beacon(index, state, UUID, 1, 1, T0 + MIN)
    assert sorted((t.place_id, t.kind) for t in out) == [("aisle-7", "enter"), ("s12", "dwell")]
    assert len(state.inside) == 2 and state.inside["s12"].dwell_fired
    encoded = msgspec.json.encode(state)
    assert msgspec.json.decode(encoded, type=GeoState) == state
    assert geo_state_of(snapshot(state)) == state
    assert geo_state_of() == GeoState()


def test_a_visit_to_a_place_dropped_from_the_playbook_is_forgotten() -> None:
    old = PlaceIndex([store()], SETTINGS)
    state, _ = on_fix(old, geo_state_of(), LAT, LON, 5.0, T0)
    new = PlaceIndex([aisle()], SETTINGS)
    state, out = on_time(new, state, T0 + 1)
    assert out == [] and state.inside == {}


def test_fixes_and_sightings_are_read_from_events() -> None:
    context = {"location": {"latitude": 51.5, "longitude": "-0.12", "accuracy": 12}}
    assert fix_from_context(context) == (51.5, -0.12, 12.0)
    assert fix_from_context({"location": {"latitude": 51.5, "longitude": -0.12}}) == (
        51.5,
        -0.12,
        None,
    )
    assert fix_from_context({}) is None
    assert fix_from_context({"location": {"latitude": True, "longitude": 1}}) is None
    assert sighting_from_properties({"uuid": UUID, "major": 7, "minor": "3", "rssi": -70}) == (
        UUID,
        7,
        3,
    )
    assert sighting_from_properties({"uuid": UUID}) == (UUID, None, None)
    assert sighting_from_properties({"major": 1}) is None
