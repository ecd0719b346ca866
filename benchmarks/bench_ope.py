"""Off-policy evaluation on real logs: the Open Bandit Dataset, BTS evaluated from Random.

The data are the Open Bandit Dataset sample that ships in the ``obp`` 0.4.1
wheel (ZOZOTOWN fashion recommendations, campaign ``all``: 10,000 impressions
logged under a uniform-random policy and 10,000 under Bernoulli Thompson
Sampling, 80 items, 3 positions). The wheel is fetched at run time with
``pip download --no-deps`` into ``benchmarks/.cache/obp`` (ignored by git,
kept between runs) and the CSVs are read straight from the zip; obp itself is
never imported.

The protocol is zr-obp's ``examples/obd/evaluate_off_policy_estimators.py``:

* the evaluation policy is BTS with ZOZOTOWN's production Beta priors (read
  from ``obp/policy/conf/prior_bts.yaml`` in the same wheel); its distribution
  over (item, position) is computed by Monte-Carlo simulation — draw a score
  from every item's Beta, rank, take the top three — ``--n-sim`` times;
* the ground truth is the BTS logs' own mean click (on-policy);
* each of 30 runs resamples the random logs with replacement (seed = run),
  fits a reward model per position with 3-fold cross-fitting (obp: scikit-learn
  logistic regression, C=100, on one-hot user features plus the item
  features; here :class:`momently.measure.reward_model.LogisticRewardModel`,
  l2 = 1/C, on the same features, item categories one-hot) and estimates the
  BTS value with :mod:`momently.measure.ope`;
* the figure is the relative estimation error ``|V̂ − V| / V``, mean ± std
  over the runs, printed beside zr-obp's published ones.

The random numbers are drawn as obp draws them (numpy's legacy
``RandomState``: seed 12345 for the simulation, seed = run for the resample,
rows in pandas' time order), so the model-free estimators (IPW, SNIPW) must
reproduce obp's figures to the digit, which checks both the estimators and
the BTS distribution; DM, DR and SNDR differ by the reward model only.
Switch-DR uses a fixed ``tau`` (obp tunes it by SLOPE); DRos is not built.

Also printed: the naive baseline measured in the same run (the random logs'
own mean click taken as BTS's value) and its error, the ratio of each
estimator's error to it, and how often each estimator's 95% bootstrap
interval (``evaluate``, 200 resamples) covered the truth. On this sample the
naive guess wins: the two policies' click rates (0.0038, 0.0042) are closer
than any estimator's noise on 38 clicks. DM's interval holds the reward model
fixed, so it is too narrow.

Run ``python benchmarks/bench_ope.py [--quick]`` (``--quick``: 10 runs,
100,000 simulations). Exits 2 when the data cannot be fetched.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # small matrices: threads only contend

import argparse  # noqa: E402
import csv  # noqa: E402
import io  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import zipfile  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import numpy.typing as npt  # noqa: E402
import yaml  # noqa: E402

from _fetch import pip_download  # noqa: E402
from momently.measure.ope import Logs, evaluate, on_policy  # noqa: E402
from momently.measure.reward_model import LogisticRewardModel, cross_fit  # noqa: E402

VERSION = "0.4.1"
CACHE = Path(__file__).resolve().parent / ".cache" / "obp"
WHEEL = CACHE / f"obp-{VERSION}-py3-none-any.whl"
PUBLISHED = {  # zr-obp examples/obd/README.md: 30 runs, logistic regression, campaign all
    "dm": (0.156876, 0.109898),
    "ips": (0.311082, 0.311170),
    "snips": (0.311795, 0.334736),
    "dr": (0.292464, 0.315485),
    "sndr": (0.302407, 0.328434),
    "switch_dr": (0.258410, 0.160598),  # obp tunes tau by SLOPE; here tau is fixed
}
LABELS = {
    "dm": "DM",
    "ips": "IPW",
    "snips": "SNIPW",
    "dr": "DR",
    "sndr": "SNDR",
    "switch_dr": "Switch-DR",
}
L2 = 1.0 / 100.0  # obp's LogisticRegression(C=100)
TAU = 10.0
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def fetch() -> Path | None:
    """The cached obp wheel, downloaded with pip on first use; None if pip cannot fetch it."""
    return pip_download(WHEEL, f"obp=={VERSION}")


@dataclass(frozen=True)
class Obd:
    """One policy's logs for one campaign, in time order, with the item features."""

    item: IntArray  # the item shown (the action)
    position: IntArray  # 0, 1, 2
    click: FloatArray
    pscore: FloatArray
    users: list[tuple[str, ...]]  # the four hashed user features of each round
    item_features: list[dict[str, str | float]]  # per item id
    n_items: int
    timestamp: list[str]  # ISO 8601, one zone, so text order is time order

    @property
    def n_rounds(self) -> int:
        return len(self.item)

    def part(self, rounds: slice) -> Obd:
        """The rounds in ``rounds`` (a time span: the logs are in time order)."""
        return Obd(
            self.item[rounds],
            self.position[rounds],
            self.click[rounds],
            self.pscore[rounds],
            self.users[rounds],
            self.item_features,
            self.n_items,
            self.timestamp[rounds],
        )

    def logs(self) -> Logs:
        return Logs(self.item, self.click, self.pscore)


