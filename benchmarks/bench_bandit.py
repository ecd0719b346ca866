"""momently's contextual bandit on real logs, and its cost per round beside Vowpal Wabbit.

Data: the Open Bandit Dataset sample in the ``obp`` 0.4.1 wheel, campaign
``all`` (see ``bench_ope.py``, which fetches and reads it). Context: the four
hashed user features and the position; actions: the 80 items, each with its
id and its four item features. Every action's features are hashed once into an
:class:`~momently.decide.bandit.ActionSet`; the context is hashed per round.

Three measurements, all printed with the commands' settings:

1. **Replay** (Li et al., 2011) over the random logs in time order: at each
   round the bandit chooses among the 80 items; only when it chose the item
   the uniform logger showed does it see the click and learn (rejection
   sampling). The replay click rate (clicks / matched rounds) is an unbiased
   estimate of the learning bandit's click rate; IPS, SNIPS, DR and SNDR
   (:mod:`momently.measure.ope`, 95% bootstrap intervals) estimate the same
   from every round, using the bandit's exact probabilities at that round.
2. **Train, then evaluate**: the bandit learns from every round of the first
   70% of the random logs (fair with a uniform logger), is frozen, and its
   exploring policy is evaluated off-policy on the last 30%, beside uniform
   random (its on-policy mean there) and the logged BTS policy (the BTS
   logs' on-policy mean over the same days, and the same OPE estimators
   applied to BTS's simulated distribution, as in ``bench_ope.py``).
3. **Speed**: one round = choose among the 80 items + learn the logged
   (item, click, propensity), over the first rounds of the random logs;
   median µs per round of several runs, for momently (diagonal and full
   covariance) and for Vowpal Wabbit's ``--cb_explore_adf`` called from
   Python (pyvw, text examples, the 80 action lines built once), the
   baseline the ratios are taken against. BLAS runs single-threaded
   (``OPENBLAS_NUM_THREADS=1``, set before numpy loads), as VW does.

Run ``python benchmarks/bench_bandit.py [--quick]``. Needs ``vowpalwabbit``
for the speed baseline (``pip install vowpalwabbit``); without it the speed
table says so and shows momently alone. Exits 2 when the data cannot be fetched.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402 - the thread settings above must precede numpy
import importlib  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_ope import (  # noqa: E402
    FloatArray,
    Obd,
    bts_distribution,
    bts_prior,
    designs,
    fetch,
    load,
    reward_model,
)
from momently.decide.bandit import (  # noqa: E402
    ActionSet,
    Covariance,
    Features,
    LinearBandit,
    encode_actions,
)
from momently.measure.ope import Estimate, evaluate, on_policy  # noqa: E402

ALPHA = 0.1  # UCB width: a 0.4% click has a standard deviation of about 0.06
EPSILON = 0.05  # as VW's --cb_explore_adf default
ESTIMATORS = ("ips", "snips", "dr", "sndr")
TRAIN_SHARE = 0.7
COVARIANCES: tuple[Covariance, ...] = ("diagonal", "full")


def contexts(obd: Obd) -> list[Features]:
    return [
        {**{f"u{j}={u[j]}": 1.0 for j in range(4)}, f"pos={int(p)}": 1.0}
        for u, p in zip(obd.users, obd.position, strict=True)
    ]


def item_features(obd: Obd) -> list[Features]:
    out: list[Features] = []
    for a, feats in enumerate(obd.item_features):
        row: dict[str, float] = {f"item={a}": 1.0, "if0": float(feats["item_feature_0"])}
        for k in ("item_feature_1", "item_feature_2", "item_feature_3"):
            row[f"if{k[-1]}={feats[k]}"] = 1.0
        out.append(row)
    return out


def bandit(covariance: Covariance) -> LinearBandit:
    return LinearBandit(alpha=ALPHA, epsilon=EPSILON, covariance=covariance, seed=0)


@dataclass
class Replay:
    matched: int
    clicks: float
    estimates: dict[str, Estimate]
    support: str

    @property
    def rate(self) -> float:
        return self.clicks / self.matched if self.matched else float("nan")


def replay(
    model: LinearBandit,
    obd: Obd,
    ctx: list[Features],
    actions: ActionSet,
    items: list[Features],
    q_hat: FloatArray,
) -> Replay:
    """Rejection-sampling replay; OPE of the learning policy from its per-round probabilities."""
    dist = np.empty((obd.n_rounds, actions.size))
    matched, clicks = 0, 0.0
    for t in range(obd.n_rounds):
        choice = model.choose(ctx[t], actions, key=t)
        dist[t] = choice.probabilities
        logged = int(obd.item[t])
        if choice.index == logged:
            model.learn(ctx[t], items[logged], float(obd.click[t]), choice.probability)
            matched += 1
            clicks += float(obd.click[t])
    found = evaluate(obd.logs(), dist, q_hat, estimators=ESTIMATORS, n_boot=1000, seed=0)
    return Replay(matched, clicks, found, support(obd, dist))


def fmt(est: Estimate) -> str:
    return f"{est.value:.5f} [{est.low:.5f}, {est.high:.5f}]"


def support(obd: Obd, dist: FloatArray) -> str:
    """How much of the logs speaks for a policy: the effective sample size of its
    importance weights, and the clicked rounds it would have shown with more than
    uniform probability (with few clicks, an interval can rest on none at all)."""
    taken = dist[np.arange(obd.n_rounds), obd.item]
    w = taken / obd.pscore
    ess = float(w.sum() ** 2 / (w * w).sum()) if w.any() else 0.0
    clicked = obd.click > 0
    likely = int(np.sum(clicked & (taken > 1.0 / dist.shape[1])))
    n_clicks = int(clicked.sum())
    return f"effective rounds {ess:.0f} of {obd.n_rounds}, clicks it favours {likely}/{n_clicks}"


# --- speed ---------------------------------------------------------------------------------


def time_momently(
    covariance: Covariance, obd: Obd, ctx: list[Features], items: list[Features], n: int
) -> float:
    """Seconds per round: choose + learn, the action set hashed once beforehand."""
    model = bandit(covariance)
    actions = encode_actions(items)
    started = time.perf_counter()
    for t in range(n):
        model.choose(ctx[t], actions)
        a = int(obd.item[t])
        model.learn(ctx[t], items[a], float(obd.click[t]), float(obd.pscore[t]))
    return (time.perf_counter() - started) / n


def vw_lines(obd: Obd) -> tuple[list[str], list[str]]:
    """VW's text for the shared context of each round and for each of the 80 actions."""
    shared = [
        "shared |U " + " ".join(f"u{j}={u[j]}" for j in range(4)) + f" pos={int(p)}"
        for u, p in zip(obd.users, obd.position, strict=True)
    ]
    actions = []
    for a, feats in enumerate(obd.item_features):
        cats = " ".join(f"if{k[-1]}={feats[k]}" for k in sorted(feats) if k != "item_feature_0")
        actions.append(f"|A item={a} {cats} if0:{float(feats['item_feature_0']):.6f}")
    return shared, actions


