"""One customer's day, planned at local midnight as compact items in time order.

An item is ``(ms, customer, seq, code, payload, need)``; it becomes a Segment
message only when the world emits it (:mod:`momently.simulate.messages`), and
is dropped then if its need is no longer live — bought after a message, say.
"""

from __future__ import annotations

import math
import random
from typing import Any

from momently.simulate import messages as m
from momently.simulate.catalog import Catalog
from momently.simulate.needs import NEEDS
from momently.simulate.population import Customer
from momently.simulate.simtime import (
    DAY,
    HOUR,
    MINUTE,
    SECOND,
    local_ms,
    midnight_ms,
    rng,
    weekday,
)
from momently.simulate.state import Need, State
from momently.simulate.travel import Travel, at

Item = tuple[int, int, int, int, Any, Need | None]
"""A planned event: (ms, customer index, seq, code, payload, need); (ms, customer, seq) is
unique, so sorting never compares payloads."""
_BROWSE = ("Home", "Offers", "Account", "Category", "Basket")
JOURNEY = (
    ("Clear Braces Options", None),
    ("Clear Braces Cost", None),
    ("Clear Braces Reviews", None),
    ("Before After Gallery", None),
    ("Find a Provider", None),
    ("Contact Form Submitted", "track"),
    ("Consultation Booked", "track"),
)
"""The clear-braces journey's pages (and form events) by stage; the order comes after."""


