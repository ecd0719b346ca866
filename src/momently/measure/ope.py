"""Off-policy evaluation: what another policy would have earned on decisions already logged.

Every decision momently logs carries the action taken, the reward it earned and
the probability with which the logging policy picked it (its *propensity*).
Given, for each logged round, the distribution over actions that a candidate
policy would have used (``action_dist``, shape ``(n_rounds, n_actions)``), the
estimators here say what that policy would have earned per round:

* :func:`dm` — the direct method: trust a reward model ``q̂(x, a)``;
* :func:`ips` — inverse propensity scoring: reweight logged rewards by
  ``w = π(a|x) / propensity``; unbiased, high variance;
* :func:`snips` — self-normalised IPS: divide by the sum of weights instead of
  ``n``; slightly biased, far lower variance, always within the reward range;
* :func:`dr` — doubly robust: DM plus an IPS correction of the model's error;
  unbiased when either the propensities or the model are right;
* :func:`sndr` — DR with a self-normalised correction;
* :func:`switch_dr` — DR that drops the correction where ``w > tau``.

Each is a ratio of per-round sums, so :func:`evaluate` gets a seeded
percentile-bootstrap confidence interval for all of them from one set of
resampled rounds. The functions are pure; inputs are validated and bad ones
raise :class:`InvalidLogs` (a :class:`ValueError`) with the reason.

>>> logs = Logs(action=[0, 1, 0, 1], reward=[1.0, 0.0, 1.0, 0.0], pscore=[0.5] * 4)
>>> always_0 = [[1.0, 0.0]] * 4
>>> ips(logs, always_0), snips(logs, always_0)
(1.0, 1.0)
>>> est = evaluate(logs, always_0, estimators=("ips",), n_boot=200, seed=0)["ips"]
>>> est.value, est.low <= est.value <= est.high
(1.0, True)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

__all__ = [
    "ESTIMATORS",
    "Estimate",
    "InvalidLogs",
    "Logs",
    "dm",
    "dr",
    "evaluate",
    "ips",
    "on_policy",
    "one_hot",
    "sndr",
    "snips",
    "switch_dr",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

ESTIMATORS: Final = ("dm", "ips", "snips", "dr", "sndr", "switch_dr")
"""Every estimator :func:`evaluate` knows; ``dm``, ``dr``, ``sndr`` and ``switch_dr``
need a reward model's ``estimated_rewards``."""
_NEEDS_MODEL: Final = frozenset({"dm", "dr", "sndr", "switch_dr"})
_ROW_SUM_TOLERANCE: Final = 1e-6
_BOOT_CELLS: Final = 4_000_000  # resampled indices held at once: bounds the memory


class InvalidLogs(ValueError):
    """Logged decisions or a policy's distribution that cannot be evaluated, and why."""


@dataclass(frozen=True, init=False, eq=False)
class Logs:
    """Logged decisions, one per round: the action index taken, its reward, its propensity.

    Validated at construction: equal lengths, at least one round, integer actions
    ``>= 0``, finite rewards, propensities in ``(0, 1]``.
    """

    action: IntArray
    reward: FloatArray
    pscore: FloatArray

    def __init__(self, action: npt.ArrayLike, reward: npt.ArrayLike, pscore: npt.ArrayLike) -> None:
        act = _vector(action, "action")
        rew = _vector(reward, "reward")
        ps = _vector(pscore, "pscore")
        if not (len(act) == len(rew) == len(ps)):
            raise InvalidLogs(
                f"action, reward and pscore differ in length ({len(act)}, {len(rew)}, {len(ps)})"
            )
        if len(act) == 0:
            raise InvalidLogs("no logged rounds")
        if not np.issubdtype(act.dtype, np.integer):
            if not np.all(np.isfinite(act)) or np.any(act != np.round(act)):
                raise InvalidLogs("action must hold integer action indices")
        if np.any(act < 0):
            raise InvalidLogs("action indices must be >= 0")
        rew = rew.astype(np.float64)
        ps = ps.astype(np.float64)
        if not np.all(np.isfinite(rew)):
            raise InvalidLogs("reward must be finite")
        bad = ~((ps > 0.0) & (ps <= 1.0))  # also catches NaN
        if np.any(bad):
            first = int(np.argmax(bad))
            raise InvalidLogs(
                f"propensities must be in (0, 1]; round {first} has {float(ps[first])!r}"
            )
        for name, value in (("action", act.astype(np.int64)), ("reward", rew), ("pscore", ps)):
            value.setflags(write=False)
            object.__setattr__(self, name, value)

    @property
    def n_rounds(self) -> int:
        return len(self.action)

    def take(self, index: npt.ArrayLike) -> Logs:
        """The rounds at ``index`` (a slice of the log, or a bootstrap resample)."""
        idx = np.asarray(index)
        return Logs(self.action[idx], self.reward[idx], self.pscore[idx])


