"""Personas and needs: the hidden truth a synthetic customer is drawn from.

A :class:`Persona` sets the shape of a life: household, commute, when the
phone is in hand, which channels get read, how many messages a week are too
many, and which needs (:mod:`momently.simulate.needs`) arise how often.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from momently.simulate.needs import NEEDS

CHANNELS: Final = ("push", "email", "sms", "in_app")


@dataclass(frozen=True, slots=True)
class Persona:
    """The shape of one kind of customer; each customer draws around it."""

    name: str
    weight: float
    occupation: str
    household: tuple[int, int]
    commutes: float  # share who travel to work or study on weekdays
    routes: tuple[tuple[str, float], ...]  # places their commute goes past, with weights
    leave: float  # local hour they set off in the morning
    back: float  # local hour they set off home
    sessions: float  # app and web sessions a day
    peaks: tuple[float, float]  # local hours they are receptive around
    channels: tuple[float, float, float, float]  # mean P(open | channel), as CHANNELS
    tolerance: float  # mean messages a week before they may opt out
    needs: tuple[tuple[str, float], ...]  # need name and its daily chance of arising
    doughnut: float = 0.0  # P(a craving) when walking past the doughnut store
    zones: tuple[tuple[str, float], ...] = (("Europe/London", 1.0),)
    app: float = 0.8  # share with the app on their phone
    laptop: float = 0.6  # share who also shop from a laptop


# fmt: off
PERSONAS: Final = (
    Persona("busy-parent", 0.25, "professional", household=(3, 6), commutes=0.7,
            routes=(("store-7", 0.4), ("store-12", 0.3), ("station-kx", 0.3)),
            leave=7.8, back=17.8, sessions=2.2, peaks=(7.0, 21.0),
            channels=(0.4, 0.5, 0.75, 0.5), tolerance=9.0, doughnut=0.15,
            needs=(("toaster", 0.012), ("kettle", 0.008), ("grocery", 0.05), ("fashion", 0.02),
                   ("home-garden", 0.015), ("clear-braces", 0.002))),
    Persona("student", 0.2, "student", household=(1, 2), commutes=0.8,
            routes=(("store-12", 0.6), ("station-kx", 0.4)),
            leave=9.5, back=16.5, sessions=3.0, peaks=(13.0, 23.0),
            channels=(0.5, 0.25, 0.6, 0.6), tolerance=7.0, doughnut=0.35,
            needs=(("toaster", 0.008), ("electronics", 0.02), ("fashion", 0.03),
                   ("beauty", 0.015), ("travel", 0.006))),
    Persona("commuter", 0.25, "professional", household=(1, 3), commutes=0.95,
            routes=(("station-kx", 0.5), ("store-12", 0.3), ("store-7", 0.2)),
            leave=8.0, back=18.2, sessions=2.5, peaks=(8.2, 18.5),
            channels=(0.45, 0.4, 0.7, 0.5), tolerance=10.0, doughnut=0.2,
            needs=(("electronics", 0.015), ("travel", 0.012), ("fashion", 0.02),
                   ("grocery", 0.03), ("kettle", 0.004), ("toaster", 0.005))),
    Persona("braces-researcher", 0.12, "professional", household=(1, 4), commutes=0.6,
            routes=(("clinic-3", 0.6), ("store-12", 0.4)),
            leave=8.3, back=17.5, sessions=2.2, peaks=(12.5, 20.5),
            channels=(0.35, 0.6, 0.8, 0.5), tolerance=12.0, doughnut=0.1,
            needs=(("clear-braces", 0.06), ("beauty", 0.02), ("fashion", 0.015))),
    Persona("retiree", 0.1, "retired", household=(1, 2), commutes=0.0, routes=(),
            leave=9.0, back=15.0, sessions=1.8, peaks=(9.5, 15.0),
            channels=(0.2, 0.65, 0.7, 0.4), tolerance=8.0, app=0.4, laptop=0.8,
            needs=(("home-garden", 0.025), ("kettle", 0.008), ("toaster", 0.008),
                   ("grocery", 0.04), ("travel", 0.008))),
    Persona("overseas-shopper", 0.08, "professional", household=(1, 4), commutes=0.6, routes=(),
            leave=8.5, back=18.0, sessions=1.8, peaks=(8.0, 20.5),
            channels=(0.35, 0.45, 0.6, 0.45), tolerance=9.0,
            needs=(("fashion", 0.03), ("beauty", 0.02), ("electronics", 0.015),
                   ("travel", 0.015)),
            zones=(("America/New_York", 0.35), ("Europe/Paris", 0.25), ("Asia/Dubai", 0.15),
                   ("Asia/Tokyo", 0.15), ("Australia/Sydney", 0.1))),
)
"""The default mix; weights sum to 1."""

CITIES: Final = {
    "Europe/London": (51.5074, -0.1278),
    "America/New_York": (40.7128, -74.0060),
    "Europe/Paris": (48.8566, 2.3522),
    "Asia/Dubai": (25.2048, 55.2708),
    "Asia/Tokyo": (35.6762, 139.6503),
    "Australia/Sydney": (-33.8688, 151.2093),
}
# fmt: on
"""Where customers in each zone live: around this centre."""


def check(personas: tuple[Persona, ...]) -> None:
    """Refuse a persona mix the simulator cannot draw from."""
    if not personas:
        raise ValueError("at least one persona is needed")
    if any(p.weight < 0 for p in personas) or sum(p.weight for p in personas) <= 0:
        raise ValueError("persona weights must be non-negative and not all zero")
    for p in personas:
        for need, rate in p.needs:
            if need not in NEEDS:
                raise ValueError(f"persona {p.name!r}: unknown need {need!r}")
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"persona {p.name!r}: need {need!r} rate must be in [0, 1]")
        for tz, _ in p.zones:
            if tz not in CITIES:
                raise ValueError(f"persona {p.name!r}: no city for zone {tz!r}")