class Planner:
    """Plans customers' days; one per world, shared by every customer."""

    def __init__(self, catalog: Catalog, seed: int) -> None:
        self.catalog = catalog
        self.seed = seed
        self.travel = Travel(catalog)

    def plan(self, c: Customer, st: State, day: int, from_ms: int) -> tuple[list[Item], int]:
        """Items of local ``day`` at or after ``from_ms``, and when the next day starts.

        Nothing is planned before the day's midnight (nor ``from_ms``), so a day
        planned when its midnight comes never reaches back into the past.
        """
        tz = c.timezone
        start, end = midnight_ms(tz, day), midnight_ms(tz, day + 1)
        r = rng(self.seed, c.index, day)
        out: list[tuple[int, int, Any, Need | None]] = []
        st.prune(start)
        for name, rate in c.persona.needs:
            spec = NEEDS[name]
            if spec.in_store or r.random() >= rate * c.appetite or st.has_live(spec, start):
                continue
            arose = start + int((7 + 15 * r.random()) * HOUR)
            lasts = max(2 * HOUR, int(r.expovariate(1.0) * spec.lasts_hours * HOUR))
            pool = self.catalog.by_category[spec.category]
            need = Need(spec, arose, arose + lasts, pool[int(r.random() * len(pool))])
            st.needs.append(need)
            if spec.broken:
                thing = spec.keyword or spec.category
                if r.random() < 0.45:
                    out.append((arose + 3 * MINUTE, m.SOCIAL, m.broken_post(r, thing), need))
                elif r.random() < 0.3:
                    out.append((arose + 9 * MINUTE, m.SUPPORT, m.broken_support(r, thing), need))
        if c.work is not None and weekday(day) < 5 and r.random() < 0.93:
            leave = start + c.leave_min * MINUTE + int(r.gauss(0, 8) * MINUTE)
            self.travel.commute(out, r, c, st, leave, outward=True)
            back = start + c.back_min * MINUTE + int(r.gauss(0, 12) * MINUTE)
            self.travel.commute(out, r, c, st, back, outward=False)
        elif weekday(day) >= 5 and r.random() < 0.4:
            self.travel.mall_trip(out, r, c, st, start + int((10.5 + 5 * r.random()) * HOUR))
        sessions = min(8, _poisson(r, c.sessions * (1.2 if weekday(day) >= 5 else 1.0)))
        times = sorted(self._session_time(r, c, start) for _ in range(sessions))
        for t in times:
            if t >= from_ms:  # a session before the world began would log in unseen
                self._session(out, r, c, st, t)
        # No sort: the world sorts each hour by (time, customer, seq), and seq is plan order.
        base = day << 16
        items = [
            (ts, c.index, base + k, code, payload, need)
            for k, (ts, code, payload, need) in enumerate(out)
            if ts >= from_ms and ts >= start
        ]
        return items, end

    def _session_time(self, r: random.Random, c: Customer, start: int) -> int:
        if r.random() < 0.3:
            hour = 7.0 + 16.0 * r.random()
        else:
            hour = c.peaks[int(r.random() * 2)] + r.gauss(0, c.width)
        return start + int((hour % 24) * HOUR)

    def _session(self, out: list[Any], r: random.Random, c: Customer, st: State, t: int) -> None:
        live = st.live_needs(t)
        live = [n for n in live if not n.spec.in_store]
        need = live[-1] if live and r.random() < 0.8 else None
        devices = c.devices
        k = 0
        if need is not None and need.spec.journey and devices[-1].kind == "laptop":
            k = len(devices) - 1
        elif len(devices) > 1 and r.random() < 0.25:
            k = 1 + int(r.random() * (len(devices) - 1))
        device = devices[k]
        app = device.app
        if not st.logins >> k & 1:
            if not app:  # browse anonymously on the web, then log in
                out.append((t, m.PAGE, (k, "Home"), None))
                t += int(20 * SECOND + 40 * SECOND * r.random())
            out.append((t, m.IDENTIFY, k, None))
            st.logins |= 1 << k  # planned in order: later sessions are logged in
            t += SECOND
        if app:
            out.append((t, m.OPEN, k, None))
            if c.locates and k == 0:
                lat, lon = c.work if c.work is not None and _at_work(c, t) else c.home
                out.append((t + 2 * SECOND, m.PING, at(lat, lon, r, 25.0), None))
        screen = m.SCREEN if app else m.PAGE
        t += int(5 * SECOND + 20 * SECOND * r.random())
        if need is not None:
            t = self._need_steps(out, r, c, need, k, screen, t)
        else:
            t = self._browse(out, r, c, k, screen, t)
        if app:
            out.append((t + int(30 * SECOND * r.random()), m.BACKGROUND, k, None))

    def _browse(
        self, out: list[Any], r: random.Random, c: Customer, k: int, screen: int, t: int
    ) -> int:
        cat = self.catalog
        for _ in range(1 + int(3 * r.random())):
            x = r.random()
            if x < 0.3:
                out.append((t, screen, (k, _BROWSE[int(r.random() * len(_BROWSE))]), None))
            elif x < 0.65:
                product = cat.all_products[int(r.random() * len(cat.all_products))]
                out.append((t, m.PRODUCT, (k, "Product Viewed", product), None))
            elif x < 0.78:
                out.append((t, m.SEARCH, (k, cat.noise[int(r.random() * len(cat.noise))]), None))
            elif x < 0.88:
                query = cat.curious[int(r.random() * len(cat.curious))]
                out.append((t, m.SEARCH, (k, query), None))
            elif x < 0.95:
                name = "Recipes" if c.household_size >= 3 else "Offers"
                out.append((t, screen, (k, name), None))
            elif x < 0.975:
                out.append((t, screen, (k, "Store Locator"), None))
            elif x < 0.98 and k == 0:
                out.append((t, m.TRACK, (k, "Application Crashed"), None))
            else:
                out.append((t, screen, (k, "Home"), None))
            t += int(15 * SECOND + 60 * SECOND * r.random())
        return t

    def _need_steps(
        self, out: list[Any], r: random.Random, c: Customer, need: Need, k: int, screen: int, t: int
    ) -> int:
        spec = need.spec
        queries = self.catalog.queries[spec.name]
        step = 45 * SECOND
        if spec.journey:
            t = _journey_step(out, r, need, k, screen, t, queries)
        elif need.stage == 0:
            kind = "do" if spec.broken and r.random() < 0.4 else "know"
            for _ in range(1 + int(2 * r.random())):
                pool = queries[kind] or queries["know"]
                out.append((t, m.SEARCH, (k, pool[int(r.random() * len(pool))]), need))
                t += int(step * (0.5 + r.random()))
            if kind == "do" and r.random() < 0.3:
                out.append((t, m.TRACK, (k, "Video Playback Started"), need))
        elif need.stage == 1:
            pool = queries["buy"] or queries["know"]
            out.append((t, m.SEARCH, (k, pool[int(r.random() * len(pool))]), need))
            others = self.catalog.by_category[spec.category]
            for _ in range(1 + int(3 * r.random())):
                t += int(step * (0.5 + r.random()))
                product = others[int(r.random() * len(others))]
                out.append((t, m.PRODUCT, (k, "Product Viewed", product), need))
            if r.random() < 0.3:
                out.append(
                    (t + 20 * SECOND, m.PRODUCT, (k, "Product Reviews Viewed", need.product), need)
                )
        elif need.stage == 2:
            out.append((t, m.PRODUCT, (k, "Product Viewed", need.product), need))
            if r.random() < 0.2:
                t += int(step * r.random())
                out.append((t, m.PRODUCT, (k, "Product Added to Wishlist", need.product), need))
            t += int(step * (0.5 + r.random()))
            out.append((t, m.PRODUCT, (k, "Product Added", need.product), need))
        else:
            out.append((t, m.PRODUCT, (k, "Checkout Started", need.product), need))
            t += int(step * (1 + 2 * r.random()))
            if r.random() < 0.08:
                out.append((t, m.TRACK, (k, "Payment Failed"), need))
                t += int(step * r.random())
            if r.random() < spec.close:
                fulfilment = "collect" if r.random() < 0.1 else "delivery"
                out.append((t, m.ORDER, (k, need.product, fulfilment, None), need))
        if r.random() < spec.advance:
            need.stage = min(need.stage + 1, len(JOURNEY) if spec.journey else 3)
        return t + int(step * r.random())


