"""Purchase propensity on real purchases: the CDNOW log, momently beside BG/NBD.

The CDNOW transaction log ships in the ``lifetimes`` package (69,659
purchases by 23,570 customers, 1997-01-01 to 1998-06-30). Its purchases are
replayed, in time order, as ``Order Completed`` events through momently's
online models (a fresh :class:`~momently.predict.Predictor` with the horizon
set to the evaluation window), up to the end of the calibration period
(1997-09-30, the textbook split). At that cut-off each customer's propensity —
P(buys within the next ``--horizon-days``) — is read off, and compared with
what happened in the holdout period.

In the same run, lifetimes' own BG/NBD model is fitted on the same calibration
period; its conditional expected number of purchases over the window is its
forecast, and ``1 - exp(-E[N])`` (a Poisson reading of it) its probability of
buying at least once. A naive baseline — the share of customers who bought in
the last ``--horizon-days`` of calibration, as a probability for those who did
and for those who did not — is printed beside both.

Printed: ROC AUC and log loss of "buys again within the window" for each,
mean predicted against observed rate, and BG/NBD's expected purchases per
customer against the actual. Run ``python benchmarks/bench_cdnow.py``
(``--quick`` uses a tenth of the customers). Needs ``lifetimes`` (the
``bench`` extra: ``make bench`` installs it).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

from momently.events import Event, from_ms
from momently.predict import Predictor
from momently.predict.replay import replay
from momently.predict.settings import DAY, PredictSettings

START = datetime(1997, 1, 1, tzinfo=UTC)
CUTOFF = datetime(1997, 10, 1, tzinfo=UTC)  # calibration: 1997-01-01 .. 1997-09-30
END = datetime(1998, 7, 1, tzinfo=UTC)


def ms(day: datetime) -> int:
    return int(day.timestamp() * 1000)


def load(quick: bool) -> dict[str, list[tuple[int, float]]]:
    """Purchases by customer: (ms at noon of the day, dollars), from lifetimes' copy."""
    import lifetimes

    path = Path(lifetimes.__file__).parent / "datasets" / "CDNOW_master.txt"
    buys: dict[str, list[tuple[int, float]]] = defaultdict(list)
    with path.open() as lines:
        next(lines)
        for line in lines:
            cid, day, _cds, dollars = line.split()
            if quick and int(cid) % 10:
                continue
            when = datetime.strptime(day, "%Y%m%d").replace(tzinfo=UTC, hour=12)
            buys[cid].append((ms(when), float(dollars)))
    return buys


def events(buys: dict[str, list[tuple[int, float]]], until: int) -> list[tuple[str, Event]]:
    out = []
    for cid, purchases in buys.items():
        for i, (at, dollars) in enumerate(sorted(purchases)):
            if at >= until:
                break
            # Same-day purchases are a minute apart, in file order.
            stamp = from_ms(at + i * 60_000)
            out.append(
                (
                    cid,
                    Event(
                        message_id=f"cdnow-{cid}-{i}",
                        type="track",
                        event="Order Completed",
                        timestamp=stamp,
                        received_at=stamp,
                        user_id=cid,
                        properties={"revenue": dollars},
                    ),
                )
            )
    out.sort(key=lambda ce: (ce[1].timestamp, ce[1].message_id))
    return out


def auc(scores: list[float], labels: list[bool]) -> float:
    """ROC AUC by the rank-sum (ties share their ranks)."""
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    ranks = [0.0] * len(scores)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    pos = sum(labels)
    neg = len(labels) - pos
    rank_sum = sum(r for r, y in zip(ranks, labels, strict=True) if y)
    return (rank_sum - pos * (pos + 1) / 2) / (pos * neg)


def log_loss(probs: list[float], labels: list[bool]) -> float:
    eps = 1e-6
    return -statistics.fmean(
        math.log(min(1 - eps, max(eps, p)) if y else 1 - min(1 - eps, max(eps, p)))
        for p, y in zip(probs, labels, strict=True)
    )