@dataclass(frozen=True)
class Estimate:
    """A policy value with its bootstrap confidence interval ``[low, high]``."""

    value: float
    low: float
    high: float
    confidence: float
    n_rounds: int
    n_boot: int


def one_hot(actions: npt.ArrayLike, n_actions: int) -> FloatArray:
    """The action distribution of a deterministic policy that took ``actions``.

    >>> one_hot([2, 0], 3).tolist()
    [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]
    """
    act = _vector(actions, "actions").astype(np.int64)
    if n_actions < 1 or np.any(act < 0) or np.any(act >= n_actions):
        raise InvalidLogs(f"actions must be in [0, {n_actions})")
    dist = np.zeros((len(act), n_actions))
    dist[np.arange(len(act)), act] = 1.0
    return dist


# --- the estimators --------------------------------------------------------------------
#
# Each estimator is  sum(num) / sum(den) + mean(base)  over per-round terms, so one
# resample of round indices serves every estimator in the bootstrap.


@dataclass(frozen=True)
class _Terms:
    num: FloatArray
    den: FloatArray | None  # None: divide by the number of rounds
    base: FloatArray | None  # None: no direct-method term

    def value(self, idx: IntArray | None = None) -> FloatArray | float:
        """The estimate on all rounds (``idx`` None) or per row of resampled indices."""
        if idx is None:
            num = float(self.num.sum())
            den = float(self.den.sum()) if self.den is not None else float(len(self.num))
            base = float(self.base.mean()) if self.base is not None else 0.0
            return (num / den if den > 0.0 else float("nan")) + base
        n = idx.shape[1]
        nums = self.num[idx].sum(axis=1)
        dens = self.den[idx].sum(axis=1) if self.den is not None else np.full(len(idx), float(n))
        out = np.full(len(idx), np.nan)
        np.divide(nums, dens, out=out, where=dens > 0.0)
        if self.base is not None:
            out += self.base[idx].mean(axis=1)
        return out


def _terms(
    name: str,
    logs: Logs,
    dist: FloatArray,
    q_hat: FloatArray | None,
    tau: float,
) -> _Terms:
    rounds = np.arange(logs.n_rounds)
    w = dist[rounds, logs.action] / logs.pscore
    if name == "ips":
        return _Terms(w * logs.reward, None, None)
    if name == "snips":
        return _Terms(w * logs.reward, w, None)
    assert q_hat is not None  # checked by the callers
    direct = (dist * q_hat).sum(axis=1)
    residual = logs.reward - q_hat[rounds, logs.action]
    if name == "dm":
        return _Terms(np.zeros(logs.n_rounds), None, direct)
    if name == "dr":
        return _Terms(w * residual, None, direct)
    if name == "sndr":
        return _Terms(w * residual, w, direct)
    if name == "switch_dr":
        return _Terms(np.where(w <= tau, w * residual, 0.0), None, direct)
    raise InvalidLogs(f"unknown estimator {name!r}; known: {', '.join(ESTIMATORS)}")


