"""A contextual bandit over action-dependent features, with exact logged propensities.

:class:`LinearBandit` scores every candidate action from the customer's
context *and* the action's own features (like Vowpal Wabbit's
``--cb_explore_adf``): the features of one candidate are the hashed products of
every context feature with every action feature, a bias on each side included,
so the model learns main effects and context × action interactions. A Bayesian
linear regression on those features (ridge prior ``l2``) gives each candidate
an expected reward and a variance; its score is the LinUCB upper bound
``mean + alpha * sd``. The choice explores around the scores with an
epsilon-greedy mix (``temperature = 0``) or a softmax (``temperature > 0``),
so the probability of every candidate is known exactly: the probability of the
chosen one is logged with the decision, and :func:`momently.measure.ope` can
later evaluate any other policy on those decisions. Every candidate keeps at
least ``epsilon / K``, so no action is ever out of reach of evaluation.

Two posteriors, by ``covariance``:

* ``"diagonal"`` (the default) — a factorised Gaussian posterior updated by
  assumed-density filtering (one Kalman step, then the off-diagonal
  covariance dropped, as in Graepel et al.'s AdPredictor); ``O(m)`` per
  update and ``O(K·m)`` per choice for ``m`` active features, so it takes
  large hashed spaces (default ``bits`` 18). About 0.5 ms per choose + learn
  over 80 candidates here, a fifth of Vowpal Wabbit's time from Python
  (``benchmarks/bench_bandit.py``).
* ``"full"`` — exact LinUCB: the inverse design matrix, updated by
  Sherman–Morrison; ``O(d²)`` per update and ``O(K·d²)`` per choice, so keep
  ``bits`` small (``d = 2**bits``, default 8, at most 12); about VW's time.

Why not river: ``river.bandit.LinUCBDisjoint`` keeps one regression per arm
id, so it cannot score an offer it has not seen or share what it learned
across offers with the same features, gives no probability for its choice
(it takes the argmax) and, by its own docstring, is too slow for real use.
``river.linear_model.BayesianLinearRegression`` is the ``"full"`` model over
named features, but its matrices grow with every new feature name (here every
context × offer pair: unbounded) and each candidate's variance costs
``O(F²)`` in the ``F`` names seen so far. So this is numpy, with hashing to
bound the size.

Randomness is a pure function of ``seed`` and a key: pass the decision id as
``key`` and replaying the decision picks the same action; without a key, a
counter kept in the state is used. The state (weights, covariance, counters)
round-trips through :meth:`LinearBandit.to_bytes` / :meth:`LinearBandit.from_bytes`
(msgpack) or pickle. Hyperparameters are set only in ``__init__``, so
:meth:`LinearBandit.clone` makes a fresh model, as in river.

>>> bandit = LinearBandit(epsilon=0.1, seed=7)
>>> offers = [{"offer=toaster": 1.0}, {"offer=kettle": 1.0}]
>>> for _ in range(50):
...     bandit.learn({"segment=family": 1.0}, offers[0], reward=1.0, propensity=0.5)
...     bandit.learn({"segment=family": 1.0}, offers[1], reward=0.0, propensity=0.5)
>>> choice = bandit.choose({"segment=family": 1.0}, offers, key="decision-1")
>>> choice.index, round(choice.probability, 2), choice.probabilities.round(2).tolist()
(0, 0.95, [0.95, 0.05])
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final, Literal, cast

import msgspec
import numpy as np
import numpy.typing as npt

__all__ = [
    "ActionSet",
    "Choice",
    "FeatureVector",
    "Features",
    "LinearBandit",
    "encode_actions",
    "hash_features",
]

Features = Mapping[str, float]
FloatArray = npt.NDArray[np.float64]
HashArray = npt.NDArray[np.uint64]
IntArray = npt.NDArray[np.int64]
Covariance = Literal["full", "diagonal"]

_BIAS: Final = "\x00bias"
_PAIR: Final = np.uint64(0x9E3779B97F4A7C15)
_MIX: Final = np.uint64(0xBF58476D1CE4E5B9)
_MAX_FULL_BITS: Final = 12  # a 4096 x 4096 float64 matrix is 128 MiB
_MAX_DIAGONAL_BITS: Final = 24  # two float64 vectors of 2**24: 256 MiB
_MAX_PRODUCT: Final = 1e12  # a feature product beyond this is a unit mistake, not a signal
_STATE_VERSION: Final = 1


@lru_cache(maxsize=1 << 16)
def _hash(name: str) -> int:
    # A keyed-free cryptographic hash: stable across processes (str.__hash__ is salted).
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "little")


@dataclass(frozen=True, eq=False, slots=True)
class FeatureVector:
    """Features with their names hashed once, the bias first; reuse it for static offers."""

    hashes: HashArray
    values: FloatArray


class StaticFeatures(Mapping[str, float]):
    """Read-only named features hashed once, for actions scored again and again (a
    playbook's offers): the bandit uses the hashed form, everything else the names."""

    __slots__ = ("_named", "vector")

    def __init__(self, features: Features) -> None:
        self._named = dict(features)
        self.vector = hash_features(self._named)

    def __getitem__(self, name: str) -> float:
        return self._named[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._named)

    def __len__(self) -> int:
        return len(self._named)

    def __repr__(self) -> str:
        return f"StaticFeatures({self._named!r})"


def hash_features(features: Features | FeatureVector) -> FeatureVector:
    """Hash named features (``{"segment=family": 1.0}``); zero values are dropped."""
    if isinstance(features, FeatureVector):
        return features
    if isinstance(features, StaticFeatures):
        return features.vector
    names = [_BIAS]
    values = [1.0]
    for name, value in features.items():
        v = float(value)
        if not math.isfinite(v):
            raise ValueError(f"feature {name!r} is not finite: {value!r}")
        if v != 0.0:
            names.append(name)
            values.append(v)
    hashes = np.fromiter((_hash(n) for n in names), dtype=np.uint64, count=len(names))
    return FeatureVector(hashes, np.asarray(values, dtype=np.float64))


@dataclass(frozen=True, eq=False, slots=True)
class ActionSet:
    """Candidate actions hashed and laid end to end, ready to score; build it once if static."""

    hashes: HashArray
    values: FloatArray
    rows: IntArray  # which action each feature belongs to
    size: int


def encode_actions(actions: Sequence[Features | FeatureVector] | ActionSet) -> ActionSet:
    """An :class:`ActionSet` for ``actions`` (at least one)."""
    if isinstance(actions, ActionSet):
        return actions
    if not actions:
        raise ValueError("no candidate actions")
    static = all(type(a) is StaticFeatures for a in actions)
    if static:
        # The same offers come up decision after decision: their set is laid out once.
        # The entry holds the features themselves, so no id in a key can be reused.
        key = tuple(map(id, actions))
        known = _ENCODED.get(key)
        if known is not None:
            return known[1]
    vectors = [hash_features(a) for a in actions]
    lengths = [len(v.hashes) for v in vectors]
    encoded = ActionSet(
        np.concatenate([v.hashes for v in vectors]),
        np.concatenate([v.values for v in vectors]),
        np.repeat(np.arange(len(vectors), dtype=np.int64), lengths),
        len(vectors),
    )
    if static:
        if len(_ENCODED) >= _ENCODED_KEPT:
            _ENCODED.clear()
        _ENCODED[key] = (tuple(actions), encoded)
    return encoded


_ENCODED: dict[tuple[int, ...], tuple[tuple[Features | FeatureVector, ...], ActionSet]] = {}
_ENCODED_KEPT: Final = 256  # sets of static actions remembered before starting afresh


@dataclass(frozen=True, eq=False)
class Choice:
    """The chosen action's index and the probability it had, beside every candidate's."""

    index: int
    probability: float
    probabilities: FloatArray
    scores: FloatArray  # the upper bounds the exploration is built on
    expected: FloatArray  # the posterior mean rewards


class _Posterior:
    """A Gaussian posterior over the hashed weights.

    ``mean_var`` takes the pairs of :meth:`LinearBandit._pairs`: ``idx`` and ``val``
    of shape ``(c, total)``, ``rows[j]`` the action of column ``j``.
    """

    def mean_var(
        self, rows: IntArray, idx: IntArray, val: FloatArray, k: int
    ) -> tuple[FloatArray, FloatArray]:
        raise NotImplementedError

    def mean(self, rows: IntArray, idx: IntArray, val: FloatArray, k: int) -> FloatArray:
        """The mean of :meth:`mean_var` alone (the same values, less work)."""
        return self.mean_var(rows, idx, val, k)[0]

    def update(self, idx: IntArray, val: FloatArray, reward: float, weight: float) -> None:
        raise NotImplementedError

    def arrays(self) -> dict[str, FloatArray]:
        raise NotImplementedError


class _Full(_Posterior):
    def __init__(self, dim: int, l2: float) -> None:
        self.dim = dim
        self.a_inv = np.eye(dim) / l2
        self.theta = np.zeros(dim)

    def mean_var(
        self, rows: IntArray, idx: IntArray, val: FloatArray, k: int
    ) -> tuple[FloatArray, FloatArray]:
        phi = self._phi(rows, idx, val, k)
        var = np.einsum("kd,kd->k", phi @ self.a_inv, phi)
        return phi @ self.theta, var

    def mean(self, rows: IntArray, idx: IntArray, val: FloatArray, k: int) -> FloatArray:
        return self._phi(rows, idx, val, k) @ self.theta

    def _phi(self, rows: IntArray, idx: IntArray, val: FloatArray, k: int) -> FloatArray:
        cells = (rows * self.dim + idx).ravel()
        return _sum_by(cells, val.ravel(), k * self.dim).reshape(k, self.dim)

    def update(self, idx: IntArray, val: FloatArray, reward: float, weight: float) -> None:
        phi = _sum_by(idx, val, self.dim)
        u = self.a_inv @ phi
        gain = weight / (1.0 + weight * float(phi @ u))
        self.theta += (gain * (reward - float(phi @ self.theta))) * u
        self.a_inv -= np.multiply.outer(gain * u, u)

    def arrays(self) -> dict[str, FloatArray]:
        return {"a_inv": self.a_inv, "theta": self.theta}


class _Diagonal(_Posterior):
    def __init__(self, dim: int, l2: float) -> None:
        self.mu = np.zeros(dim)
        self.var = np.full(dim, 1.0 / l2)

    def mean_var(
        self, rows: IntArray, idx: IntArray, val: FloatArray, k: int
    ) -> tuple[FloatArray, FloatArray]:
        mean = self.mean(rows, idx, val, k)
        return mean, _sum_by(rows, (self.var[idx] * val * val).sum(axis=0), k)

    def mean(self, rows: IntArray, idx: IntArray, val: FloatArray, k: int) -> FloatArray:
        return _sum_by(rows, (self.mu[idx] * val).sum(axis=0), k)

    def update(self, idx: IntArray, val: FloatArray, reward: float, weight: float) -> None:
        keys = np.sort(idx)
        if np.any(keys[1:] == keys[:-1]):  # features that collided add up
            keys, where = np.unique(idx, return_inverse=True)
            v = _sum_by(where, val, len(keys))
        else:
            keys, v = idx, val
        s = self.var[keys]
        predictive = 1.0 / weight + float((v * v) @ s)
        gain = s * v / predictive
        self.mu[keys] += gain * (reward - float(v @ self.mu[keys]))
        self.var[keys] = s - gain * v * s

    def arrays(self) -> dict[str, FloatArray]:
        return {"mu": self.mu, "var": self.var}


class _State(msgspec.Struct, frozen=True):
    version: int
    params: dict[str, Any]
    n_updates: int
    n_draws: int
    arrays: dict[str, bytes]


class LinearBandit:
    """LinUCB over hashed context × action features, exploring with exact probabilities.

    Parameters
    ----------
    alpha
        Width of the upper confidence bound in posterior standard deviations (0: greedy).
    l2
        Ridge prior precision on every weight.
    epsilon
        Share of every choice spread uniformly over the candidates.
    temperature
        0: the rest goes to the best score (ties share it); > 0: a softmax of the
        scores at this temperature.
    covariance
        ``"diagonal"`` (factorised, fast, for large spaces) or ``"full"`` (exact LinUCB).
    bits
        ``2**bits`` hashed weights; default 8 for ``"full"``, 18 for ``"diagonal"``.
    importance_weighting
        Weight each update by ``1 / propensity`` (capped at ``max_weight``). Off by
        default: regression on the chosen action is consistent without it when
        the model fits, and the weights add variance; turn it on when logging
        favoured some actions and the model is misspecified.
    max_weight
        Cap on the importance weight.
    seed
        Seed of every random choice.
    """

    def __init__(
        self,
        *,
        alpha: float = 1.0,
        l2: float = 1.0,
        epsilon: float = 0.05,
        temperature: float = 0.0,
        covariance: Covariance = "diagonal",
        bits: int | None = None,
        importance_weighting: bool = False,
        max_weight: float = 100.0,
        seed: int = 0,
    ) -> None:
        if covariance not in ("full", "diagonal"):
            raise ValueError(f"covariance must be 'full' or 'diagonal', not {covariance!r}")
        if bits is None:
            bits = 8 if covariance == "full" else 18
        top = _MAX_FULL_BITS if covariance == "full" else _MAX_DIAGONAL_BITS
        if not 1 <= bits <= top:
            raise ValueError(f"bits must be in [1, {top}] for covariance={covariance!r}")
        if not alpha >= 0.0:
            raise ValueError("alpha must be >= 0")
        if not l2 > 0.0:
            raise ValueError("l2 must be > 0")
        if not 0.0 <= epsilon <= 1.0:
            raise ValueError("epsilon must be in [0, 1]")
        if not temperature >= 0.0:
            raise ValueError("temperature must be >= 0")
        if not max_weight >= 1.0:
            raise ValueError("max_weight must be >= 1")
        self.alpha = alpha
        self.l2 = l2
        self.epsilon = epsilon
        self.temperature = temperature
        self.covariance: Covariance = covariance
        self.bits = bits
        self.importance_weighting = importance_weighting
        self.max_weight = max_weight
        self.seed = seed
        self._shift = np.uint64(64 - bits)
        dim = 1 << bits
        self._posterior: _Posterior = _Full(dim, l2) if covariance == "full" else _Diagonal(dim, l2)
        self.n_updates = 0
        self._n_draws = 0

    def _params(self) -> dict[str, Any]:
        return {
            "alpha": self.alpha,
            "l2": self.l2,
            "epsilon": self.epsilon,
            "temperature": self.temperature,
            "covariance": self.covariance,
            "bits": self.bits,
            "importance_weighting": self.importance_weighting,
            "max_weight": self.max_weight,
            "seed": self.seed,
        }

    def clone(self) -> LinearBandit:
        """A fresh, untrained bandit with the same hyperparameters."""
        return LinearBandit(**self._params())

    # --- scoring -------------------------------------------------------------------------

    def _pairs(self, context: FeatureVector, actions: ActionSet) -> tuple[IntArray, FloatArray]:
        """Hashed indices and values of every context × action feature, shape ``(c, total)``."""
        # Multiply-shift hashing: the top bits of the product are the well-mixed ones.
        h = ((context.hashes * _PAIR)[:, None] ^ actions.hashes[None, :]) * _MIX
        idx = (h >> self._shift).astype(np.int64)
        with np.errstate(over="ignore"):  # checked by the callers, which say what overflowed
            val = context.values[:, None] * actions.values[None, :]
        return idx, val

    def _mean_var(
        self,
        context: Features | FeatureVector,
        actions: Sequence[Features | FeatureVector] | ActionSet,
    ) -> tuple[FloatArray, FloatArray]:
        ctx = hash_features(context)
        acts = encode_actions(actions)
        idx, val = self._pairs(ctx, acts)
        with np.errstate(over="ignore", invalid="ignore"):
            mean, var = self._posterior.mean_var(acts.rows, idx, val, acts.size)
        return mean, np.maximum(var, 0.0)  # round-off can dip a hair below 0

    def predict(
        self,
        context: Features | FeatureVector,
        actions: Sequence[Features | FeatureVector] | ActionSet,
    ) -> FloatArray:
        """The expected reward of each candidate (posterior mean, no exploration)."""
        ctx = hash_features(context)
        acts = encode_actions(actions)
        # The pairs of _pairs, under one errstate: a product of finite values cannot be
        # invalid, so ignoring that too changes nothing but the cost of a second context.
        h = ((ctx.hashes * _PAIR)[:, None] ^ acts.hashes[None, :]) * _MIX
        idx = (h >> self._shift).astype(np.int64)
        with np.errstate(over="ignore", invalid="ignore"):
            val = ctx.values[:, None] * acts.values[None, :]
            return self._posterior.mean(acts.rows, idx, val, acts.size)

    def _explore(self, mean: FloatArray, var: FloatArray) -> tuple[FloatArray, FloatArray]:
        scores = mean + self.alpha * np.sqrt(var)
        if not np.all(np.isfinite(scores)):
            raise ValueError("scores overflowed: feature values are too large")
        k = len(scores)
        if self.temperature > 0.0:
            greedy = np.exp((scores - scores.max()) / self.temperature)
        else:
            greedy = (scores == scores.max()).astype(np.float64)
        probs = (1.0 - self.epsilon) * greedy / greedy.sum() + self.epsilon / k
        return scores, probs / probs.sum()

    def probabilities(
        self,
        context: Features | FeatureVector,
        actions: Sequence[Features | FeatureVector] | ActionSet,
    ) -> FloatArray:
        """The probability of each candidate being chosen now (sums to 1; no draw)."""
        return self._explore(*self._mean_var(context, actions))[1]

    def choose(
        self,
        context: Features | FeatureVector,
        actions: Sequence[Features | FeatureVector] | ActionSet,
        key: str | int | None = None,
    ) -> Choice:
        """Pick one candidate; the same ``key`` (say, the decision id) picks the same one."""
        mean, var = self._mean_var(context, actions)
        scores, probs = self._explore(mean, var)
        if key is None:
            key = f"\x00draw{self._n_draws}"
            self._n_draws += 1
        u = _uniform(self.seed, key)
        cum = np.cumsum(probs)
        index = min(int(np.searchsorted(cum, u * cum[-1], side="right")), len(probs) - 1)
        return Choice(index, float(probs[index]), probs, scores, mean)

    # --- learning ------------------------------------------------------------------------

    def learn(
        self,
        context: Features | FeatureVector,
        action: Features | FeatureVector,
        reward: float,
        propensity: float,
    ) -> None:
        """Learn the ``reward`` of ``action``, chosen with probability ``propensity``."""
        r = float(reward)
        p = float(propensity)
        if not math.isfinite(r):
            raise ValueError(f"reward must be finite, not {reward!r}")
        if not 0.0 < p <= 1.0:
            raise ValueError(f"propensity must be in (0, 1], not {propensity!r}")
        weight = min(1.0 / p, self.max_weight) if self.importance_weighting else 1.0
        idx, val = self._pairs(hash_features(context), encode_actions([action]))
        if not np.all(np.isfinite(val)) or float(np.abs(val).max()) > _MAX_PRODUCT:
            raise ValueError("feature values are too large to learn from")  # state untouched
        self._posterior.update(idx.ravel(), val.ravel(), r, weight)
        self.n_updates += 1

    # --- state ---------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """The whole bandit, hyperparameters and learned state, as msgpack."""
        arrays = {
            name: np.ascontiguousarray(a, dtype="<f8").tobytes()
            for name, a in self._posterior.arrays().items()
        }
        state = _State(_STATE_VERSION, self._params(), self.n_updates, self._n_draws, arrays)
        return msgspec.msgpack.encode(state)

    @classmethod
    def from_bytes(cls, data: bytes) -> LinearBandit:
        """The bandit :meth:`to_bytes` wrote."""
        state = msgspec.msgpack.decode(data, type=_State)
        if state.version != _STATE_VERSION:
            raise ValueError(f"unknown bandit state version {state.version}")
        bandit = cls(**state.params)
        for name, target in bandit._posterior.arrays().items():
            raw = state.arrays.get(name)
            if raw is None or len(raw) != target.nbytes:
                raise ValueError(f"bandit state array {name!r} is missing or has the wrong size")
            target[...] = np.frombuffer(raw, dtype="<f8").reshape(target.shape)
        bandit.n_updates = state.n_updates
        bandit._n_draws = state.n_draws
        return bandit


def _sum_by(bins: IntArray, weights: FloatArray, length: int) -> FloatArray:
    """``out[i] = sum(weights[bins == i])`` (numpy's stubs type a weighted bincount as int)."""
    return cast(FloatArray, np.bincount(bins, weights, length))


def _uniform(seed: int, key: str | int) -> float:
    """A uniform number in [0, 1) fixed by ``seed`` and ``key``."""
    digest = hashlib.blake2b(f"{seed}\x1f{key}".encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "little") >> 11) * 2.0**-53