def load(wheel: Path, policy: str, campaign: str = "all") -> Obd:
    """The logs of ``policy`` (``random`` or ``bts``) straight from the wheel."""
    base = f"obp/dataset/obd/{policy}/{campaign}"
    with zipfile.ZipFile(wheel) as zf:
        rows = list(csv.DictReader(io.StringIO(zf.read(f"{base}/{campaign}.csv").decode())))
        items = list(csv.DictReader(io.StringIO(zf.read(f"{base}/item_context.csv").decode())))
    # Time order as obp makes it (pandas' sort_values: numpy's unstable quicksort on the
    # text), so ties fall the same way and a resample by index picks the same rows.
    stamps = np.array([r["timestamp"] for r in rows], dtype=object)
    rows = [rows[i] for i in stamps.argsort(kind="quicksort")]
    positions = sorted({int(r["position"]) for r in rows})
    rank = {p: i for i, p in enumerate(positions)}
    features: list[dict[str, str | float]] = [{} for _ in items]
    for row in items:
        features[int(row["item_id"])] = {
            "item_feature_0": float(row["item_feature_0"]),
            "item_feature_1": row["item_feature_1"],
            "item_feature_2": row["item_feature_2"],
            "item_feature_3": row["item_feature_3"],
        }
    return Obd(
        item=np.array([int(r["item_id"]) for r in rows], dtype=np.int64),
        position=np.array([rank[int(r["position"])] for r in rows], dtype=np.int64),
        click=np.array([float(r["click"]) for r in rows]),
        pscore=np.array([float(r["propensity_score"]) for r in rows]),
        users=[tuple(r[f"user_feature_{j}"] for j in range(4)) for r in rows],
        item_features=features,
        n_items=len(items),
        timestamp=[r["timestamp"] for r in rows],
    )


def bts_prior(wheel: Path, campaign: str = "all") -> tuple[FloatArray, FloatArray]:
    """ZOZOTOWN's production Beta(alpha, beta) per item, as shipped with obp."""
    with zipfile.ZipFile(wheel) as zf:
        conf = yaml.safe_load(zf.read("obp/policy/conf/prior_bts.yaml"))
    return np.array(conf[campaign]["alpha"], float), np.array(conf[campaign]["beta"], float)


def bts_distribution(
    alpha: FloatArray, beta: FloatArray, n_sim: int, seed: int, len_list: int = 3
) -> FloatArray:
    """P(item at position) under Bernoulli TS, shape ``(n_items, len_list)``, by simulation.

    Each simulated impression draws one score per item from its Beta and shows
    the ``len_list`` best in order: the share of simulations that put item ``a``
    at position ``p`` is the policy's probability of ``a`` at ``p``.
    """
    # The legacy generator, drawn in the order obp's BernoulliTS draws (one Beta per item
    # per simulation), so the same seed gives obp's very distribution.
    rng = np.random.RandomState(seed)
    counts = np.zeros((len(alpha), len_list))
    chunk = 50_000
    for start in range(0, n_sim, chunk):
        size = min(chunk, n_sim - start)
        scores = rng.beta(alpha, beta, size=(size, len(alpha)))
        top = np.argpartition(-scores, len_list - 1, axis=1)[:, :len_list]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1)
        ranked = np.take_along_axis(top, order, axis=1)
        for pos in range(len_list):
            counts[:, pos] += np.bincount(ranked[:, pos], minlength=len(alpha))
    out: FloatArray = counts / n_sim
    return out


def designs(obd: Obd) -> tuple[FloatArray, FloatArray]:
    """One-hot user features per round and item features per item (categories one-hot)."""
    values = sorted({(j, u[j]) for u in obd.users for j in range(4)})
    column = {v: i for i, v in enumerate(values)}
    context = np.zeros((obd.n_rounds, len(values)))
    for i, user in enumerate(obd.users):
        for j in range(4):
            context[i, column[(j, user[j])]] = 1.0
    cats = sorted({(k, str(f[k])) for f in obd.item_features for k in f if k != "item_feature_0"})
    cat_column = {c: i for i, c in enumerate(cats)}
    items = np.zeros((obd.n_items, len(cats) + 1))
    for a, feats in enumerate(obd.item_features):
        items[a, -1] = float(feats["item_feature_0"])
        for k, v in feats.items():
            if k != "item_feature_0":
                items[a, cat_column[(k, str(v))]] = 1.0
    return context, items


def reward_model(
    context: FloatArray,
    items: FloatArray,
    item: IntArray,
    position: IntArray,
    click: FloatArray,
    seed: int,
) -> FloatArray:
    """Cross-fitted ``q̂(x, a)`` at each round's own position, one model per position."""
    q_hat = np.empty((len(item), len(items)))
    for pos in np.unique(position):
        at = position == pos
        q_hat[at] = cross_fit(
            LogisticRewardModel(l2=L2),
            context[at],
            item[at],
            items,
            click[at],
            n_folds=3,
            seed=seed,
        )
    return q_hat


