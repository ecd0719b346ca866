"""Simulated time: units, local time in a customer's zone, ISO stamps and seeded draws.

Every draw the simulator makes comes from :func:`rng` keyed by the run's seed
and the customer (and the day or message), so customer ``i`` lives the same
life whatever the population size and whatever happens to anyone else.

>>> iso(1_772_409_600_123)
'2026-03-02T00:00:00.123Z'
>>> local_hour("Europe/London", 1_772_409_600_000 + 9 * HOUR)
9
>>> rng(1, 2, 3).random() == rng(1, 2, 3).random()
True
"""

from __future__ import annotations

import functools
import random
from datetime import UTC, datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo

SECOND: Final = 1_000
MINUTE: Final = 60 * SECOND
HOUR: Final = 60 * MINUTE
DAY: Final = 24 * HOUR
WEEK: Final = 7 * DAY
START: Final = 1_772_409_600_000
"""Monday 2026-03-02 00:00 UTC: the default start of a simulation (British clocks go
forward on the 29th, inside a 30-day run)."""
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_KEY_BITS: Final = 40


def rng(seed: int, *keys: int) -> random.Random:
    """A generator fixed by ``seed`` and ``keys`` (each below 2**40, not negative)."""
    value = seed & ((1 << 64) - 1)
    for key in keys:
        value = (value << _KEY_BITS) | key
    # Simulation, not security: a reproducible stream is the point.
    return random.Random(value)  # noqa: S311


@functools.lru_cache(maxsize=64)
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


@functools.lru_cache(maxsize=1 << 16)
def offset_ms(tz: str, hour: int) -> int:
    """The zone's offset from UTC during the UTC hour ``hour`` (hours since the epoch)."""
    moment = _EPOCH + timedelta(hours=hour)
    offset = moment.astimezone(zone(tz)).utcoffset()
    return 0 if offset is None else offset // timedelta(milliseconds=1)


def local_ms(tz: str, ms: int) -> int:
    """``ms`` moved to the wall clock of ``tz`` (still counted from 1970-01-01 00:00)."""
    return ms + offset_ms(tz, ms // HOUR)


def local_hour(tz: str, ms: int) -> int:
    """The hour of the day (0-23) on the wall clock of ``tz``."""
    return (local_ms(tz, ms) // HOUR) % 24


def hour_of_week(tz: str, ms: int) -> int:
    """Hours since Monday 00:00 on the wall clock of ``tz`` (0-167)."""
    # 1970-01-01 was a Thursday: day 0 is weekday 3.
    return ((local_ms(tz, ms) // DAY + 3) % 7) * 24 + local_hour(tz, ms)


def local_day(tz: str, ms: int) -> int:
    """Days since 1970-01-01 on the wall clock of ``tz``."""
    return local_ms(tz, ms) // DAY


def weekday(day: int) -> int:
    """Monday 0 to Sunday 6 for a day number from :func:`local_day`."""
    return (day + 3) % 7


@functools.lru_cache(maxsize=1 << 14)
def midnight_ms(tz: str, day: int) -> int:
    """The UTC instant of local midnight starting ``day`` in ``tz``."""
    moment = _EPOCH + timedelta(days=day)
    local = datetime(moment.year, moment.month, moment.day, tzinfo=zone(tz))
    return (local - _EPOCH) // timedelta(milliseconds=1)


_MINUTES: dict[int, str] = {}
_SECONDS: Final = tuple(f"{s:02d}" for s in range(60))
_MILLIS: Final = tuple(f".{ms:03d}Z" for ms in range(1000))


def _minute_prefix(minute: int) -> str:
    text = (_EPOCH + timedelta(minutes=minute)).strftime("%Y-%m-%dT%H:%M:")
    if len(_MINUTES) > 200_000:  # a long run: keep the cache bounded
        _MINUTES.clear()
    _MINUTES[minute] = text
    return text


def iso(ms: int) -> str:
    """An ISO 8601 UTC stamp with milliseconds, as Segment's libraries write it."""
    # On the path of every event: table look-ups, no format specs.
    minute = ms // MINUTE
    prefix = _MINUTES.get(minute) or _minute_prefix(minute)
    rest = ms - minute * MINUTE
    return prefix + _SECONDS[rest // SECOND] + _MILLIS[rest % SECOND]
