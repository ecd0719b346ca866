"""The simulated world: determinism, ordering, and events momently accepts."""

from __future__ import annotations

from typing import Any

import msgspec

from momently.events import decode_message, normalise
from momently.simulate import DAY, START, Population, World, to_event
from momently.simulate.simtime import HOUR, iso


def _events(size: int, days: float, seed: int = 5) -> list[dict[str, Any]]:
    world = World(Population(size, seed=seed))
    return list(world.events_until(START + int(days * DAY)))


def test_same_seed_same_events_in_the_same_order() -> None:
    assert _events(60, 2) == _events(60, 2)


def test_another_seed_another_world() -> None:
    assert _events(30, 1, seed=1) != _events(30, 1, seed=2)


def test_customer_is_the_same_whatever_the_population_size() -> None:
    small = [e for e in _events(5, 2) if e.get("userId") == "sim5-3"]
    large = [e for e in _events(40, 2) if e.get("userId") == "sim5-3"]
    assert small and small == large


def test_events_come_in_time_order_and_ids_are_unique() -> None:
    world = World(Population(80, seed=9))
    stamps = [ms for ms, _ in world.timed_until(START + 3 * DAY)]
    assert stamps == sorted(stamps)
    assert stamps[0] >= START
    messages = _events(80, 3, seed=9)
    ids = [m["messageId"] for m in messages]
    assert len(ids) == len(set(ids))


def test_the_world_can_be_read_window_by_window() -> None:
    whole = _events(25, 1)
    world = World(Population(25, seed=5))
    pieces: list[dict[str, Any]] = []
    for hour in range(24):
        pieces.extend(world.events_until(START + (hour + 1) * HOUR))
    assert pieces == whole


def test_next_ms_and_pop_agree_with_the_stream() -> None:
    world = World(Population(15, seed=5))
    stepped = []
    while world.next_ms(START + DAY) is not None:
        stepped.append(world.pop()[1])
    assert stepped == _events(15, 1)


def test_momently_accepts_every_generated_event() -> None:
    messages = _events(150, 4, seed=11)
    encode = msgspec.json.Encoder().encode
    for message in messages:
        data = encode(message)
        raw = decode_message(data)
        event = normalise(raw, received_ms=START, source="sim", raw_size=len(data))
        assert event.message_id == message["messageId"]
        assert event.timestamp_ms >= START
    assert to_event(messages[0]).type == messages[0]["type"]


def test_the_world_speaks_segment() -> None:
    messages = _events(300, 7, seed=3)
    names = {str(m.get("event") or m["type"]) for m in messages}
    for name in (
        "identify",
        "screen",
        "page",
        "Application Opened",
        "Application Backgrounded",
        "Products Searched",
        "Product Viewed",
        "Product Added",
        "Checkout Started",
        "Order Completed",
        "Location Updated",
        "Beacon Sighted",
        "Social Post",
    ):
        assert name in names, name
    pings = [m for m in messages if m.get("event") == "Location Updated"]
    fields = {"latitude", "longitude", "accuracy"}
    assert all(fields <= set(m["context"]["location"]) for m in pings)
    orders = [m for m in messages if m.get("event") == "Order Completed"]
    assert all(m["properties"]["revenue"] > 0 for m in orders)
    identifies = [m for m in messages if m["type"] == "identify"]
    assert all("household_size" in m["traits"] for m in identifies)
    anonymous = [m for m in messages if "userId" not in m]
    assert anonymous, "web visits before a login carry only an anonymousId"


def test_a_world_may_start_at_any_moment() -> None:
    start = START + 13 * HOUR + 7 * 60_000 + 5
    world = World(Population(50, seed=5), start_ms=start)
    stamps = [ms for ms, _ in world.timed_until(start + DAY)]
    assert stamps and min(stamps) >= start
    later = [e for e in _events(50, 2) if e["timestamp"] >= iso(start)]
    assert len(stamps) > 0.6 * len([e for e in later if e["timestamp"] < iso(start + DAY)])


def test_events_between_skips_what_came_before() -> None:
    whole = _events(30, 1)
    world = World(Population(30, seed=5))
    tail = list(world.events_between(START + 12 * HOUR, START + DAY))
    assert tail == [e for e in whole if e["timestamp"] >= iso(START + 12 * HOUR)]


def test_people_go_where_the_playbook_places_are() -> None:
    world = World(Population(400, seed=3))
    places = world.catalog.place
    seen: set[str] = set()
    for message in world.events_until(START + 7 * DAY):
        where = message.get("context", {}).get("location")
        if where is None:
            continue
        for place in places.values():
            dy = (where["latitude"] - place.lat) * 111_320
            dx = (where["longitude"] - place.lon) * 69_400
            if dx * dx + dy * dy <= place.radius_m**2:
                seen.add(place.id)
    assert {"store-12", "store-7", "station-kx", "mall-west"} <= seen
