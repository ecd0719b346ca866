"""A synthetic population whose truth is known: for the models' tests and benchmark.

Each customer has a time zone, a local hour at which they pay attention, a
channel they answer on, a few favourite categories, a buying habit and a
tolerance for messages. Sessions, purchases, deliveries, opens and opt-outs
follow from those, seeded, so the same seed gives the same stream.

>>> stream = population(3, days=2, seed=1)
>>> len(stream.profiles), stream.events == sorted(stream.events, key=lambda ce: ce[1].timestamp)
(3, True)
"""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass, field
from typing import Any, Final

from momently.events import Event, from_ms
from momently.predict.localtime import zone
from momently.predict.settings import DAY, HOUR, MINUTE
from momently.state.profile import Profile, Stamped

ZONES: Final = ("America/New_York", "Europe/London", "Asia/Tokyo", "America/Los_Angeles", "UTC")
CATEGORIES: Final = ("shoes", "toasters", "coffee", "books", "games", "garden", "toys", "phones")
START: Final = 1_772_409_600_000  # Monday 2026-03-02 00:00 UTC
_ids = itertools.count(1)


@dataclass(frozen=True, slots=True)
class Truth:
    """What is true of one synthetic customer."""

    timezone: str
    hour: int  # local hour of the day at which they engage
    channel: str  # the channel they answer on
    device: str
    categories: tuple[str, ...]
    buyer: bool  # buys within a day or two of a cart
    tolerance: float  # messages a day they take before they may opt out


@dataclass(slots=True)
class Stream:
    """Events in time order, with each customer's profile and truth."""

    events: list[tuple[str, Event]] = field(default_factory=list)
    profiles: dict[str, Profile] = field(default_factory=dict)
    truth: dict[str, Truth] = field(default_factory=dict)


def event(
    name: str,
    at: int,
    customer: str,
    *,
    properties: dict[str, Any] | None = None,
    device: str | None = None,
) -> Event:
    """A track event as an SDK would send it."""
    context: dict[str, Any] = {"device": {"id": device, "type": "ios"}} if device else {}
    return Event(
        message_id=f"syn-{next(_ids)}",
        type="track",
        timestamp=from_ms(at),
        received_at=from_ms(at),
        user_id=customer,
        event=name,
        properties=properties or {},
        context=context,
    )


def profile(customer: str, timezone: str) -> Profile:
    return Profile(customer_id=customer, created=(0, ""), timezone=Stamped(timezone, 0, "tz"))


def _local_time(rng: random.Random, day_start: int, hour: int, offset_ms: int) -> int:
    return day_start + hour * HOUR + rng.randrange(0, 50) * MINUTE - offset_ms


def population(customers: int, *, days: int = 14, seed: int = 0) -> Stream:
    """``customers`` synthetic customers over ``days`` days from :data:`START`."""
    rng = random.Random(seed)  # noqa: S311 - a reproducible stream, not a secret
    stream = Stream()
    for i in range(customers):
        cid = f"c{i:05d}"
        truth = Truth(
            timezone=rng.choice(ZONES),
            hour=rng.choice((8, 12, 20, 21)),
            channel=rng.choice(("push", "email")),
            device=f"{cid}-phone",
            categories=tuple(rng.sample(CATEGORIES, 2)),
            buyer=rng.random() < 0.4,
            tolerance=rng.choice((1.0, 3.0, 100.0)),
        )
        stream.truth[cid] = truth
        stream.profiles[cid] = profile(cid, truth.timezone)
        stream.events.extend((cid, e) for e in _customer(rng, cid, truth, days))
    stream.events.sort(key=lambda ce: (ce[1].timestamp, ce[1].message_id))
    return stream


def _offset(timezone: str, at: int) -> int:
    moment = from_ms(at).astimezone(zone(timezone))
    delta = moment.utcoffset()
    return 0 if delta is None else int(delta.total_seconds() * 1000)


def _customer(rng: random.Random, cid: str, truth: Truth, days: int) -> list[Event]:
    events: list[Event] = []
    sent: list[int] = []
    joined = rng.randrange(0, max(1, days // 3))  # customers arrive over time, not all at once
    for day in range(joined, days):
        day_start = START + day * DAY
        offset = _offset(truth.timezone, day_start + 12 * HOUR)  # daylight saving moves it
        if rng.random() < 0.6:  # a session, mostly at their hour
            hour = truth.hour if rng.random() < 0.7 else rng.randrange(7, 23)
            at = _local_time(rng, day_start, hour, offset)
            events.extend(_session(rng, cid, truth, at))
        pressure = 4 if truth.tolerance < 2 else rng.choice((0, 1, 1, 2))
        for _ in range(pressure):  # the brand's messages, at any hour
            at = _local_time(rng, day_start, rng.randrange(7, 23), offset)
            channel = rng.choice(("push", "email"))
            name = "Push Notification Received" if channel == "push" else "Email Delivered"
            events.append(event(name, at, cid))
            sent = [t for t in sent if at - t < DAY] + [at]
            if len(sent) > truth.tolerance and rng.random() < 0.3:
                events.append(event("Unsubscribed", at + 5 * MINUTE, cid))
                return events
            local_hour = ((at + offset) % DAY) // HOUR
            if channel == truth.channel and abs(local_hour - truth.hour) <= 1:
                opened = "Push Notification Tapped" if channel == "push" else "Email Opened"
                events.append(event(opened, at + rng.randrange(1, 30) * MINUTE, cid))
    return events


def _session(rng: random.Random, cid: str, truth: Truth, at: int) -> list[Event]:
    device = truth.device
    out = [event("Application Opened", at, cid, device=device)]
    category = rng.choice(truth.categories)
    t = at
    for _ in range(1 + int(rng.expovariate(0.5))):
        t += rng.randrange(1, 4) * MINUTE
        out.append(
            event("Product Viewed", t, cid, properties={"category": category}, device=device)
        )
    if rng.random() < (0.5 if truth.buyer else 0.15):
        t += 2 * MINUTE
        out.append(event("Product Added", t, cid, properties={"category": category}, device=device))
        if rng.random() < (0.8 if truth.buyer else 0.05):
            later = t + int(rng.expovariate(1 / (6 * HOUR))) + 5 * MINUTE
            out.append(event("Checkout Started", later, cid, device=device))
            out.append(
                event(
                    "Order Completed",
                    later + 3 * MINUTE,
                    cid,
                    properties={"revenue": round(math.exp(rng.gauss(3, 0.5)), 2)},
                    device=device,
                )
            )
    return out