def ips(logs: Logs, action_dist: npt.ArrayLike) -> float:
    """Inverse propensity scoring: ``mean(w * reward)``, ``w = π(a|x) / propensity``.

    Unbiased when every action the policy may take had a logged propensity > 0.
    """
    return _point("ips", logs, action_dist, None)


def snips(logs: Logs, action_dist: npt.ArrayLike) -> float:
    """Self-normalised IPS: ``sum(w * reward) / sum(w)``; within the reward range.

    NaN when the policy gives probability 0 to every logged action (no evidence).
    """
    return _point("snips", logs, action_dist, None)


def dm(logs: Logs, action_dist: npt.ArrayLike, estimated_rewards: npt.ArrayLike) -> float:
    """Direct method: ``mean(sum_a π(a|x) q̂(x, a))`` — as good as the reward model."""
    return _point("dm", logs, action_dist, estimated_rewards)


def dr(logs: Logs, action_dist: npt.ArrayLike, estimated_rewards: npt.ArrayLike) -> float:
    """Doubly robust: DM plus ``mean(w * (reward - q̂(x, a)))``."""
    return _point("dr", logs, action_dist, estimated_rewards)


def sndr(logs: Logs, action_dist: npt.ArrayLike, estimated_rewards: npt.ArrayLike) -> float:
    """Self-normalised doubly robust: DM plus ``sum(w * (reward - q̂)) / sum(w)``."""
    return _point("sndr", logs, action_dist, estimated_rewards)


def switch_dr(
    logs: Logs,
    action_dist: npt.ArrayLike,
    estimated_rewards: npt.ArrayLike,
    tau: float = 10.0,
) -> float:
    """Switch-DR: the DR correction only on rounds whose weight ``w <= tau`` (DM elsewhere).

    ``tau = inf`` is DR; ``tau = 0`` is DM. Trades the variance of large weights for bias.
    """
    return _point("switch_dr", logs, action_dist, estimated_rewards, tau)


def _point(
    name: str,
    logs: Logs,
    action_dist: npt.ArrayLike,
    estimated_rewards: npt.ArrayLike | None,
    tau: float = 10.0,
) -> float:
    dist, q_hat = _checked(logs, action_dist, estimated_rewards, need_model=name in _NEEDS_MODEL)
    _check_tau(tau)
    return float(_terms(name, logs, dist, q_hat, tau).value())


def evaluate(
    logs: Logs,
    action_dist: npt.ArrayLike,
    estimated_rewards: npt.ArrayLike | None = None,
    *,
    estimators: Sequence[str] | None = None,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    tau: float = 10.0,
) -> dict[str, Estimate]:
    """Estimate a policy's value with several estimators, each with a bootstrap interval.

    ``estimators`` defaults to every one the inputs allow (the model-based ones
    only when ``estimated_rewards`` is given). The interval is the percentile
    bootstrap over rounds resampled with replacement (``n_boot`` resamples from
    ``numpy.random.default_rng(seed)``, the same resamples for every estimator);
    resamples on which a self-normalised estimator is undefined are left out.
    """
    if estimators is None:
        chosen: Sequence[str] = [
            e for e in ESTIMATORS if estimated_rewards is not None or e not in _NEEDS_MODEL
        ]
    else:
        chosen = list(estimators)
    unknown = [e for e in chosen if e not in ESTIMATORS]
    if unknown or not chosen:
        raise InvalidLogs(f"unknown estimators {unknown}; known: {', '.join(ESTIMATORS)}")
    need_model = any(e in _NEEDS_MODEL for e in chosen)
    dist, q_hat = _checked(logs, action_dist, estimated_rewards, need_model=need_model)
    _check_tau(tau)
    terms = {e: _terms(e, logs, dist, q_hat, tau) for e in chosen}
    return _bootstrap(terms, logs.n_rounds, n_boot, confidence, seed)


