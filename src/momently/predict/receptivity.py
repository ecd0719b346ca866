"""Receptivity: when each customer engages, by hour of week in their own time zone.

One trial per delivered message: did the customer engage within the response
window, by the local hour of week (0 = Monday 00:00) it was delivered at? An
engagement no delivery accounts for (an app opened on its own, an email
opened a day later) is a trial won at the hour it happened: it shows when the
customer pays attention. Estimates are Beta–Binomial posterior means, shrunk
in three levels so a new customer gets a sensible curve at once:

    population rate at hour h      shrunk to the global rate
    customer, around hour h        shrunk to the population at h
    customer at hour h             shrunk to the customer's rate around it

*Around hour h* is the same hour of the day on the other days and, each trial
counted at ``neighbour_weight``, the hours of the day either side of it on
every day: attention runs on across an hour's edge (an app opened at 20:58
says something of 21:00), and with a few trials a week a customer's hours are
too sparse to be read one by one. Measured on the synthetic population (1,500
customers over 21 days, prequential), where a customer answers within an hour
of their own hour: ROC AUC 0.794 → 0.889 and log loss 0.253 → 0.235 with a weight of
0.5 (0.25: 0.881 and 0.235); the calibration error 0.036 → 0.066, as the
sessions that count as won trials at their hour now lift the hours beside it
too (decisions read the curve relative to its mean).

:class:`Receptivity` is the population level as a river classifier; the
customer's counts travel in ``x`` (``n``/``k`` at the hour, ``day_n``/``day_k``
around it), so the customer's state stays outside it.

>>> model = Receptivity()
>>> for _ in range(50):
...     model.learn_one({"hour": 20}, True)
...     model.learn_one({"hour": 9}, False)
>>> model.predict_proba_one({"hour": 20})[True] > model.predict_proba_one({"hour": 9})[True]
True
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Final

from river import base
from river.base.typing import ClfTarget

from momently.predict.types import Features

HOURS: Final = 168
_NONE: Final = (0, 0)


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
        rate around it.
    hour_strength
        Pseudo-trials with which that is a prior for the customer's own hour.
    neighbour_weight
        What a trial at the hour of the day either side counts for in the customer's
        rate around an hour (one on the same hour of another day); 0 reads each hour
        of the day alone.
    """

    def __init__(
        self,
        prior_rate: float = 0.2,
        prior_strength: float = 10.0,
        population_strength: float = 20.0,
        day_strength: float = 4.0,
        hour_strength: float = 2.0,
        neighbour_weight: float = 0.5,
    ) -> None:
        self.prior_rate = prior_rate
        self.prior_strength = prior_strength
        self.population_strength = population_strength
        self.day_strength = day_strength
        self.hour_strength = hour_strength
        self.neighbour_weight = neighbour_weight
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

    def customer_rate(self, hour: int, counts: Mapping[int, tuple[int, int]]) -> float:
        """P(engage) at ``hour`` for a customer with these (trials, wins) per hour:
        ``rate(hour, customer_x(counts, hour, neighbour_weight))`` without the dict."""
        n, k, day_n, day_k = evidence(counts, hour, self.neighbour_weight)
        s = self.population_strength
        prior = (self.wins[hour] + s * self.global_rate()) / (self.trials[hour] + s)
        return posterior(prior, n, k, day_n, day_k, self.day_strength, self.hour_strength)

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


@dataclass(frozen=True)
class PopulationRates:
    """The population's trials and wins per hour of week at one moment."""

    trials: tuple[float, ...]
    wins: tuple[float, ...]
    global_rate: float
    strength: float

    @cached_property
    def rates(self) -> tuple[float, ...]:
        """The population's rate at each hour of week (worked out when first read)."""
        s = self.strength
        sg = s * self.global_rate
        return tuple((w + sg) / (t + s) for t, w in zip(self.trials, self.wins, strict=True))

    def rate(self, hour: int) -> float:
        """The population's rate at ``hour``, shrunk to the global rate."""
        s = self.strength
        return (self.wins[hour] + s * self.global_rate) / (self.trials[hour] + s)


def evidence(
    counts: Mapping[int, tuple[int, int]], hour: int, neighbour_weight: float
) -> tuple[float, float, float, float]:
    """A customer's trials and wins at ``hour``, and around it: on the same hour of the
    other days, plus ``neighbour_weight`` times those on the hours of the day either side
    (every day). Without a weight, the same hour of the other days alone, in ints."""
    n, k = counts.get(hour, _NONE)
    day = hour % 24
    day_n = day_k = 0
    for other in range(day, HOURS, 24):
        if other != hour and other in counts:
            on, ok = counts[other]
            day_n += on
            day_k += ok
    if not neighbour_weight:
        return n, k, day_n, day_k
    side_n = side_k = 0
    for side in ((day - 1) % 24, (day + 1) % 24):
        for other in range(side, HOURS, 24):
            if other in counts:
                on, ok = counts[other]
                side_n += on
                side_k += ok
    return n, k, day_n + neighbour_weight * side_n, day_k + neighbour_weight * side_k


def customer_x(
    counts: Mapping[int, tuple[int, int]], hour: int, neighbour_weight: float
) -> Features:
    """A customer's evidence at ``hour`` as the features :class:`Receptivity` reads."""
    n, k, day_n, day_k = evidence(counts, hour, neighbour_weight)
    return {"hour": hour, "n": n, "k": k, "day_n": day_n, "day_k": day_k}


def posterior(
    prior: float, n: float, k: float, day_n: float, day_k: float, day_s: float, hour_s: float
) -> float:
    """A customer's rate at an hour: shrunk to their same hour, in turn shrunk to ``prior``."""
    day = (min(day_k, day_n) + day_s * prior) / (day_n + day_s)
    return (min(k, n) + hour_s * day) / (n + hour_s)
