"""Live prequential metrics: every prediction is scored before its label is learned.

Classifiers are scored with the probability they gave *when the snapshot was
taken* (it is stored with the snapshot), so a metric never sees a model that
already learned from the future. Predictions made during a model's burn-in
(its first ``prior_labels`` labels, when it answers with the prior) are not
scored: they would measure the prior, and how the stream starts. Each metric
comes with a naive baseline measured on the same labels: the base rate seen
so far for classifiers, the most popular tokens for next need.

>>> tracker = BinaryTracker()
>>> for y, p in [(True, 0.9), (False, 0.2), (True, 0.7), (False, 0.4)]:
...     tracker.update(y, p)
>>> report = tracker.report()
>>> report["rocAuc"], report["labels"]
(1.0, 4.0)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

_BINS = 10  # calibration bins
_PER_UNIT = 100  # ROC AUC: predictions are ranked to 0.01 in log-odds ...
_SPAN = 20  # ... over [-20, 20] (p from 2e-9 to 1 - 2e-9; beyond, the end bins)
_RANKS = 2 * _SPAN * _PER_UNIT + 1
_EPS = 1e-15  # log loss: p clamped to [eps, 1 - eps], as river's LogLoss does


class BinaryTracker:
    """ROC AUC, log loss and calibration of a binary classifier, beside the base rate.

    Every update is O(1) — a label costs a few additions, not a pass over
    thresholds: the predictions are counted by label in 4,001 bins 0.01 wide
    in log-odds, and ROC AUC is worked out from them when it is read. It is
    the exact Mann–Whitney AUC of the predictions so binned (ties count a
    half): two predictions tie only when their odds are within 1% of each
    other, however rare the event — bins of equal width in p would have put
    all of fatigue's 0.001–0.01 into a handful of ties (scores drawn from
    Beta(1, 1000): 0.718 in 1/1000 bins against the raw predictions' 0.753;
    in log-odds bins 0.753). River's ``ROCAUC`` interpolates between 10
    thresholds and read 0.003 to 0.008 lower on the same labels (and costs
    10 confusion-matrix updates a label). Log loss is river's ``LogLoss``
    (the same clamp), kept as a sum.
    """

    def __init__(self) -> None:
        self.n = 0
        self.positives = 0
        self.sum_p = 0.0
        self.loss = 0.0  # sum of log losses
        self.baseline_loss = 0.0  # ... of the base rate known before each label
        self.ranked = [0] * (2 * _RANKS)  # per bin: negatives, then positives
        self.bins = [[0, 0.0, 0] for _ in range(_BINS)]  # labels, sum of p, positives

    def __setstate__(self, state: dict[str, Any]) -> None:
        if len(state.get("ranked", ())) != 2 * _RANKS:  # an older tracker's: start afresh
            state = BinaryTracker().__dict__
        self.__dict__.update(state)

    def update(self, y: bool, p: float) -> None:
        p = 1.0 if p > 1.0 else p if p > 0.0 else 0.0
        n, positives = self.n, self.positives
        prior = (positives + 1) / (n + 2)  # what was known before this label
        q = 1.0 - _EPS if p > 1.0 - _EPS else p if p > _EPS else _EPS
        at = (math.log(q / (1.0 - q)) + _SPAN) * _PER_UNIT
        rank = 2 * (int(at) if 0.0 < at < _RANKS else 0 if at <= 0.0 else _RANKS - 1)
        if y:
            self.loss -= math.log(q)
            self.baseline_loss -= math.log(prior)
            self.ranked[rank + 1] += 1
            self.positives = positives + 1
        else:
            self.loss -= math.log(1.0 - q)
            self.baseline_loss -= math.log(1.0 - prior)
            self.ranked[rank] += 1
        self.n = n + 1
        self.sum_p += p
        row = self.bins[int(p * _BINS) if p < 1.0 else _BINS - 1]
        row[0] += 1
        row[1] += p
        if y:
            row[2] += 1

    def roc_auc(self) -> float:
        """P(a positive is ranked above a negative), ties a half; 0.5 without both labels."""
        negatives = self.n - self.positives
        if not self.positives or not negatives:
            return 0.5
        ranked = self.ranked
        below = 0  # negatives in the lower bins
        wins = 0.0
        for i in range(0, len(ranked), 2):
            neg, pos = ranked[i], ranked[i + 1]
            if pos:
                wins += pos * (below + 0.5 * neg)
            below += neg
        return wins / (self.positives * negatives)

    def calibration_error(self) -> float:
        """Expected calibration error over ten equal-width bins of p."""
        if not self.n:
            return 0.0
        return sum(abs(row[1] - row[2]) for row in self.bins) / self.n

    def report(self) -> dict[str, float]:
        if not self.n:
            return {"labels": 0.0}
        return {
            "labels": float(self.n),
            "rocAuc": self.roc_auc(),
            "logLoss": self.loss / self.n,
            "calibrationError": self.calibration_error(),
            "meanPredicted": self.sum_p / self.n,
            "observedRate": self.positives / self.n,
        }

    def baseline(self) -> dict[str, float]:
        if not self.n:
            return {}
        return {"rocAuc": 0.5, "logLoss": self.baseline_loss / self.n}


class HitTracker:
    """Hit rate at k of a next-token model, beside the k most popular tokens.

    Scoring a transition costs as much as a prediction, and there is one per
    event: one transition in ``every`` is scored, chosen by a counter — blind to
    the outcome, so the rate is unbiased — which keeps its cost off most events.
    """

    def __init__(self, k: int, every: int = 1) -> None:
        self.k = k
        self.every = every
        self.seen = 0
        self.n = 0
        self.hits = 0
        self.baseline_hits = 0

    def due(self) -> bool:
        """Count one transition; whether it is one to score."""
        self.seen += 1
        return self.seen % self.every == 0

    def update(self, hit: bool, baseline_hit: bool) -> None:
        self.n += 1
        self.hits += int(hit)
        self.baseline_hits += int(baseline_hit)

    def report(self) -> dict[str, float]:
        if not self.n:
            return {"labels": 0.0}
        return {"labels": float(self.n), f"hitAt{self.k}": self.hits / self.n}

    def baseline(self) -> dict[str, float]:
        if not self.n:
            return {}
        return {f"hitAt{self.k}": self.baseline_hits / self.n}


@dataclass(frozen=True, slots=True)
class ModelReport:
    """What ``GET /api/models`` shows for one model."""

    name: str
    version: str
    kind: str  # the estimator, e.g. "StandardScaler | LogisticRegression"
    updates: int  # learn_one calls so far
    metrics: dict[str, float] = field(default_factory=dict)
    baseline: dict[str, float] = field(default_factory=dict)
