"""Differences in means with confidence intervals: treated against holdout.

>>> import numpy as np
>>> est = lift("rate", np.array([1.0, 1.0, 0.0, 1.0]), np.array([0.0, 1.0, 0.0, 0.0]))
>>> est.difference, est.treated_n, est.holdout_n
(0.5, 4, 4)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import numpy.typing as npt

Values = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Lift:
    """Treated mean minus holdout mean, with its interval and sample sizes."""

    metric: str
    treated_n: int
    holdout_n: int
    treated_mean: float
    holdout_mean: float
    difference: float
    low: float
    high: float
    confidence: float
    method: str

    @property
    def relative(self) -> float | None:
        """The difference as a share of the holdout mean, where that is not zero."""
        return self.difference / self.holdout_mean if self.holdout_mean else None

    @property
    def significant(self) -> bool:
        """Whether the interval leaves zero out."""
        return self.low > 0 or self.high < 0


def lift(
    metric: str,
    treated: npt.ArrayLike,
    holdout: npt.ArrayLike,
    *,
    confidence: float = 0.95,
    method: str = "normal",
    rounds: int = 2000,
    seed: int = 0,
) -> Lift:
    """The difference of means with a ``confidence`` interval.

    ``method`` is ``"normal"`` (Welch's standard error, for large samples) or
    ``"bootstrap"`` (percentile interval from ``rounds`` resamples drawn with
    ``seed``).
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError("confidence must lie strictly between 0 and 1")
    if method not in ("normal", "bootstrap"):
        raise ValueError("method must be 'normal' or 'bootstrap'")
    t = np.asarray(treated, dtype=np.float64)
    h = np.asarray(holdout, dtype=np.float64)
    nt, nh = len(t), len(h)
    mt = float(t.mean()) if nt else math.nan
    mh = float(h.mean()) if nh else math.nan
    diff = mt - mh
    if nt < 2 or nh < 2:
        low = high = math.nan
    elif method == "normal":
        se = math.sqrt(float(t.var(ddof=1)) / nt + float(h.var(ddof=1)) / nh)
        z = NormalDist().inv_cdf(0.5 + confidence / 2)
        low, high = diff - z * se, diff + z * se
    else:
        low, high = _bootstrap(t, h, confidence, rounds, seed)
    return Lift(metric, nt, nh, mt, mh, diff, low, high, confidence, method)


def _bootstrap(
    t: Values, h: Values, confidence: float, rounds: int, seed: int
) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    diffs = np.empty(rounds)
    chunk = max(1, 2_000_000 // max(len(t), len(h)))
    for start in range(0, rounds, chunk):
        size = min(chunk, rounds - start)
        mt = t[rng.integers(0, len(t), size=(size, len(t)))].mean(axis=1)
        mh = h[rng.integers(0, len(h), size=(size, len(h)))].mean(axis=1)
        diffs[start : start + size] = mt - mh
    tail = (1 - confidence) / 2
    low, high = np.quantile(diffs, [tail, 1 - tail])
    return float(low), float(high)