def bgnbd(
    buys: dict[str, list[tuple[int, float]]], customers: list[str], window_days: int
) -> tuple[list[float], float]:
    """BG/NBD's expected purchases in the window per customer, and its fit time."""
    from lifetimes import BetaGeoFitter

    cutoff = ms(CUTOFF)
    freq, rec, age = [], [], []
    for cid in customers:
        days = sorted({at // DAY for at, _ in buys[cid] if at < cutoff})
        first = days[0]
        freq.append(len(days) - 1)  # repeat purchase days, as lifetimes counts them
        rec.append((days[-1] - first) / 7)
        age.append((cutoff // DAY - first) / 7)
    import numpy as np

    f, r, t = np.array(freq), np.array(rec), np.array(age)
    started = time.perf_counter()
    model = BetaGeoFitter(penalizer_coef=0.0)
    model.fit(f, r, t)
    fitted = time.perf_counter() - started
    params = model.params_
    print(
        f"  BG/NBD fit on calibration: r {params['r']:.3f}, alpha {params['alpha']:.3f}, "
        f"a {params['a']:.3f}, b {params['b']:.3f} (textbook: 0.243, 4.414, 0.793, 2.426)"
    )
    expected = model.conditional_expected_number_of_purchases_up_to_time(window_days / 7, f, r, t)
    return [float(x) for x in expected], fitted


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the customers")
    parser.add_argument("--horizon-days", type=int, default=91, help="evaluation window")
    args = parser.parse_args(argv)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    try:
        buys = load(args.quick)
    except ImportError:
        print("lifetimes is not installed: pip install -e '.[bench]'")
        return 1
    window = args.horizon_days * DAY
    cutoff = ms(CUTOFF)
    customers = sorted(c for c, b in buys.items() if min(at for at, _ in b) < cutoff)
    stream = events(buys, cutoff)
    print(
        f"CDNOW: {sum(len(b) for b in buys.values()):,} purchases by {len(buys):,} customers; "
        f"calibration to {CUTOFF.date()} ({len(stream):,} events), window {args.horizon_days} d"
    )
    predictor = Predictor(PredictSettings(horizon_ms=window, max_snapshots=64))
    started = time.perf_counter()
    states = replay(predictor, stream, {}, until_ms=cutoff)
    replayed = time.perf_counter() - started
    print(
        f"  momently replay: {replayed:.1f} s ({replayed / len(stream) * 1e6:.0f} µs per event, "
        "learning included)"
    )
    ours = [predictor.predictions(states[c], None, cutoff).propensity for c in customers]
    counts = [sum(1 for at, _ in buys[c] if cutoff <= at < cutoff + window) for c in customers]
    labels = [n > 0 for n in counts]
    expected, fitted = bgnbd(buys, customers, args.horizon_days)
    theirs = [1 - math.exp(-e) for e in expected]
    recent = [any(cutoff - window <= at < cutoff for at, _ in buys[c]) for c in customers]
    rate_recent = sum(y for y, r in zip(labels, recent, strict=True) if r) / max(1, sum(recent))
    rate_other = sum(y for y, r in zip(labels, recent, strict=True) if not r) / max(
        1, len(recent) - sum(recent)
    )
    naive = [rate_recent if r else rate_other for r in recent]
    observed = sum(labels) / len(labels)
    print(f"  {len(customers):,} customers; {observed:.3%} bought again within the window\n")
    print(f"  {'model':<34} {'ROC AUC':>8} {'log loss':>9} {'mean p':>8}")
    for name, probs in (
        ("momently propensity (online)", ours),
        ("BG/NBD (lifetimes), 1-exp(-E[N])", theirs),
        ("naive: bought in the last window", naive),
    ):
        print(
            f"  {name:<34} {auc(probs, labels):8.4f} {log_loss(probs, labels):9.4f} "
            f"{statistics.fmean(probs):8.4f}"
        )
    print(
        f"\n  purchases per customer in the window: actual {statistics.fmean(counts):.4f}, "
        f"BG/NBD expected {statistics.fmean(expected):.4f} (fit {fitted:.1f} s)"
    )
    ratio = auc(ours, labels) / auc(theirs, labels)
    print(f"  AUC momently / BG/NBD: {ratio:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
