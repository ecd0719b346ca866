"""Local time of a customer: the IANA zone of their profile, and their hour of week."""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


@functools.lru_cache(maxsize=512)
def zone(name: str | None) -> ZoneInfo:
    """The IANA zone named ``name``; UTC when it is missing or unknown."""
    if name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    return ZoneInfo("UTC")


def hour_of_week(ms: int, tz: str | None) -> int:
    """The local hour of week of a time: 0 is Monday 00:00–00:59 in the zone named ``tz``.

    >>> hour_of_week(1_772_409_600_000, "America/New_York")  # Monday 00:00 UTC
    163
    """
    offset = _day_offset(ms // _DAY, tz)
    if offset is None:  # the zone's offset changes this (UTC) day
        return _hour_of_quarter(ms // _QUARTER, tz)
    return ((ms + offset) // _HOUR + _EPOCH_HOUR) % 168


_QUARTER: Final = 15 * 60_000
_HOUR: Final = 60 * 60_000
_DAY: Final = 24 * _HOUR
_EPOCH_HOUR: Final = 3 * 24  # 1970-01-01 was a Thursday


@functools.lru_cache(maxsize=4096)
def _day_offset(day: int, tz: str | None) -> int | None:
    # The zone's UTC offset (ms) all through a UTC day, or None on a day it changes.
    # Cached by day, not by time: a stream of many customers in many zones comes back
    # to the same few (day, zone) pairs, and rarely to the same quarter-hour.
    z = zone(tz)
    first = datetime.fromtimestamp(day * _DAY / 1000, tz=z).utcoffset()
    last = datetime.fromtimestamp(((day + 1) * _DAY - 1) / 1000, tz=z).utcoffset()
    if first is None or first != last:
        return None
    return int(first.total_seconds() * 1000)


@functools.lru_cache(maxsize=8192)
def _hour_of_quarter(quarter: int, tz: str | None) -> int:
    # Every zone's offset is a multiple of 15 minutes and changes on such a boundary,
    # so the local hour is the same all through a UTC quarter-hour: cache by it.
    local = datetime.fromtimestamp(quarter * _QUARTER / 1000, tz=zone(tz))
    return local.weekday() * 24 + local.hour
