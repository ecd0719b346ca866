"""Event builders for the moment tests: Segment-shaped events at given times."""

from __future__ import annotations

import itertools
from typing import Any

from momently.events import Event, from_ms

_ids = itertools.count(1)
MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR
# Monday 2026-03-02 00:00 UTC: scenario clocks start here.
T0 = 1_772_409_600_000


def track(
    name: str,
    at: int,
    *,
    user: str = "u1",
    device: str | None = None,
    properties: dict[str, Any] | None = None,
    context: dict[str, Any] | None = None,
    traits: dict[str, Any] | None = None,
) -> Event:
    """A track event ``name`` at ``at`` ms."""
    ctx = dict(context or {})
    if device is not None:
        ctx.setdefault("device", {"id": device, "type": "ios"})
    return Event(
        message_id=f"m-{next(_ids)}",
        type="track",
        timestamp=from_ms(at),
        received_at=from_ms(at),
        user_id=user,
        event=name,
        properties=properties or {},
        context=ctx,
        traits=traits or {},
    )


def page(name: str, at: int, *, user: str = "u1", device: str | None = None) -> Event:
    """A page view named ``name``."""
    ctx = {"device": {"id": device, "type": "web"}} if device else {}
    return Event(
        message_id=f"m-{next(_ids)}",
        type="page",
        timestamp=from_ms(at),
        received_at=from_ms(at),
        user_id=user,
        name=name,
        context=ctx,
    )


def search(query: str, at: int, **kwargs: Any) -> Event:
    return track("Products Searched", at, properties={"query": query}, **kwargs)


def ping(lat: float, lon: float, at: int, *, accuracy: float = 10.0, **kwargs: Any) -> Event:
    """A GPS fix, as the app sends it: ``Location Updated`` with ``context.location``."""
    where = {"latitude": lat, "longitude": lon, "accuracy": accuracy}
    return track("Location Updated", at, context={"location": where}, **kwargs)
