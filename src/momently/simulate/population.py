"""The synthetic population: customers with devices, places, routines and hidden truth.

Customer ``i`` is drawn from ``rng(seed, i, ...)`` alone, so it is the same
customer in a population of ten or of a hundred thousand.

>>> people = Population(3, seed=7)
>>> people[2] == Population(5, seed=7)[2]
True
>>> 0.0 <= people[0].receptivity(9) <= 1.0
True
"""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from momently.simulate.catalog import Catalog, Place
from momently.simulate.personas import CHANNELS, CITIES, PERSONAS, Persona, check
from momently.simulate.simtime import rng

_PROFILE: Final = 0xC0FFEE
# fmt: off
_FIRST: Final = (
    "Amara", "Ben", "Chloe", "Dev", "Ella", "Finn", "Grace", "Hamza", "Isla", "Jack", "Kemi",
    "Leo", "Maya", "Noah", "Olivia", "Priya", "Quinn", "Ruby", "Sam", "Tom", "Uma", "Vik",
    "Willow", "Yusuf", "Zara", "Aisha", "Callum", "Freya", "Oscar", "Sofia",
)
_LAST: Final = (
    "Smith", "Jones", "Patel", "Williams", "Brown", "Taylor", "Khan", "Davies", "Evans",
    "Okafor", "Wilson", "Thomas", "Roberts", "Ahmed", "Walker", "Wright", "Nguyen", "Murphy",
)
_PHONES: Final = ("iPhone15,2", "iPhone14,5", "SM-S918B", "Pixel 8", "iPhone13,2", "SM-A546B")
_TIERS: Final = (("none", 0.6), ("silver", 0.25), ("gold", 0.1), ("platinum", 0.05))
_DIAL: Final = {"Europe/London": "+447", "America/New_York": "+1212", "Europe/Paris": "+336",
                "Asia/Dubai": "+97150", "Asia/Tokyo": "+8190", "Australia/Sydney": "+614"}
# fmt: on


@dataclass(frozen=True, slots=True)
class Device:
    """A phone, tablet or laptop; phones and tablets may carry the brand's app."""

    kind: str
    id: str
    anonymous_id: str
    os: str
    os_version: str
    model: str
    manufacturer: str
    app: bool
    push_token: str | None


@dataclass(frozen=True, slots=True)
class Customer:
    """One synthetic customer: what momently may learn, and the truth it may not see."""

    index: int
    user_id: str
    persona: Persona
    first_name: str
    email: str | None
    phone: str | None
    sms_opt_in: bool
    household_size: int
    loyalty_tier: str
    timezone: str
    home: tuple[float, float]
    work: tuple[float, float] | None
    route: str | None  # the place the walk to work goes straight past
    via: tuple[float, float] | None  # where that walk starts
    leave_min: int  # local minute of the day they set off to work
    back_min: int
    locates: bool  # the app reports GPS
    devices: tuple[Device, ...]
    # hidden truth
    peaks: tuple[float, float]
    width: float
    floor: float
    amplitude: float
    channels: tuple[float, float, float, float]
    tolerance: float
    appetite: float  # multiplies the persona's need rates
    sessions: float
    doughnut: float

    def receptivity(self, how: int) -> float:
        """P(paying attention) in local hour-of-week ``how`` (0 = Monday 00:00)."""
        hour = how % 24 + 0.5
        if how >= 120:  # the weekend starts later
            hour -= 1.0
        best = 0.0
        for peak in self.peaks:
            d = abs(hour - peak) % 24
            d = min(d, 24 - d)
            best = max(best, math.exp(-0.5 * (d / self.width) ** 2))
        return min(1.0, self.floor + self.amplitude * best)

    def preference(self, channel: str) -> float:
        """P(open | the message is in front of them) on ``channel``."""
        return self.channels[CHANNELS.index(channel)]

    def reachable(self, channel: str) -> bool:
        """Whether a message on ``channel`` has an address to go to."""
        if channel == "email":
            return self.email is not None
        if channel == "sms":
            return self.phone is not None and self.sms_opt_in
        if channel == "push":
            return any(d.push_token for d in self.devices)
        return any(d.app for d in self.devices)

    @property
    def phone_device(self) -> Device:
        return self.devices[0]


def _pick(r: random.Random, weighted: tuple[tuple[str, float], ...]) -> str:
    total = sum(w for _, w in weighted)
    x = r.random() * total
    for name, w in weighted:
        x -= w
        if x < 0:
            return name
    return weighted[-1][0]


def _offset(lat: float, lon: float, metres: float, angle: float) -> tuple[float, float]:
    dlat = metres * math.cos(angle) / 111_320
    dlon = metres * math.sin(angle) / (111_320 * math.cos(math.radians(lat)))
    return lat + dlat, lon + dlon


