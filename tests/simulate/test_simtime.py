"""Simulated time: stamps, local hours across a clock change, seeded draws."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from momently.simulate.simtime import (
    DAY,
    HOUR,
    START,
    hour_of_week,
    iso,
    local_day,
    local_hour,
    midnight_ms,
    rng,
)


def test_iso_matches_datetime() -> None:
    for ms in (0, START, START + 123_456_789, START + 29 * DAY + 1):
        expected = datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")
        assert iso(ms) == expected.replace("+00:00", "Z")


def test_local_time_follows_the_clocks_going_forward() -> None:
    before = int(datetime(2026, 3, 28, 9, tzinfo=ZoneInfo("Europe/London")).timestamp() * 1000)
    after = int(datetime(2026, 3, 30, 9, tzinfo=ZoneInfo("Europe/London")).timestamp() * 1000)
    assert local_hour("Europe/London", before) == 9
    assert local_hour("Europe/London", after) == 9
    assert after - before == 2 * DAY - HOUR
    day = local_day("Europe/London", after)
    assert midnight_ms("Europe/London", day) == after - 9 * HOUR
    assert hour_of_week("Europe/London", after) == 9  # a Monday
    assert local_hour("Asia/Tokyo", START) == 9


def test_draws_depend_on_every_key() -> None:
    assert rng(1, 2, 3).random() == rng(1, 2, 3).random()
    assert rng(1, 2, 3).random() != rng(1, 3, 2).random()
    assert rng(1, 2).random() != rng(2, 2).random()
