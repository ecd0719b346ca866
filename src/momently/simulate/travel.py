"""Getting about: GPS fixes on the way to work, past the doughnut store, and to the mall.

A commute that goes past a playbook place ends in a short walk straight
through it, with fixes every minute or so, so its geofence sees an enter;
a craving may stop the customer inside, where the store's beacon is seen.
Someone who wants clothes may spend a weekend hour at the mall.
"""

from __future__ import annotations

import math
import random
from typing import Any

from momently.simulate import messages as m
from momently.simulate.catalog import Catalog
from momently.simulate.needs import NEEDS
from momently.simulate.population import Customer
from momently.simulate.simtime import MINUTE, SECOND
from momently.simulate.state import Need, State

TRANSIT = 6.0  # m/s, waits included
WALK = 1.3


def at(lat: float, lon: float, r: random.Random, metres: float) -> tuple[float, float, float]:
    """A fix near (lat, lon) as a phone reports it: a little noise, and its accuracy."""
    d = metres / 111_320
    return lat + d * (r.random() - 0.5), lon + d * 1.6 * (r.random() - 0.5), metres


class Travel:
    """Plans journeys; shared by every customer of a world."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.doughnut = NEEDS["doughnut"]
        self.store = catalog.place.get("store-12")
        self.fashion = NEEDS["fashion"]
        self.mall = catalog.place.get("mall-west")

    def commute(
        self, out: list[Any], r: random.Random, c: Customer, st: State, t: int, outward: bool
    ) -> None:
        """To work (or home when not ``outward``) from ``t``: fixes along the way."""
        if c.work is None:
            return
        if c.via is None:
            legs = [(c.home, c.work, TRANSIT)]
        else:
            legs = [(c.home, c.via, TRANSIT), (c.via, c.work, WALK)]
        if not outward:
            legs = [(b, a, v) for a, b, v in reversed(legs)]
        self._go(out, r, c, st, legs, t)

    def mall_trip(self, out: list[Any], r: random.Random, c: Customer, st: State, t: int) -> None:
        """A weekend trip to the mall from ``t`` while wanting clothes; perhaps a purchase."""
        mall = self.mall
        if mall is None or c.timezone != "Europe/London":
            return
        need = next((n for n in reversed(st.needs) if n.spec is self.fashion and n.live(t)), None)
        if need is None:
            return
        there = (mall.lat, mall.lon)
        t = self._go(out, r, c, st, [(c.home, there, TRANSIT)], t)
        stay = int((30 + 50 * r.random()) * MINUTE)
        if c.locates:
            for s in range(0, stay, 4 * MINUTE):
                out.append((t + s + SECOND, m.PING, at(mall.lat, mall.lon, r, 60.0), None))
        if r.random() < 0.5:
            order = (0, need.product, "in-store", mall.id)
            out.append((t + int(stay * (0.4 + 0.5 * r.random())), m.ORDER, order, need))
        self._go(out, r, c, st, [(there, c.home, TRANSIT)], t + stay)

    def _go(
        self,
        out: list[Any],
        r: random.Random,
        c: Customer,
        st: State,
        legs: list[tuple[tuple[float, float], tuple[float, float], float]],
        t: int,
    ) -> int:
        """Travel the legs from ``t``, a fix every few minutes (every minute on foot)."""
        cos = math.cos(math.radians(c.home[0]))
        rand, ping = r.random, m.PING
        for a, b, speed in legs:
            walking = speed == WALK
            metres = 111_320 * math.hypot(b[0] - a[0], (b[1] - a[1]) * cos)
            duration = max(1, int(metres / speed * SECOND))
            every = int(((60 + 20 * rand()) if walking else (300 + 120 * rand())) * SECOND)
            pass_at = t + duration // 2 if walking and c.route == "store-12" else None
            accuracy = 8.0 if walking else 35.0
            noise = accuracy / 111_320
            lat0, lon0, dlat, dlon = a[0], a[1], b[0] - a[0], b[1] - a[1]
            stop = 0
            for elapsed in range(0, duration + 1, every):
                if pass_at is not None and t + elapsed >= pass_at:
                    stop = self._past_store(out, r, c, st, pass_at)
                    pass_at = None
                if c.locates:
                    f = elapsed / duration
                    fix = (
                        lat0 + dlat * f + noise * (rand() - 0.5),
                        lon0 + dlon * f + noise * 1.6 * (rand() - 0.5),
                        accuracy,
                    )
                    out.append((t + stop + elapsed, ping, fix, None))
            t += duration + stop
        return t

    def _past_store(self, out: list[Any], r: random.Random, c: Customer, st: State, t: int) -> int:
        """Walk past the doughnut store at ``t``; a craving may stop them. Returns the stop."""
        store = self.store
        if store is None:
            return 0
        if c.locates and r.random() < 0.5:
            out.append((t, m.BEACON, -85 - int(8 * r.random()), None))
        if r.random() >= c.doughnut:
            return 0
        pool = self.catalog.by_category["bakery"]
        lasts = int((60 + 60 * r.random()) * MINUTE)
        need = Need(self.doughnut, t - 2 * MINUTE, t + lasts, pool[int(r.random() * len(pool))])
        st.needs.append(need)
        if r.random() >= 0.35:
            return 0
        stay = int((4 + 5 * r.random()) * MINUTE)
        if c.locates:
            for s in range(0, stay, MINUTE):
                out.append((t + s + SECOND, m.PING, at(store.lat, store.lon, r, 10.0), None))
                out.append((t + s + 20 * SECOND, m.BEACON, -60 - int(15 * r.random()), None))
        out.append((t + stay - MINUTE, m.ORDER, (0, need.product, "in-store", store.id), need))
        return stay
