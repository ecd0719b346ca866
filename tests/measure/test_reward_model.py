"""The logistic reward model recovers known click probabilities; cross-fitting holds rounds out."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from momently.measure.ope import InvalidLogs
from momently.measure.reward_model import LogisticRewardModel, cross_fit

Arrays = tuple[
    npt.NDArray[np.float64], npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.float64]
]
CONTEXT_W = np.array([1.0, -0.5])
ACTION_W = np.array([0.0, 1.0, -1.0, 0.5])


def synthetic(n: int, seed: int) -> Arrays:
    """Two binary context features, four actions with one-hot features, known logits."""
    rng = np.random.default_rng(seed)
    context = rng.integers(0, 2, (n, 2)).astype(np.float64)
    actions = np.eye(4)
    action = rng.integers(0, 4, n)
    p_click = 1.0 / (1.0 + np.exp(-(-2.0 + context @ CONTEXT_W + ACTION_W[action])))
    reward = (rng.random(n) < p_click).astype(np.float64)
    return context, action, actions, reward


def test_recovers_known_probabilities() -> None:
    context, action, actions, reward = synthetic(20_000, 0)
    model = LogisticRewardModel(l2=1e-3).fit(context, action, actions, reward)
    grid = np.array([[0.0, 0.0], [1.0, 1.0]])
    want = 1.0 / (1.0 + np.exp(-(-2.0 + (grid @ CONTEXT_W)[:, None] + ACTION_W[None, :])))
    assert model.predict(grid) == pytest.approx(want, abs=0.03)


def test_cross_fit_predicts_every_round_from_other_folds() -> None:
    context, action, actions, reward = synthetic(3000, 1)
    q_hat = cross_fit(LogisticRewardModel(), context, action, actions, reward, n_folds=3, seed=0)
    assert q_hat.shape == (3000, 4)
    assert np.all((q_hat > 0.0) & (q_hat < 1.0))
    again = cross_fit(LogisticRewardModel(), context, action, actions, reward, n_folds=3, seed=0)
    assert np.array_equal(q_hat, again)


def test_refuses_bad_input() -> None:
    context, action, actions, reward = synthetic(50, 2)
    model = LogisticRewardModel()
    with pytest.raises(InvalidLogs, match=r"\[0, 1\]"):
        model.fit(context, action, actions, reward * 2.0 + 0.5)
    with pytest.raises(InvalidLogs, match="indices"):
        model.fit(context, action + 4, actions, reward)
    with pytest.raises(InvalidLogs, match="same number"):
        model.fit(context, action[:-1], actions, reward)
    with pytest.raises(RuntimeError, match="fit"):
        LogisticRewardModel().predict(context)
    with pytest.raises(InvalidLogs, match="n_folds"):
        cross_fit(model, context, action, actions, reward, n_folds=1)
    with pytest.raises(ValueError, match="l2"):
        LogisticRewardModel(l2=0.0)
