"""Learned places: dwell clusters of a customer's GPS stays, and which of them are home and work.

A *cluster* is a place where the customer has stayed; it keeps a dwell-weighted
centre and how much of the dwell fell at night (22:00-06:00 local) and in
weekday working hours (Mon-Fri 09:00-17:00 local). Home is the trusted cluster
with the most night dwell, work a different one with the most working-hours
dwell. Local time comes from the customer's IANA zone through :mod:`zoneinfo`,
so a night across a daylight-saving change is still a night.

>>> round(distance_m(51.5, -0.12, 51.5, -0.12), 6)
0.0
>>> local_ms(date(2024, 3, 31).toordinal(), 8 * 60, zone_for("Europe/London"))
1711868400000
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime
from typing import Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

PlaceLabel = Literal["home", "work"]

EARTH_RADIUS_M: Final = 6_371_008.8
# A place must hold at least this share of all night (or working-hours) dwell to
# be home (or work): someone who works from home has no "work" in the café
# where they spend an hour a week.
MIN_SHARE: Final = 0.25
# Dwell weights halve every 30 local days, so after a move the new home wins
# within weeks rather than after as long as the customer lived at the old one.
HALF_LIFE_DAYS: Final = 30.0
_DAY_MINUTES: Final = 24 * 60
_UTC: Final = ZoneInfo("UTC")
_HOUR_MS: Final = 3_600_000
_DAY_MS: Final = 24 * _HOUR_MS
_EPOCH_ORDINAL: Final = date(1970, 1, 1).toordinal()


class Cluster(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A place the customer stays at: a dwell-weighted centre and its dwell by time of day."""

    lat: float
    lon: float
    dwell_ms: int = 0
    night_ms: int = 0  # local 22:00-06:00
    weekday_work_ms: int = 0  # Mon-Fri 09:00-17:00 local
    days: int = 0  # distinct local days with dwell here
    last_day: int = 0  # proleptic ordinal of the last such local day
    last_ms: int = 0


@dataclass(frozen=True)
class LearnedPlace:
    """A trusted home or work, with a confidence in [0, 1]."""

    label: PlaceLabel
    lat: float
    lon: float
    confidence: float


def zone_for(tz: str | None) -> ZoneInfo:
    """The customer's zone; UTC when it is unknown or not a valid IANA name."""
    if not tz:
        return _UTC
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        # A junk zone in a profile must not stop place learning; UTC is the documented default.
        return _UTC


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres (haversine)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def local_datetime(ts_ms: int, zone: ZoneInfo) -> datetime:
    """The local wall-clock time of an instant."""
    return datetime.fromtimestamp(ts_ms / 1000, zone)


def local_day(ts_ms: int, zone: ZoneInfo) -> int:
    """The proleptic ordinal of the local date of an instant."""
    return local_datetime(ts_ms, zone).date().toordinal()