def _device(r: random.Random, kind: str, has_app: bool) -> Device:
    if kind == "laptop":
        mac = r.random() < 0.5
        os, version = ("Mac OS X", "14.4") if mac else ("Windows", "11")
        model, maker = ("MacBookAir10,1", "Apple") if mac else ("XPS 13", "Dell")
    else:
        model = _PHONES[int(r.random() * len(_PHONES))] if kind == "phone" else "iPad13,1"
        apple = model.startswith("i")
        os, version = ("iOS", "17.4") if apple else ("Android", "14")
        maker = "Apple" if apple else ("Samsung" if model.startswith("SM") else "Google")
    token = f"{r.getrandbits(256):064x}" if has_app and r.random() < 0.65 else None
    return Device(
        kind,
        str(uuid.UUID(int=r.getrandbits(128))),
        str(uuid.UUID(int=r.getrandbits(128))),
        os,
        version,
        model,
        maker,
        has_app,
        token,
    )


def make_customer(
    seed: int, index: int, personas: tuple[Persona, ...], catalog: Catalog
) -> Customer:
    """Customer ``index`` of the population drawn with ``seed``."""
    r = rng(seed, index, _PROFILE)
    persona = personas[int(_pick(r, tuple((str(k), p.weight) for k, p in enumerate(personas))))]
    tz = _pick(r, persona.zones)
    first, last = _FIRST[int(r.random() * len(_FIRST))], _LAST[int(r.random() * len(_LAST))]
    clat, clon = CITIES[tz]
    home = _offset(clat, clon, 2_000 + 9_000 * r.random(), 2 * math.pi * r.random())
    work: tuple[float, float] | None = None
    via: tuple[float, float] | None = None
    route: str | None = None
    if r.random() < persona.commutes:
        place: Place | None = None
        if persona.routes and tz == "Europe/London":
            place = catalog.place.get(_pick(r, persona.routes))
        if place is None:
            work = _offset(clat, clon, 4_000 * r.random(), 2 * math.pi * r.random())
        else:
            route, angle = place.id, 2 * math.pi * r.random()
            work = _offset(place.lat, place.lon, 250, angle)
            via = _offset(place.lat, place.lon, 300, angle + math.pi)
            home = _offset(via[0], via[1], 2_000 + 7_000 * r.random(), angle + math.pi)
    has_app = r.random() < persona.app
    devices = [_device(r, "phone", has_app)]
    if r.random() < 0.3:
        devices.append(_device(r, "tablet", has_app and r.random() < 0.7))
    if r.random() < persona.laptop:
        devices.append(_device(r, "laptop", False))
    low, high = persona.household
    jitter = [math.exp(0.35 * r.gauss(0, 1)) for _ in CHANNELS]
    channels = (
        min(0.95, persona.channels[0] * jitter[0]),
        min(0.95, persona.channels[1] * jitter[1]),
        min(0.95, persona.channels[2] * jitter[2]),
        min(0.95, persona.channels[3] * jitter[3]),
    )
    return Customer(
        index=index,
        user_id=f"sim{seed}-{index}",
        persona=persona,
        first_name=first,
        email=f"{first}.{last}{index}@example.com".lower() if r.random() < 0.95 else None,
        phone=f"{_DIAL[tz]}{r.randrange(10**7, 10**8)}" if r.random() < 0.7 else None,
        sms_opt_in=r.random() < 0.35,
        household_size=r.randint(low, high),
        loyalty_tier=_pick(r, _TIERS),
        timezone=tz,
        home=home,
        work=work,
        route=route,
        via=via,
        leave_min=int(60 * (persona.leave + 0.5 * r.gauss(0, 1))) % 1440,
        back_min=int(60 * (persona.back + 0.6 * r.gauss(0, 1))) % 1440,
        locates=has_app and r.random() < 0.75,
        devices=tuple(devices),
        peaks=(persona.peaks[0] + r.gauss(0, 0.7), persona.peaks[1] + r.gauss(0, 0.7)),
        width=1.0 + 1.5 * r.random(),
        floor=0.03 + 0.07 * r.random(),
        amplitude=0.55 + 0.35 * r.random(),
        channels=channels,
        tolerance=max(1.0, persona.tolerance * math.exp(0.4 * r.gauss(0, 1))),
        appetite=math.exp(0.5 * r.gauss(0, 1) - 0.125),
        sessions=persona.sessions * math.exp(0.4 * r.gauss(0, 1) - 0.08),
        doughnut=persona.doughnut if route == "store-12" else 0.0,
    )


class Population:
    """``size`` customers drawn with ``seed`` from ``personas``; index ``i`` is stable."""

    def __init__(
        self,
        size: int,
        *,
        seed: int = 0,
        personas: tuple[Persona, ...] = PERSONAS,
        catalog: Catalog | None = None,
    ) -> None:
        if size < 0:
            raise ValueError("size must not be negative")
        check(personas)
        self.seed = seed
        self.personas = personas
        self.catalog = Catalog() if catalog is None else catalog
        self.customers = [make_customer(seed, i, personas, self.catalog) for i in range(size)]
        self._index = {c.user_id: c.index for c in self.customers}

    def __len__(self) -> int:
        return len(self.customers)

    def __getitem__(self, index: int) -> Customer:
        return self.customers[index]

    def __iter__(self) -> Iterator[Customer]:
        return iter(self.customers)

    def index_of(self, user_id: str) -> int | None:
        """The index of the customer with ``user_id``, or None for a stranger."""
        return self._index.get(user_id)