def _journey_step(
    out: list[Any],
    r: random.Random,
    need: Need,
    k: int,
    screen: int,
    t: int,
    queries: dict[str, tuple[str, ...]],
) -> int:
    """One visit along the clear-braces journey: the pages of its stage, and a search or two."""
    stage = need.stage
    if stage <= 1 and r.random() < 0.6:
        pool = queries["know"]
        out.append((t, m.SEARCH, (k, pool[int(r.random() * len(pool))]), need))
        t += int(40 * SECOND * (0.5 + r.random()))
    if stage == 4 and r.random() < 0.5:
        pool = queries["go"] or queries["know"]
        out.append((t, m.SEARCH, (k, pool[int(r.random() * len(pool))]), need))
        t += int(40 * SECOND * (0.5 + r.random()))
    if stage < len(JOURNEY):
        name, event = JOURNEY[stage]
        if event is not None:  # a form sent from the provider finder
            out.append((t, screen, (k, JOURNEY[4][0]), need))
            t += int(90 * SECOND * (0.5 + r.random()))
        out.append((t, screen if event is None else m.TRACK, (k, name), need))
    elif r.random() < need.spec.close:
        out.append((t, m.ORDER, (k, need.product, "clinic", "clinic-3"), need))
    return t + int(60 * SECOND * (0.5 + r.random()))


def _at_work(c: Customer, t: int) -> bool:
    minute = (local_ms(c.timezone, t) // MINUTE) % (DAY // MINUTE)
    return c.leave_min + 60 <= minute < c.back_min


def _poisson(r: random.Random, mean: float) -> int:
    limit, k, p = math.exp(-mean), 0, r.random()
    while p > limit:
        k += 1
        p *= r.random()
    return k