def on_policy(
    logs: Logs, *, n_boot: int = 1000, confidence: float = 0.95, seed: int = 0
) -> Estimate:
    """The logging policy's own value: the mean logged reward, with a bootstrap interval."""
    terms = {"mean": _Terms(logs.reward, None, None)}
    return _bootstrap(terms, logs.n_rounds, n_boot, confidence, seed)["mean"]


def _bootstrap(
    terms: Mapping[str, _Terms], n: int, n_boot: int, confidence: float, seed: int
) -> dict[str, Estimate]:
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 1:
        raise InvalidLogs(f"n_boot must be a positive integer, not {n_boot!r}")
    if not 0.0 < confidence < 1.0:
        raise InvalidLogs(f"confidence must be in (0, 1), not {confidence!r}")
    rng = np.random.default_rng(seed)
    replicates: dict[str, list[FloatArray]] = {name: [] for name in terms}
    block = max(1, _BOOT_CELLS // n)
    for start in range(0, n_boot, block):
        idx = rng.integers(0, n, size=(min(block, n_boot - start), n))
        for name, term in terms.items():
            replicates[name].append(np.asarray(term.value(idx)))
    tail = (1.0 - confidence) / 2.0
    out: dict[str, Estimate] = {}
    for name, term in terms.items():
        boots = np.concatenate(replicates[name])
        boots = boots[np.isfinite(boots)]
        if len(boots):
            low, high = (float(v) for v in np.quantile(boots, [tail, 1.0 - tail]))
        else:
            low = high = float("nan")
        out[name] = Estimate(float(term.value()), low, high, confidence, n, n_boot)
    return out


# --- validation --------------------------------------------------------------------------


def _vector(values: npt.ArrayLike, name: str) -> npt.NDArray[Any]:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise InvalidLogs(f"{name} must be one-dimensional, not of shape {arr.shape}")
    if arr.dtype.kind not in "iufb" and len(arr):
        raise InvalidLogs(f"{name} must be numeric, not {arr.dtype}")
    return arr


def _matrix(values: npt.ArrayLike, name: str, n_rounds: int) -> FloatArray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] != n_rounds or arr.shape[1] < 1:
        raise InvalidLogs(
            f"{name} must have shape (n_rounds={n_rounds}, n_actions), not {arr.shape}"
        )
    if not np.all(np.isfinite(arr)):
        raise InvalidLogs(f"{name} must be finite")
    return arr


def _checked(
    logs: Logs,
    action_dist: npt.ArrayLike,
    estimated_rewards: npt.ArrayLike | None,
    *,
    need_model: bool,
) -> tuple[FloatArray, FloatArray | None]:
    dist = _matrix(action_dist, "action_dist", logs.n_rounds)
    if np.any(dist < 0.0):
        raise InvalidLogs("action_dist must not hold negative probabilities")
    sums = dist.sum(axis=1)
    off = np.abs(sums - 1.0) > _ROW_SUM_TOLERANCE
    if np.any(off):
        first = int(np.argmax(off))
        raise InvalidLogs(f"action_dist rows must sum to 1; round {first} sums to {sums[first]}")
    if int(logs.action.max()) >= dist.shape[1]:
        raise InvalidLogs(
            f"logged action {int(logs.action.max())} is out of range for {dist.shape[1]} actions"
        )
    q_hat = None
    if estimated_rewards is not None:
        q_hat = _matrix(estimated_rewards, "estimated_rewards", logs.n_rounds)
        if q_hat.shape != dist.shape:
            raise InvalidLogs(
                f"estimated_rewards has shape {q_hat.shape}, action_dist {dist.shape}"
            )
    elif need_model:
        raise InvalidLogs("dm, dr, sndr and switch_dr need estimated_rewards (a reward model)")
    return dist, q_hat


def _check_tau(tau: float) -> None:
    if not tau >= 0.0:  # also refuses NaN
        raise InvalidLogs(f"tau must be >= 0, not {tau!r}")