def run_once(
    run: int,
    obd: Obd,
    context: FloatArray,
    items: FloatArray,
    dist_by_position: FloatArray,
    truth: float,
    n_boot: int,
) -> tuple[dict[str, float], dict[str, bool], dict[str, float]]:
    """One bootstrap resample of the random logs: relative error, coverage, estimate."""
    # obp's resample: check_random_state(run).choice(n_rounds, n_rounds, replace=True)
    idx = np.random.RandomState(run).choice(obd.n_rounds, obd.n_rounds, replace=True)
    item, position, click = obd.item[idx], obd.position[idx], obd.click[idx]
    logs = Logs(item, click, obd.pscore[idx])
    action_dist = dist_by_position[:, position].T
    q_hat = reward_model(context[idx], items, item, position, click, seed=12345)
    found = evaluate(logs, action_dist, q_hat, n_boot=n_boot, seed=run, tau=TAU)
    errors = {name: abs(est.value - truth) / truth for name, est in found.items()}
    covered = {name: est.low <= truth <= est.high for name, est in found.items()}
    values = {name: est.value for name, est in found.items()}
    errors["naive"] = abs(float(click.mean()) - truth) / truth
    values["naive"] = float(click.mean())
    return errors, covered, values


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="10 runs, 100,000 simulations")
    parser.add_argument("--runs", type=int, default=None, help="bootstrap runs (default 30)")
    parser.add_argument("--n-sim", type=int, default=None, help="BTS simulations (default 1e6)")
    args = parser.parse_args(argv)
    runs = args.runs or (10 if args.quick else 30)
    n_sim = args.n_sim or (100_000 if args.quick else 1_000_000)

    wheel = fetch()
    if wheel is None:
        print("could not fetch the obp wheel; nothing measured", file=sys.stderr)
        return 2
    random_logs = load(wheel, "random")
    bts_logs = load(wheel, "bts")
    truth = float(bts_logs.click.mean())
    started = time.perf_counter()
    alpha, beta = bts_prior(wheel)
    dist = bts_distribution(alpha, beta, n_sim, seed=12345)
    sim_s = time.perf_counter() - started
    context, items = designs(random_logs)
    print(
        f"Open Bandit Dataset (obp {VERSION}), campaign all: {random_logs.n_rounds} random "
        f"rounds ({int(random_logs.click.sum())} clicks), {bts_logs.n_rounds} BTS rounds "
        f"({int(bts_logs.click.sum())} clicks), {random_logs.n_items} items"
    )
    behaviour = on_policy(random_logs.logs(), n_boot=1000, seed=0)
    bts = on_policy(bts_logs.logs(), n_boot=1000, seed=0)
    print(
        f"on-policy click rate: random {behaviour.value:.5f} "
        f"[{behaviour.low:.5f}, {behaviour.high:.5f}], BTS (the truth) {bts.value:.5f} "
        f"[{bts.low:.5f}, {bts.high:.5f}]"
    )
    print(f"BTS action distribution: {n_sim:,} simulations in {sim_s:.1f} s")

    started = time.perf_counter()
    errors: dict[str, list[float]] = {}
    covered: dict[str, list[bool]] = {}
    values: dict[str, list[float]] = {}
    for run in range(runs):
        err, cov, val = run_once(run, random_logs, context, items, dist, truth, n_boot=200)
        for name, e in err.items():
            errors.setdefault(name, []).append(e)
            values.setdefault(name, []).append(val[name])
        for name, c in cov.items():
            covered.setdefault(name, []).append(c)
    elapsed = time.perf_counter() - started

    naive = statistics.fmean(errors["naive"])
    print(
        f"\nrelative estimation error of V(BTS) from the random logs, {runs} bootstrap runs "
        f"({elapsed:.1f} s); std with ddof=1 as pandas' describe"
    )
    header = (
        f"{'estimator':<22}{'momently':>17}{'zr-obp published':>21}{'/ naive':>10}"
        f"{'mean V̂':>10}{'95% CI covers V':>17}"
    )
    print(header)
    print("-" * len(header))
    for name in ("dm", "ips", "snips", "dr", "sndr", "switch_dr"):
        mine = errors[name]
        pub_mean, pub_std = PUBLISHED[name]
        label = LABELS[name] + (f" (tau={TAU:g})" if name == "switch_dr" else "")
        hits = sum(covered[name])
        print(
            f"{label:<22}{statistics.fmean(mine):>9.4f} ± {statistics.stdev(mine):<7.4f}"
            f"{pub_mean:>10.4f} ± {pub_std:<7.4f}{statistics.fmean(mine) / naive:>9.2f}"
            f"{statistics.fmean(values[name]):>10.5f}{hits:>11d}/{runs:<5d}"
        )
    print(
        f"{'naive (random mean)':<22}{naive:>9.4f} ± {statistics.stdev(errors['naive']):<7.4f}"
        f"{'':>20}{1.0:>9.2f}{statistics.fmean(values['naive']):>10.5f}"
    )
    print(f"truth V(BTS) = {truth:.5f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
