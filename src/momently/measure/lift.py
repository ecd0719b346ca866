"""Attribution and lift: what momently's messages earned, measured against the holdout.

**Attribution.** Each conversion (``Order Completed``, with its revenue) goes to
the customer's last decision to act (send or schedule, sent or held out) made
no more than ``window_ms`` before it (last touch, 72 h by default). A held-out
decision is a decision not sent, so a held-out customer's purchase is
attributed to the decision that would have been sent: that is what makes the
comparison honest. Conversions with no decision in the window are counted as
unattributed.

**Lift.** Per offer, moment kind and channel (and over everything), customers
fall into the *treated* arm (they had a decision there that was meant to be
sent) or the *held-out* arm (a decision held back by a holdout); a customer
with both counts once in each, with the conversions of each arm's decisions.
Assignment is what counts, not delivery — a treated send later cancelled or
failed stays treated (intention to treat), as a held-out one never could be
sent either; dropping them would bias the comparison. For each arm:
customers, converted customers, conversion rate and revenue per customer;
between the arms the rate difference with a normal-approximation interval
and the revenue-per-customer difference with a seeded percentile bootstrap.

>>> ds = [_d("de-1", "c1", 0), _d("de-2", "c2", 0, holdout="global")]
>>> cs = [Conversion("c1", 3_600_000, 40.0), Conversion("c3", 0, 9.0)]
>>> report = lift(ds, cs, n_boot=100)
>>> everything = report.segments[0]
>>> (everything.treated.converted, everything.held_out.customers, report.unattributed)
(1, 1, 1)
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any, Final

import numpy as np

from momently.decide.records import Decision, Holdout

HOUR_MS: Final = 3_600_000
WINDOW_MS: Final = 72 * HOUR_MS
DIMENSIONS: Final = ("offer", "moment_kind", "channel")


@dataclass(frozen=True, slots=True)
class Conversion:
    """One purchase: who, when (event time, ms) and for how much."""

    customer_id: str
    at_ms: int
    revenue: float = 0.0


@dataclass(frozen=True, slots=True)
class Interval:
    value: float
    low: float
    high: float


@dataclass(frozen=True, slots=True)
class Arm:
    """One side of a comparison, counted by customer."""

    customers: int
    decisions: int
    converted: int
    conversions: int
    revenue: float

    @property
    def rate(self) -> float | None:
        return self.converted / self.customers if self.customers else None

    @property
    def revenue_per_customer(self) -> float | None:
        return self.revenue / self.customers if self.customers else None

    def to_json(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "rate": self.rate,
            "revenuePerCustomer": self.revenue_per_customer,
        }


@dataclass(frozen=True, slots=True)
class Lift:
    """Treated against held out, for one value of one dimension."""

    dimension: str  # "all", "offer", "moment_kind" or "channel"
    value: str
    treated: Arm
    held_out: Arm
    rate_diff: Interval | None  # treated rate minus held-out rate; None if an arm is empty
    revenue_diff: Interval | None  # revenue per customer, treated minus held out

    @property
    def relative_rate(self) -> float | None:
        """The rate difference relative to the held-out rate (no interval)."""
        base = self.held_out.rate
        if self.rate_diff is None or not base:
            return None
        return self.rate_diff.value / base

    def to_json(self) -> dict[str, Any]:
        return {
            "dimension": self.dimension,
            "value": self.value,
            "treated": self.treated.to_json(),
            "heldOut": self.held_out.to_json(),
            "rateDiff": asdict(self.rate_diff) if self.rate_diff else None,
            "relativeRate": self.relative_rate,
            "revenuePerCustomerDiff": asdict(self.revenue_diff) if self.revenue_diff else None,
        }


@dataclass(frozen=True, slots=True)
class Report:
    window_ms: int
    confidence: float
    decisions: int
    conversions: int
    attributed: int
    unattributed: int
    segments: list[Lift]

    def to_json(self) -> dict[str, Any]:
        return {
            "windowMs": self.window_ms,
            "confidence": self.confidence,
            "decisions": self.decisions,
            "conversions": self.conversions,
            "attributed": self.attributed,
            "unattributed": self.unattributed,
            "segments": [s.to_json() for s in self.segments],
        }


def acts(decision: Decision) -> bool:
    """Whether a decision chose an offer (sent, scheduled, or held out as if sent)."""
    return decision.action in ("send", "schedule") and decision.offer is not None


def attribute(
    decisions: Iterable[Decision], conversions: Iterable[Conversion], window_ms: int = WINDOW_MS
) -> tuple[dict[str, list[Conversion]], list[Conversion]]:
    """Last touch: decision id -> the conversions it gets, and the conversions nobody gets.

    A decision at the same millisecond as a conversion precedes it.

    >>> got, left = attribute([_d("de-1", "c1", 0)], [Conversion("c1", 10, 5.0)], 100)
    >>> [c.revenue for c in got["de-1"]], left
    ([5.0], [])
    """
    if window_ms <= 0:
        raise ValueError("the attribution window must be positive")
    touches: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for decision in decisions:
        if acts(decision):
            touches[decision.customer_id].append((decision.at_ms, decision.decision_id))
    for found in touches.values():
        found.sort()
    got: dict[str, list[Conversion]] = defaultdict(list)
    left: list[Conversion] = []
    for conversion in conversions:
        found = touches.get(conversion.customer_id, [])
        # the last touch at or before the conversion: (at, "\uffff") sorts after every id at `at`
        index = bisect.bisect_right(found, (conversion.at_ms, "\uffff")) - 1
        if index >= 0 and conversion.at_ms - found[index][0] < window_ms:
            got[found[index][1]].append(conversion)
        else:
            left.append(conversion)
    return dict(got), left


def _key(decision: Decision, dimension: str) -> str:
    if dimension == "all":
        return "*"
    if dimension == "offer":
        return decision.offer or ""
    if dimension == "moment_kind":
        return decision.moment_kind
    if dimension == "channel":
        return decision.channel or ""
    raise ValueError(f"unknown dimension {dimension!r}")


@dataclass
class _Tally:
    decisions: int = 0
    conversions: int = 0
    revenue: float = 0.0


def _arm(customers: dict[str, _Tally]) -> tuple[Arm, list[float]]:
    revenues = [t.revenue for t in customers.values()]
    return (
        Arm(
            customers=len(customers),
            decisions=sum(t.decisions for t in customers.values()),
            converted=sum(1 for t in customers.values() if t.conversions),
            conversions=sum(t.conversions for t in customers.values()),
            revenue=float(sum(revenues)),
        ),
        revenues,
    )


def rate_interval(
    converted_t: int, n_t: int, converted_c: int, n_c: int, confidence: float = 0.95
) -> Interval:
    """The difference of two rates with a normal-approximation (Wald) interval.

    >>> i = rate_interval(150, 1000, 100, 1000)
    >>> round(i.value, 3), round(i.low, 3), round(i.high, 3)
    (0.05, 0.021, 0.079)
    """
    p_t, p_c = converted_t / n_t, converted_c / n_c
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    se = math.sqrt(p_t * (1 - p_t) / n_t + p_c * (1 - p_c) / n_c)
    diff = p_t - p_c
    return Interval(diff, diff - z * se, diff + z * se)


def _boot_means(values: Sequence[float], n_boot: int, rng: np.random.Generator) -> Any:
    """Means of ``n_boot`` resamples with replacement, drawing only the non-zero values.

    How many of the ``n`` draws land on one of the ``k`` non-zero values is
    Binomial(n, k/n), and which ones is uniform among them: the same distribution
    as resampling all ``n``, at the cost of the (usually few) buyers.
    """
    n = len(values)
    nonzero = np.asarray([v for v in values if v], dtype=np.float64)
    if nonzero.size == 0:
        return np.zeros(n_boot)
    picks = rng.binomial(n, nonzero.size / n, size=n_boot)
    drawn = nonzero[rng.integers(0, nonzero.size, size=int(picks.sum()))]
    cumulative = np.concatenate(([0.0], np.cumsum(drawn)))
    ends = np.cumsum(picks)
    return (cumulative[ends] - cumulative[ends - picks]) / n


def revenue_interval(
    treated: Sequence[float],
    held_out: Sequence[float],
    *,
    confidence: float = 0.95,
    n_boot: int = 2_000,
    seed: int = 0,
) -> Interval:
    """Revenue per customer, treated minus held out, with a seeded percentile bootstrap."""
    rng = np.random.default_rng(seed)
    diffs = _boot_means(treated, n_boot, rng) - _boot_means(held_out, n_boot, rng)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(diffs, [alpha, 1 - alpha])
    value = sum(treated) / len(treated) - sum(held_out) / len(held_out)
    return Interval(float(value), float(low), float(high))


def lift(
    decisions: Iterable[Decision],
    conversions: Iterable[Conversion],
    *,
    window_ms: int = WINDOW_MS,
    dimensions: Sequence[str] = DIMENSIONS,
    confidence: float = 0.95,
    n_boot: int = 2_000,
    seed: int = 0,
) -> Report:
    """Attribute ``conversions`` to ``decisions`` and compare treated with held-out customers."""
    if not 0 < confidence < 1:
        raise ValueError("confidence is a share between 0 and 1")
    if n_boot < 1:
        raise ValueError("n_boot must be positive")
    acting = [d for d in decisions if acts(d)]
    conversions = list(conversions)
    got, left = attribute(acting, conversions, window_ms)
    segments: list[Lift] = []
    for dimension in ("all", *dimensions):
        # value -> arm -> customer -> tally
        groups: dict[str, dict[bool, dict[str, _Tally]]] = defaultdict(
            lambda: {True: {}, False: {}}
        )
        for decision in acting:
            arm = groups[_key(decision, dimension)][decision.holdout is None]
            tally = arm.setdefault(decision.customer_id, _Tally())
            tally.decisions += 1
            for conversion in got.get(decision.decision_id, ()):
                tally.conversions += 1
                tally.revenue += conversion.revenue
        for value in sorted(groups):
            (treated, t_rev), (held, h_rev) = _arm(groups[value][True]), _arm(groups[value][False])
            both = treated.customers > 0 and held.customers > 0
            segments.append(
                Lift(
                    dimension=dimension,
                    value=value,
                    treated=treated,
                    held_out=held,
                    rate_diff=rate_interval(
                        treated.converted,
                        treated.customers,
                        held.converted,
                        held.customers,
                        confidence,
                    )
                    if both
                    else None,
                    revenue_diff=revenue_interval(
                        t_rev, h_rev, confidence=confidence, n_boot=n_boot, seed=seed
                    )
                    if both
                    else None,
                )  # fmt: skip
            )
    attributed = sum(len(found) for found in got.values())
    return Report(
        window_ms=window_ms,
        confidence=confidence,
        decisions=len(acting),
        conversions=len(conversions),
        attributed=attributed,
        unattributed=len(left),
        segments=segments,
    )


def _d(decision_id: str, customer: str, at_ms: int, holdout: Holdout | None = None) -> Decision:
    """A send decision, for the examples above."""
    return Decision(
        decision_id=decision_id, customer_id=customer, moment_id="mo-" + decision_id,
        moment_name="m", moment_kind="buy", at_ms=at_ms, action="send", offer="o",
        channel="email", holdout=holdout,
    )  # fmt: skip
