"""Receptivity: when each customer engages, by hour of week in their own time zone.

One trial per delivered message: did the customer engage within the response
window, by the local hour of week (0 = Monday 00:00) it was delivered at? An
engagement no delivery accounts for (an app opened on its own, an email
opened a day later) is a trial won at the hour it happened: it shows when the
customer pays attention. Estimates are Beta–Binomial posterior means, shrunk
in three levels so a new customer gets a sensible curve at once:

    population rate at hour h      shrunk to the global rate
    customer, same hour other days shrunk to the population at h
    customer at hour h             shrunk to the customer's same-hour rate

:class:`Receptivity` is the population level as a river classifier; the
customer's counts travel in ``x`` (``n``/``k`` at the hour, ``day_n``/``day_k``
at the same hour on the other days), so the customer's state stays outside it.

>>> model = Receptivity()
>>> for _ in range(50):
...     model.learn_one({"hour": 20}, True)
...     model.learn_one({"hour": 9}, False)
>>> model.predict_proba_one({"hour": 20})[True] > model.predict_proba_one({"hour": 9})[True]
True
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from river import base
from river.base.typing import ClfTarget

from momently.predict.settings import HOUR
from momently.predict.types import Features

HOURS: Final = 168


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
    return _hour_of_quarter(ms // _QUARTER, tz)


_QUARTER: Final = 15 * 60_000


@functools.lru_cache(maxsize=8192)
def _hour_of_quarter(quarter: int, tz: str | None) -> int:
    # Every zone's offset is a multiple of 15 minutes and changes on such a boundary,
    # so the local hour is the same all through a UTC quarter-hour: cache by it.
    local = datetime.fromtimestamp(quarter * _QUARTER / 1000, tz=zone(tz))
    return local.weekday() * 24 + local.hour


def _count(x: Features, key: str) -> float:
    value = x.get(key, 0.0)
    return float(value) if isinstance(value, int | float) and value > 0 else 0.0


def _hour(x: Features) -> int | None:
    value = x.get("hour")
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value < HOURS:
        return int(value)
    return None


class Receptivity(base.Classifier):
    """P(engage within the response window | delivered at a local hour of week).

    Parameters
    ----------
    prior_rate, prior_strength
        The Beta prior of the global rate, as a mean and pseudo-trials.
    population_strength
        Pseudo-trials with which the global rate is a prior for each hour.
    day_strength
        Pseudo-trials with which the population's hour is a prior for the customer's
        same hour on other days.
    hour_strength
        Pseudo-trials with which that is a prior for the customer's own hour.
    """

    def __init__(
        self,
        prior_rate: float = 0.2,
        prior_strength: float = 10.0,
        population_strength: float = 20.0,
        day_strength: float = 4.0,
        hour_strength: float = 2.0,
    ) -> None:
        self.prior_rate = prior_rate
        self.prior_strength = prior_strength
        self.population_strength = population_strength
        self.day_strength = day_strength
        self.hour_strength = hour_strength
        self.trials = [0.0] * HOURS
        self.wins = [0.0] * HOURS
        self.total_trials = 0.0
        self.total_wins = 0.0
        self._frozen: PopulationRates | None = None

    @property
    def _multiclass(self) -> bool:
        return False

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_frozen"] = None  # a cache: not part of what the model knows
        return state

    def global_rate(self) -> float:
        return (self.total_wins + self.prior_strength * self.prior_rate) / (
            self.total_trials + self.prior_strength
        )

    def population(self) -> PopulationRates:
        """The population's counts, frozen (and cached until the next update)."""
        if self._frozen is None:
            self._frozen = PopulationRates(
                tuple(self.trials), tuple(self.wins), self.global_rate(), self.population_strength
            )
        return self._frozen

    def rate(self, hour: int, x: Features) -> float:
        """P(engage) at ``hour`` for a customer with the evidence in ``x``."""
        prior = self.population().rate(hour)
        return posterior(
            prior,
            _count(x, "n"),
            _count(x, "k"),
            _count(x, "day_n"),
            _count(x, "day_k"),
            self.day_strength,
            self.hour_strength,
        )

    def learn_one(self, x: Features, y: ClfTarget, w: float = 1.0) -> None:
        hour = _hour(x)
        if hour is None:
            return
        self.trials[hour] += w
        self.total_trials += w
        if y:
            self.wins[hour] += w
            self.total_wins += w
        self._frozen = None

    def predict_proba_one(self, x: Features, **kwargs: Any) -> dict[ClfTarget, float]:
        hour = _hour(x)
        if hour is None:
            p = self.global_rate()
        else:
            p = self.rate(hour, x)
        return {False: 1.0 - p, True: p}


@dataclass(frozen=True, slots=True)
class PopulationRates:
    """The population's trials and wins per hour of week at one moment."""

    trials: tuple[float, ...]
    wins: tuple[float, ...]
    global_rate: float
    strength: float

    def rate(self, hour: int) -> float:
        """The population's rate at ``hour``, shrunk to the global rate."""
        s = self.strength
        return (self.wins[hour] + s * self.global_rate) / (self.trials[hour] + s)


def customer_x(counts: Mapping[int, tuple[int, int]], hour: int) -> Features:
    """A customer's evidence at ``hour`` as the features :class:`Receptivity` reads."""
    n, k = counts.get(hour, (0, 0))
    day_n = day_k = 0
    for day in range(7):
        other = day * 24 + hour % 24
        if other != hour and other in counts:
            on, ok = counts[other]
            day_n += on
            day_k += ok
    return {"hour": hour, "n": n, "k": k, "day_n": day_n, "day_k": day_k}


def posterior(
    prior: float, n: float, k: float, day_n: float, day_k: float, day_s: float, hour_s: float
) -> float:
    """A customer's rate at an hour: shrunk to their same hour, in turn shrunk to ``prior``."""
    day = (min(day_k, day_n) + day_s * prior) / (day_n + day_s)
    return (min(k, n) + hour_s * day) / (n + hour_s)


@dataclass(frozen=True, slots=True)
class ReceptivityCurve:
    """One customer's receptivity, frozen at prediction time; computed on demand.

    ``counts`` maps a local hour of week to the customer's (trials, wins).
    """

    timezone: str
    counts: Mapping[int, tuple[int, int]]
    population: PopulationRates
    day_strength: float
    hour_strength: float

    def hour_rate(self, hour: int) -> float:
        """P(engage) after a delivery at local hour of week ``hour``."""
        x = customer_x(self.counts, hour)
        return posterior(
            self.population.rate(hour),
            x["n"],
            x["k"],
            x["day_n"],
            x["day_k"],
            self.day_strength,
            self.hour_strength,
        )

    def at(self, ms: int) -> float:
        """P(engage) after a delivery at ``ms`` (an absolute time)."""
        return self.hour_rate(hour_of_week(ms, self.timezone))

    def weekly(self) -> tuple[float, ...]:
        """P(engage) for each local hour of week, Monday 00:00 first."""
        counts = self.counts
        day_n, day_k = [0] * 24, [0] * 24
        for hour, (n, k) in counts.items():
            day_n[hour % 24] += n
            day_k[hour % 24] += k
        rate, day_s, hour_s = self.population.rate, self.day_strength, self.hour_strength
        week = []
        for hour in range(HOURS):
            n, k = counts.get(hour, (0, 0))
            d = hour % 24
            week.append(posterior(rate(hour), n, k, day_n[d] - n, day_k[d] - k, day_s, hour_s))
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
