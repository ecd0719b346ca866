"""The live metrics' tracker: exact AUC and river's log loss, at O(1) per label."""

from __future__ import annotations

import math
import pickle
import random

import pytest

from momently.predict.evaluation import BinaryTracker
from momently.predict.predictions import Predictions


def _pairwise_auc(ps: list[float], ys: list[bool]) -> float:
    pos = [p for p, y in zip(ps, ys, strict=True) if y]
    neg = [p for p, y in zip(ps, ys, strict=True) if not y]
    wins = sum((a > b) + 0.5 * (a == b) for a in pos for b in neg)
    return wins / (len(pos) * len(neg))


def test_auc_and_log_loss_match_their_definitions() -> None:
    rng = random.Random(3)
    tracker = BinaryTracker()
    ps: list[float] = []
    ys: list[bool] = []
    for _ in range(600):
        y = rng.random() < 0.3
        p = min(1.0, max(0.0, rng.gauss(0.5 if y else 0.35, 0.2)))
        tracker.update(y, p)
        ps.append(p)
        ys.append(y)
    report = tracker.report()
    assert report["rocAuc"] == pytest.approx(_pairwise_auc(ps, ys), abs=2e-3)
    eps = 1e-15
    loss = -sum(
        math.log(min(1 - eps, max(eps, p)) if y else 1 - min(1 - eps, max(eps, p)))
        for p, y in zip(ps, ys, strict=True)
    ) / len(ps)
    assert report["logLoss"] == pytest.approx(loss, rel=1e-9)
    assert report["observedRate"] == pytest.approx(sum(ys) / len(ys))


def test_auc_of_a_rare_event_keeps_its_small_probabilities_apart() -> None:
    # Fatigue's predictions live in 0.001-0.01: bins of width 1/1000 in p made them
    # ties (0.718 against 0.753 on such scores); bins in log-odds keep them apart.
    rng = random.Random(1)
    tracker = BinaryTracker()
    ps: list[float] = []
    ys: list[bool] = []
    for _ in range(3_000):
        p = rng.betavariate(1, 1000)
        y = rng.random() < 40 * p
        tracker.update(y, p)
        ps.append(p)
        ys.append(y)
    assert tracker.roc_auc() == pytest.approx(_pairwise_auc(ps, ys), abs=1e-3)


def test_ties_count_a_half_and_one_class_is_uninformative() -> None:
    tracker = BinaryTracker()
    tracker.update(True, 0.4)
    assert tracker.report()["rocAuc"] == 0.5  # no negative yet
    tracker.update(False, 0.4)
    assert tracker.report()["rocAuc"] == 0.5
    tracker.update(False, 0.1)
    assert tracker.report()["rocAuc"] == pytest.approx(0.75)


def test_tracker_pickles_and_an_old_snapshot_starts_afresh() -> None:
    tracker = BinaryTracker()
    for y, p in [(True, 0.9), (False, 0.2), (True, 0.7)]:
        tracker.update(y, p)
    again = pickle.loads(pickle.dumps(tracker))
    assert again.report() == tracker.report()
    old = BinaryTracker.__new__(BinaryTracker)
    old.__setstate__({"n": 3, "positives": 2, "sum_p": 1.8})  # the river-metric layout
    assert old.report() == {"labels": 0.0}


class _Counting:
    def __init__(self) -> None:
        self.calls = 0

    def propensity(self, now_ms: int) -> float:
        self.calls += 1
        return 0.25


def test_an_answer_is_worked_out_once() -> None:
    answers = _Counting()
    found = Predictions(0, answers)  # type: ignore[arg-type]
    assert found.propensity == found.propensity == 0.25
    assert answers.calls == 1
