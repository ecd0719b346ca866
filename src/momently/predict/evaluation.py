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

from dataclasses import dataclass, field
from typing import Any

from river import metrics as river_metrics

# river's metrics are unannotated: reached through Any so strict mypy accepts the calls.
metrics: Any = river_metrics

_BINS = 10


class BinaryTracker:
    """ROC AUC, log loss and calibration of a binary classifier, beside the base rate."""

    def __init__(self) -> None:
        self.auc = metrics.ROCAUC()
        self.log_loss = metrics.LogLoss()
        self.baseline_log_loss = metrics.LogLoss()
        self.n = 0
        self.positives = 0
        self.sum_p = 0.0
        self.bins = [[0, 0.0, 0] for _ in range(_BINS)]  # labels, sum of p, positives

    def update(self, y: bool, p: float) -> None:
        p = min(1.0, max(0.0, p))
        prior = (self.positives + 1) / (self.n + 2)  # what was known before this label
        self.baseline_log_loss.update(y, prior)
        self.auc.update(y, p)
        self.log_loss.update(y, p)
        self.n += 1
        self.positives += int(y)
        self.sum_p += p
        row = self.bins[min(_BINS - 1, int(p * _BINS))]
        row[0] += 1
        row[1] += p
        row[2] += int(y)

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
            "rocAuc": float(self.auc.get()),
            "logLoss": float(self.log_loss.get()),
            "calibrationError": self.calibration_error(),
            "meanPredicted": self.sum_p / self.n,
            "observedRate": self.positives / self.n,
        }

    def baseline(self) -> dict[str, float]:
        if not self.n:
            return {}
        return {"rocAuc": 0.5, "logLoss": float(self.baseline_log_loss.get())}


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