def local_ms(day: int, minute: int, zone: ZoneInfo) -> int:
    """The instant (ms) of a local wall-clock minute of a local day (1440: next midnight)."""
    extra, minute = divmod(minute, _DAY_MINUTES)
    d = date.fromordinal(day + extra)
    wall = datetime(d.year, d.month, d.day, minute // 60, minute % 60, tzinfo=zone)
    return int(wall.timestamp() * 1000)


def _overlap(a: int, b: int, lo: int, hi: int) -> int:
    return max(0, min(b, hi) - max(a, lo))


def _split(start_ms: int, end_ms: int, zone: ZoneInfo) -> tuple[int, int, list[int]]:
    """Night and weekday working-hours ms in [start_ms, end_ms), and the local days touched."""
    start, end = local_datetime(start_ms, zone), local_datetime(end_ms, zone)
    offset = start.utcoffset()
    if offset is not None and offset == end.utcoffset():
        # No clock change inside: do the arithmetic on local wall-clock ms, which
        # is most fixes and far cheaper than resolving six local times per day.
        shift = int(offset.total_seconds() * 1000)
        return _split_wall(start_ms + shift, end_ms + shift)
    night, work, days = 0, 0, []
    for day in range(start.date().toordinal(), local_day(end_ms - 1, zone) + 1):
        edges = [local_ms(day, h * 60, zone) for h in (0, 6, 9, 17, 22, 24)]
        if _overlap(start_ms, end_ms, edges[0], edges[5]) > 0:
            days.append(day)
        night += _overlap(start_ms, end_ms, edges[0], edges[1])
        night += _overlap(start_ms, end_ms, edges[4], edges[5])
        if is_weekday(day):
            work += _overlap(start_ms, end_ms, edges[2], edges[3])
    return night, work, days


def _split_wall(start: int, end: int) -> tuple[int, int, list[int]]:
    night, work, days = 0, 0, []
    for n in range(start // _DAY_MS, (end - 1) // _DAY_MS + 1):
        base, day = n * _DAY_MS, n + _EPOCH_ORDINAL
        days.append(day)
        night += _overlap(start, end, base, base + 6 * _HOUR_MS)
        night += _overlap(start, end, base + 22 * _HOUR_MS, base + _DAY_MS)
        if is_weekday(day):
            work += _overlap(start, end, base + 9 * _HOUR_MS, base + 17 * _HOUR_MS)
    return night, work, days


def credit(
    cluster: Cluster, lat: float, lon: float, start_ms: int, end_ms: int, zone: ZoneInfo
) -> Cluster:
    """Add the dwell [start_ms, end_ms) spent at (lat, lon) to a cluster, moving its centre."""
    span = end_ms - start_ms
    if span <= 0:
        return cluster
    night, work, days = _split(start_ms, end_ms, zone)
    if days and days[0] == cluster.last_day:
        days = days[1:]
    pull = span / (cluster.dwell_ms + span)
    return Cluster(
        lat=cluster.lat + (lat - cluster.lat) * pull,
        lon=cluster.lon + (lon - cluster.lon) * pull,
        dwell_ms=cluster.dwell_ms + span,
        night_ms=cluster.night_ms + night,
        weekday_work_ms=cluster.weekday_work_ms + work,
        days=cluster.days + len(days),
        last_day=days[-1] if days else cluster.last_day,
        last_ms=max(cluster.last_ms, end_ms),
    )


def decay(clusters: tuple[Cluster, ...], elapsed_days: int) -> tuple[Cluster, ...]:
    """Age the dwell weights by whole local days (half-life :data:`HALF_LIFE_DAYS`)."""
    if elapsed_days <= 0 or not clusters:
        return clusters
    f = 0.5 ** (elapsed_days / HALF_LIFE_DAYS)
    return tuple(
        msgspec.structs.replace(
            c,
            dwell_ms=round(c.dwell_ms * f),
            night_ms=round(c.night_ms * f),
            weekday_work_ms=round(c.weekday_work_ms * f),
        )
        for c in clusters
    )


def nearest(clusters: tuple[Cluster, ...], lat: float, lon: float, radius_m: float) -> int | None:
    """Index of the nearest cluster whose centre is within radius_m, or None."""
    best, best_d = None, radius_m
    for i, c in enumerate(clusters):
        d = distance_m(c.lat, c.lon, lat, lon)
        if d <= best_d:
            best, best_d = i, d
    return best


def attach(
    clusters: tuple[Cluster, ...], lat: float, lon: float, radius_m: float, max_clusters: int
) -> tuple[tuple[Cluster, ...], int]:
    """The cluster a stay at (lat, lon) joins; a new one evicts the least dwell when full."""
    found = nearest(clusters, lat, lon, radius_m)
    if found is not None:
        return clusters, found
    kept = list(clusters)
    while len(kept) >= max_clusters:
        kept.pop(min(range(len(kept)), key=lambda i: kept[i].dwell_ms))
    kept.append(Cluster(lat=lat, lon=lon))
    return tuple(kept), len(kept) - 1


def _pick(
    clusters: tuple[Cluster, ...], min_days: int, weight: str, exclude: int | None
) -> tuple[int, float] | None:
    total = sum(getattr(c, weight) for c in clusters)
    best: int | None = None
    for i, c in enumerate(clusters):
        if i == exclude or c.days < min_days or getattr(c, weight) <= 0:
            continue
        if best is None or getattr(c, weight) > getattr(clusters[best], weight):
            best = i
    if best is None:
        return None
    share = getattr(clusters[best], weight) / total
    if share < MIN_SHARE:
        return None
    evidence = min(1.0, clusters[best].days / (2 * min_days))
    return best, share * evidence


def label_clusters(
    clusters: tuple[Cluster, ...], min_days: int
) -> dict[PlaceLabel, tuple[int, float]]:
    """Home and work among clusters seen on ≥ min_days local days: label → (index, confidence)."""
    labels: dict[PlaceLabel, tuple[int, float]] = {}
    home = _pick(clusters, min_days, "night_ms", None)
    if home is not None:
        labels["home"] = home
    work = _pick(clusters, min_days, "weekday_work_ms", home[0] if home else None)
    if work is not None:
        labels["work"] = work
    return labels


def places_of(clusters: tuple[Cluster, ...], min_days: int) -> list[LearnedPlace]:
    """The trusted home and work as :class:`LearnedPlace` records."""
    return [
        LearnedPlace(label=label, lat=clusters[i].lat, lon=clusters[i].lon, confidence=conf)
        for label, (i, conf) in label_clusters(clusters, min_days).items()
    ]


def is_weekday(day: int) -> bool:
    """Monday to Friday, for a proleptic day ordinal."""
    return date.fromordinal(day).weekday() < 5


__all__ = [
    "Cluster",
    "LearnedPlace",
    "PlaceLabel",
    "attach",
    "credit",
    "decay",
    "distance_m",
    "is_weekday",
    "label_clusters",
    "local_datetime",
    "local_day",
    "local_ms",
    "nearest",
    "places_of",
    "zone_for",
]