def time_vw(pyvw: Any, obd: Obd, n: int) -> float:
    """Seconds per round: predict (the pmf) + learn the logged action's cost, from Python."""
    shared, actions = vw_lines(obd)
    vw = pyvw.Workspace("--cb_explore_adf --epsilon 0.05 -q UA -b 18 --quiet --random_seed 0")
    started = time.perf_counter()
    for t in range(n):
        vw.predict([shared[t], *actions])
        a = int(obd.item[t])
        labelled = [shared[t], *actions]
        labelled[1 + a] = f"0:{-float(obd.click[t])}:{float(obd.pscore[t])} {actions[a]}"
        vw.learn(labelled)
    elapsed = (time.perf_counter() - started) / n
    vw.finish()
    return elapsed


def speed(obd: Obd, ctx: list[Features], items: list[Features], n: int, runs: int) -> None:
    try:
        pyvw: Any = importlib.import_module("vowpalwabbit")
        version = str(importlib.import_module("vowpalwabbit.version").__version__)
    except ImportError:
        pyvw, version = None, ""
    timings: dict[str, list[float]] = {}
    for _ in range(runs):  # interleaved, so a busy moment hurts every contender alike
        if pyvw is not None:
            timings.setdefault(f"Vowpal Wabbit {version} --cb_explore_adf", []).append(
                time_vw(pyvw, obd, n)
            )
        for covariance in COVARIANCES:
            label = f"momently LinearBandit ({covariance})"
            timings.setdefault(label, []).append(time_momently(covariance, obd, ctx, items, n))
    print(f"\nspeed: choose among 80 items + learn, {n} rounds, median of {runs} runs")
    base = next((statistics.median(v) for k, v in timings.items() if k.startswith("Vowpal")), None)
    if base is None:
        print("  vowpalwabbit is not installed: no baseline; `pip install vowpalwabbit` to compare")
    for label, values in timings.items():
        med = statistics.median(values) * 1e6
        ratio = f"{med / (base * 1e6):.2f}x VW's time" if base else ""
        print(f"  {label:<44}{med:>9.1f} µs/round  {ratio}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer simulations and timed rounds")
    args = parser.parse_args(argv)
    n_sim = 100_000 if args.quick else 1_000_000
    speed_rounds, speed_runs = (300, 3) if args.quick else (2000, 5)

    wheel = fetch()
    if wheel is None:
        print("could not fetch the obp wheel; nothing measured", file=sys.stderr)
        return 2
    random_logs, bts_logs = load(wheel, "random"), load(wheel, "bts")
    ctx = contexts(random_logs)
    items = item_features(random_logs)
    actions = encode_actions(items)
    context_design, item_design = designs(random_logs)
    print(
        f"Open Bandit Dataset (obp 0.4.1), campaign all: {random_logs.n_rounds} random rounds, "
        f"{int(random_logs.click.sum())} clicks; LinearBandit(alpha={ALPHA}, "
        f"epsilon={EPSILON}), defaults otherwise"
    )

    # 1. replay over all the random logs
    q_all = reward_model(
        context_design, item_design, random_logs.item, random_logs.position,
        random_logs.click, seed=0,
    )  # fmt: skip
    uniform = on_policy(random_logs.logs(), n_boot=1000, seed=0)
    bts_all = on_policy(bts_logs.logs(), n_boot=1000, seed=0)
    print("\n1. replay (rejection sampling) over the 10,000 random rounds, in time order")
    print(f"  uniform random, on-policy      {fmt(uniform)}")
    print(f"  BTS logs, on-policy            {fmt(bts_all)}")
    for covariance in COVARIANCES:
        started = time.perf_counter()
        result = replay(bandit(covariance), random_logs, ctx, actions, items, q_all)
        took = time.perf_counter() - started
        print(
            f"  momently ({covariance}): {result.matched} matched rounds, "
            f"{int(result.clicks)} clicks, replay click rate {result.rate:.5f}  ({took:.1f} s)"
        )
        print(f"    {result.support}")
        for name in ESTIMATORS:
            print(f"    {name:<6} {fmt(result.estimates[name])}")

    # 2. train on the first 70%, evaluate the frozen policy on the last 30%
    cut = int(random_logs.n_rounds * TRAIN_SHARE)
    train, test = random_logs.part(slice(0, cut)), random_logs.part(slice(cut, None))
    ctx_train, ctx_test = ctx[:cut], ctx[cut:]
    test_design = context_design[cut:]
    q_test = reward_model(test_design, item_design, test.item, test.position, test.click, seed=0)
    # The BTS logs over the same days as the test part of the random logs.
    first_test_day = test.timestamp[0]
    bts_test = bts_logs.part(slice(int(np.searchsorted(bts_logs.timestamp, first_test_day)), None))
    bts_dist = bts_distribution(*bts_prior(wheel), n_sim=n_sim, seed=12345)
    print(
        f"\n2. learn from the first {cut} random rounds, evaluate the frozen policy on the "
        f"last {test.n_rounds} ({int(test.click.sum())} clicks)"
    )
    print(f"  uniform random, on-policy      {fmt(on_policy(test.logs(), seed=0))}")
    print(
        f"  BTS logs, on-policy            {fmt(on_policy(bts_test.logs(), seed=0))}"
        f"  ({bts_test.n_rounds} BTS rounds from {first_test_day[:10]})"
    )
    bts_test_dist = bts_dist[:, test.position].T
    bts_found = evaluate(test.logs(), bts_test_dist, q_test, estimators=ESTIMATORS, seed=0)
    print(f"  BTS, off-policy from the random test rounds ({support(test, bts_test_dist)}):")
    for name in ESTIMATORS:
        print(f"    {name:<6} {fmt(bts_found[name])}")
    for covariance in COVARIANCES:
        model = bandit(covariance)
        for t in range(train.n_rounds):
            a = int(train.item[t])
            model.learn(ctx_train[t], items[a], float(train.click[t]), float(train.pscore[t]))
        dist = np.vstack([model.probabilities(c, actions) for c in ctx_test])
        found = evaluate(test.logs(), dist, q_test, estimators=ESTIMATORS, seed=0)
        top = float(np.mean(dist.max(axis=1)))
        print(
            f"  momently ({covariance}), frozen: mean top-item probability {top:.2f}, "
            f"{support(test, dist)}"
        )
        for name in ESTIMATORS:
            print(f"    {name:<6} {fmt(found[name])}")

    # 3. speed
    speed(random_logs, ctx, items, speed_rounds, speed_runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
