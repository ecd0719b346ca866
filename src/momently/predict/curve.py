"""One customer's receptivity curve, frozen at prediction time and computed on demand."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from math import frexp
from typing import Final

from momently.predict.localtime import hour_of_week, zone
from momently.predict.receptivity import HOURS, PopulationRates, evidence, posterior
from momently.predict.settings import HOUR

_MAX_POWER: Final = 2.0**512  # hs * x stays finite for any x up to 2**511


@dataclass(frozen=True, slots=True)
class ReceptivityCurve:
    """One customer's receptivity, frozen at prediction time; computed on demand.

    ``counts`` maps a local hour of week to the customer's (trials, wins); the
    strengths and the neighbours' weight are :class:`~momently.predict.receptivity.
    Receptivity`'s.
    """

    timezone: str
    counts: Mapping[int, tuple[int, int]]
    population: PopulationRates
    day_strength: float
    hour_strength: float
    neighbour_weight: float

    def hour_rate(self, hour: int) -> float:
        """P(engage) after a delivery at local hour of week ``hour``."""
        n, k, day_n, day_k = evidence(self.counts, hour, self.neighbour_weight)
        return posterior(
            self.population.rate(hour), n, k, day_n, day_k, self.day_strength, self.hour_strength
        )

    def at(self, ms: int) -> float:
        """P(engage) after a delivery at ``ms`` (an absolute time)."""
        return self.hour_rate(hour_of_week(ms, self.timezone))

    def weekly(self) -> tuple[float, ...]:
        """P(engage) for each local hour of week, Monday 00:00 first.

        An hour of the day the customer has no trials at or beside, on any day, is
        the population's rate at each of its seven hours: only the hours of the day
        the customer has evidence for are worked out.
        """
        counts = self.counts
        rates = self.population.rates
        if not counts:
            return rates
        own_n, own_k = [0] * 24, [0] * 24  # per hour of the day, all days together
        for hour, (n, k) in counts.items():
            own_n[hour % 24] += n
            own_k[hour % 24] += k
        days = {hour % 24 for hour in counts}  # the hours of the day with evidence
        w = self.neighbour_weight
        day_n: Mapping[int, float] | Sequence[float] = own_n  # by hour of the day
        day_k: Mapping[int, float] | Sequence[float] = own_k
        if w:  # and those beside them; each pooled as evidence() pools it (d - 23 is d + 1)
            days |= {(d + side) % 24 for d in days for side in (-1, 1)}
            day_n = {d: own_n[d] + w * (own_n[d - 1] + own_n[d - 23]) for d in days}
            day_k = {d: own_k[d] + w * (own_k[d - 1] + own_k[d - 23]) for d in days}
        week = list(rates)
        ds, hs = self.day_strength, self.hour_strength
        # hs * x / hs is x, bit for bit, when hs is a power of two at least 1 (both steps
        # exact: x is a rate, at most 1 with counts that make sense and far below 2**511
        # with any int64 counts, so hs * x neither overflows nor loses bits).
        power = frexp(hs)[0] == 0.5 and 1.0 <= hs <= _MAX_POWER
        for d in days:
            dn, dk = day_n[d], day_k[d]
            if not dn and not dk:
                continue
            # posterior(), inlined: this runs for every hour of a decision's week. First
            # as for an hour without trials of its own (n = k = 0, so the day's counts are
            # the whole day's, and (0 + hs * day) / (0 + hs) is hs * day / hs, bit for bit);
            # the hours with trials are worked out again below.
            base, den = (dk if dk < dn else dn), dn + ds
            if power:
                week[d::24] = [(base + ds * r) / den for r in rates[d::24]]
            else:
                week[d::24] = [hs * ((base + ds * r) / den) / hs for r in rates[d::24]]
        for hour, (n, k) in counts.items():
            d = hour % 24
            if not (day_n[d] or day_k[d]) or not 0 <= hour < HOURS:
                continue
            dn, dk = own_n[d] - n, own_k[d] - k  # the other days' and, below, the sides'
            if w:
                dn, dk = (
                    dn + w * (own_n[d - 1] + own_n[d - 23]),
                    dk + w * (own_k[d - 1] + own_k[d - 23]),
                )
            day = ((dk if dk < dn else dn) + ds * rates[hour]) / (dn + ds)
            week[hour] = ((k if k < n else n) + hs * day) / (n + hs)
        return tuple(week)

    def daily(self) -> tuple[float, ...]:
        """P(engage) for each local hour of the day, averaged over the days of the week."""
        week = self.weekly()
        return tuple(sum(week[d * 24 + h] for d in range(7)) / 7 for h in range(24))

    def best_hour(self) -> int:
        """The local hour of the day (0–23) with the highest average P(engage)."""
        daily = self.daily()
        return max(range(24), key=lambda h: (daily[h], -h))

    def best_hour_of_week(self) -> int:
        """The local hour of week (0–167) with the highest P(engage)."""
        week = self.weekly()
        return max(range(HOURS), key=lambda h: (week[h], -h))

    def best_time(self, start_ms: int, end_ms: int) -> int:
        """The start of the most receptive hour between ``start_ms`` and ``end_ms``.

        ``start_ms`` itself when it is the best (or the window is under an hour);
        the earliest of equally good hours otherwise.
        """
        best, best_p = start_ms, self.at(start_ms)
        local = datetime.fromtimestamp(start_ms / 1000, tz=UTC).astimezone(zone(self.timezone))
        into = ((local.minute * 60 + local.second) * 1000) + local.microsecond // 1000
        t = start_ms - into + HOUR  # the next local whole hour (zones may be off by 30 min)
        while t < end_ms and t < start_ms + HOURS * HOUR:
            p = self.at(t)
            if p > best_p:
                best, best_p = t, p
            t += HOUR
        return best
