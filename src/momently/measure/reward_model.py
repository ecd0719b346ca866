"""A reward model for the direct-method and doubly robust estimators.

:class:`LogisticRewardModel` is an L2-regularised logistic regression on
context features plus action features, ``q̂(x, a) = σ(b + x·u + z_a·v)``, fitted
by Newton's method (a few exact steps on a small dense problem, no learning
rate to tune). Because the model is additive in context and action, predicting
every action for every round costs one outer sum, not ``n_rounds × n_actions``
feature rows. Rewards may be fractional in ``[0, 1]`` (a click is 0 or 1).

:func:`cross_fit` predicts each round from a model that did not see it
(k-fold cross-fitting), which keeps DR's model error independent of the
round it corrects.

>>> import numpy as np
>>> context = np.zeros((4, 1)); actions = np.eye(2)
>>> model = LogisticRewardModel(l2=1e-3).fit(context, [0, 1, 0, 1], actions, [1, 0, 1, 0])
>>> bool(model.predict(context)[0, 0] > 0.9 > 0.1 > model.predict(context)[0, 1])
True
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

from momently.measure.ope import FloatArray, InvalidLogs

__all__ = ["LogisticRewardModel", "cross_fit"]

_CLIP: Final = 30.0  # logits beyond ±30 are 0 or 1 to double precision


class LogisticRewardModel:
    """``P(reward | context, action)`` by L2-regularised logistic regression.

    Parameters
    ----------
    l2
        Penalty on the squared weights (not the intercept); ``1 / C`` in scikit-learn.
    max_iter
        Newton steps at most.
    tol
        Stop when no weight moves by more than this.
    """

    def __init__(self, l2: float = 1.0, max_iter: int = 50, tol: float = 1e-8) -> None:
        if not l2 > 0.0:
            raise ValueError("l2 must be > 0")
        if max_iter < 1:
            raise ValueError("max_iter must be at least 1")
        self.l2 = l2
        self.max_iter = max_iter
        self.tol = tol
        self._weights: FloatArray | None = None
        self._action_features: FloatArray | None = None

    def clone(self) -> LogisticRewardModel:
        """A fresh, unfitted model with the same hyperparameters."""
        return LogisticRewardModel(self.l2, self.max_iter, self.tol)

    def fit(
        self,
        context: npt.ArrayLike,
        action: npt.ArrayLike,
        action_features: npt.ArrayLike,
        reward: npt.ArrayLike,
    ) -> LogisticRewardModel:
        """Fit on logged rounds: context ``(n, p)``, action indices, action features ``(K, q)``."""
        x = _matrix(context, "context")
        z = _matrix(action_features, "action_features")
        act = np.asarray(action)
        y = np.asarray(reward, dtype=np.float64)
        if act.shape != (len(x),) or y.shape != (len(x),):
            raise InvalidLogs("context, action and reward must have the same number of rounds")
        if len(x) == 0:
            raise InvalidLogs("no rounds to fit")
        if not np.issubdtype(act.dtype, np.integer) or act.min() < 0 or act.max() >= len(z):
            raise InvalidLogs(f"action must hold indices into the {len(z)} action_features rows")
        if not np.all((y >= 0.0) & (y <= 1.0)):
            raise InvalidLogs("rewards must be in [0, 1] for a logistic reward model")
        design = np.hstack([np.ones((len(x), 1)), x, z[act]])
        penalty = np.full(design.shape[1], self.l2)
        penalty[0] = 0.0  # the intercept is free
        w = np.zeros(design.shape[1])
        for _ in range(self.max_iter):
            mu = _sigmoid(design @ w)
            grad = design.T @ (mu - y) + penalty * w
            hess = (design.T * (mu * (1.0 - mu))) @ design
            hess[np.diag_indices_from(hess)] += penalty + 1e-12
            step = np.linalg.solve(hess, grad)
            w -= step
            if float(np.max(np.abs(step))) <= self.tol:
                break
        self._weights = w
        self._action_features = z
        return self

    def predict(self, context: npt.ArrayLike) -> FloatArray:
        """``q̂`` for every round and every action: shape ``(n, K)``."""
        if self._weights is None or self._action_features is None:
            raise RuntimeError("fit the model first")
        x = _matrix(context, "context")
        z = self._action_features
        p = x.shape[1]
        if p + z.shape[1] + 1 != len(self._weights):
            raise InvalidLogs("context has a different number of features than at fit")
        w = self._weights
        logits = w[0] + (x @ w[1 : 1 + p])[:, None] + (z @ w[1 + p :])[None, :]
        return _sigmoid(logits)


def cross_fit(
    model: LogisticRewardModel,
    context: npt.ArrayLike,
    action: npt.ArrayLike,
    action_features: npt.ArrayLike,
    reward: npt.ArrayLike,
    *,
    n_folds: int = 3,
    seed: int = 0,
) -> FloatArray:
    """``q̂`` of shape ``(n, K)``, each round predicted by a clone fitted on the other folds."""
    x = _matrix(context, "context")
    act = np.asarray(action)
    y = np.asarray(reward, dtype=np.float64)
    if n_folds < 2 or n_folds > len(x):
        raise InvalidLogs(f"n_folds must be in [2, n_rounds], not {n_folds}")
    folds = np.random.default_rng(seed).permutation(len(x)) % n_folds
    out = np.empty((len(x), len(_matrix(action_features, "action_features"))))
    for k in range(n_folds):
        held = folds == k
        fitted = model.clone().fit(x[~held], act[~held], action_features, y[~held])
        out[held] = fitted.predict(x[held])
    return out


def _matrix(values: npt.ArrayLike, name: str) -> FloatArray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 2:
        raise InvalidLogs(f"{name} must be two-dimensional, not of shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise InvalidLogs(f"{name} must be finite")
    return arr


def _sigmoid(logits: FloatArray) -> FloatArray:
    out: FloatArray = 1.0 / (1.0 + np.exp(-np.clip(logits, -_CLIP, _CLIP)))
    return out
