"""Friction sentiment on real data: momently's scorer beside plain VADER, in one run.

The data are the human-rated texts that ship in the vaderSentiment source
distribution (``additional_resources/hutto_ICWSM_2014.tar.gz``), fetched at run
time with pip into ``benchmarks/.cache/vader`` (ignored by git, kept between
runs) and read straight from the tarballs. The headline set is the 4,200 tweets
of ``tweets_GroundTruth.txt`` (id, mean of 20 human ratings on −4..+4, text).

Printed for plain VADER and for :class:`momently.moments.friction.SentimentScorer`:

* Pearson r (``statistics.correlation``) between the compound score and the human mean rating;
* 3-class macro F1, the classes being: human mean > 0.5 positive, < −0.5
  negative, else neutral; compound ≥ 0.05 positive, ≤ −0.05 negative, else
  neutral (VADER's own recommended cut-offs);
* friction precision and recall: "human negative" (mean < −0.5) against
  compound ≤ the playbook's default threshold, and a sweep of thresholds
  with F0.5 (precision weighted over recall) to show where the default sits;
* the pitfall examples before and after, and the cost per text (median and
  p99 µs), for the tweets and for longer texts up to the ``max_chars`` cap.

Run ``python benchmarks/bench_friction.py [--quick]`` (``--quick`` skips the
review and editorial sets). Exits 2 when the data cannot be fetched.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tarfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from _fetch import pip_download
from momently.moments.friction import EMOJI_VALENCE, FrictionSettings, SentimentScorer

VERSION = "3.3.2"
CACHE = Path(__file__).resolve().parent / ".cache" / "vader"
SDIST = CACHE / f"vaderSentiment-{VERSION}.tar.gz"
INNER = "additional_resources/hutto_ICWSM_2014.tar.gz"
TWEETS = "tweets_GroundTruth.txt"
OTHER_SETS = (
    "amazonReviewSnippets_GroundTruth.txt",
    "movieReviewSnippets_GroundTruth.txt",
    "nytEditorialSnippets_GroundTruth.txt",
)
PLAIN_R_PUBLISHED = 0.872  # the figure for plain VADER on the tweets
PITFALLS = (
    "😡",
    "🤬",
    "the delivery is late again 😡",
    "refund hasn't arrived. not happy :(",
    "My toaster broke and I have no idea what to buy 😩",
    "I'm sick 😢",
)
SWEEP = (-0.05, -0.1, -0.2, -0.3, -0.4, -0.5)
Rated = list[tuple[float, str]]


def fetch() -> Path | None:
    """The cached sdist, downloaded with pip on first use; None if pip cannot fetch it."""
    return pip_download(SDIST, f"vaderSentiment=={VERSION}", ("--no-binary=:all:",))


def load(sdist: Path) -> dict[str, Rated]:
    """Every ``*_GroundTruth.txt`` of the inner tarball: (human mean, text) rows."""
    with tarfile.open(sdist) as outer:
        member = outer.getmember(f"vaderSentiment-{VERSION}/{INNER}")
        packed = outer.extractfile(member)
        if packed is None:
            raise FileNotFoundError(INNER)
        inner_bytes = packed.read()
    sets: dict[str, Rated] = {}
    with tarfile.open(fileobj=io.BytesIO(inner_bytes)) as inner:
        for info in inner.getmembers():
            name = info.name.rsplit("/", 1)[-1]
            if not name.endswith("_GroundTruth.txt"):
                continue
            raw = inner.extractfile(info)
            if raw is None:
                continue
            rows: Rated = []
            for line in raw.read().decode("utf-8").splitlines():
                parts = line.split("\t")
                if len(parts) >= 3:
                    rows.append((float(parts[1]), "\t".join(parts[2:])))
            sets[name] = rows
    return sets


def human_class(mean: float) -> int:
    return 1 if mean > 0.5 else -1 if mean < -0.5 else 0


def score_class(compound: float) -> int:
    return 1 if compound >= 0.05 else -1 if compound <= -0.05 else 0


def macro_f1(truth: Sequence[int], predicted: Sequence[int]) -> float:
    scores = []
    for label in (-1, 0, 1):
        tp = sum(1 for t, p in zip(truth, predicted, strict=True) if t == label and p == label)
        fp = sum(1 for t, p in zip(truth, predicted, strict=True) if t != label and p == label)
        fn = sum(1 for t, p in zip(truth, predicted, strict=True) if t == label and p != label)
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        total = precision + recall
        scores.append(2 * precision * recall / total if total else 0.0)
    return sum(scores) / len(scores)


def precision_recall(
    human: Sequence[float], scores: Sequence[float], threshold: float
) -> tuple[float, float]:
    truth = [h < -0.5 for h in human]
    flagged = [s <= threshold for s in scores]
    tp = sum(1 for t, f in zip(truth, flagged, strict=True) if t and f)
    return (tp / sum(flagged) if any(flagged) else 0.0, tp / sum(truth) if any(truth) else 0.0)


def f_beta(precision: float, recall: float, beta: float) -> float:
    b2 = beta * beta
    total = b2 * precision + recall
    return (1 + b2) * precision * recall / total if total else 0.0


def timed(fn: Callable[[str], float], texts: Sequence[str]) -> tuple[list[float], list[float]]:
    """Scores and the CPU microseconds each text took.

    CPU time rather than wall time: the scorer is single-threaded and never
    waits, and CPU time is not inflated by other processes sharing the machine.
    """
    scores, micros = [], []
    for text in texts:
        started = time.process_time_ns()
        scores.append(fn(text))
        micros.append((time.process_time_ns() - started) / 1000)
    return scores, micros


def p99(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def report_set(
    name: str, rows: Rated, scorer: SentimentScorer, settings: FrictionSettings
) -> tuple[float, float, float, float]:
    """Print one set's figures; returns (r plain, r momently, F1 plain, F1 momently)."""
    human = [h for h, _ in rows]
    texts = [t for _, t in rows]
    truth = [human_class(h) for h in human]
    plain, plain_us = timed(scorer.plain_compound, texts)
    fixed, fixed_us = timed(scorer.compound, texts)
    r_plain = statistics.correlation(human, plain)
    r_fixed = statistics.correlation(human, fixed)
    f1_plain = macro_f1(truth, [score_class(s) for s in plain])
    f1_fixed = macro_f1(truth, [score_class(s) for s in fixed])
    p_plain, rc_plain = precision_recall(human, plain, settings.threshold)
    p_fixed, rc_fixed = precision_recall(human, fixed, settings.threshold)
    changed = sum(1 for a, b in zip(plain, fixed, strict=True) if a != b)
    # Which texts changed class, and whether to the human's class or away from it.
    fixed_right = plain_right = 0
    for t, a, b in zip(truth, plain, fixed, strict=True):
        a_class, b_class = score_class(a), score_class(b)
        if a_class != b_class:
            fixed_right += b_class == t
            plain_right += a_class == t
    print(f"\n{name}: {len(rows)} texts, {changed} scored differently")
    print(f"  3-class changes: {fixed_right} now match the human class, {plain_right} no longer do")
    print(f"  {'':24}{'plain VADER':>12}{'momently':>10}{'change':>10}")
    th = settings.threshold
    for label, before, after, digits in (
        ("Pearson r", r_plain, r_fixed, 4),
        ("3-class macro F1", f1_plain, f1_fixed, 4),
        (f"friction P (<= {th:g})", p_plain, p_fixed, 3),
        (f"friction R (<= {th:g})", rc_plain, rc_fixed, 3),
    ):
        change = after - before
        print(f"  {label:24}{before:>12.{digits}f}{after:>10.{digits}f}{change:>+10.{digits}f}")
    for label, plain_cost, fixed_cost in (
        ("CPU µs/text, median", statistics.median(plain_us), statistics.median(fixed_us)),
        ("CPU µs/text, p99", p99(plain_us), p99(fixed_us)),
    ):
        ratio = fixed_cost / plain_cost
        print(f"  {label:24}{plain_cost:>12.0f}{fixed_cost:>10.0f}{ratio:>9.2f}x")
    return r_plain, r_fixed, f1_plain, f1_fixed


def report_sweep(rows: Rated, scorer: SentimentScorer, default: float) -> None:
    human = [h for h, _ in rows]
    fixed = [scorer.compound(t) for _, t in rows]
    print("\n  friction threshold sweep (momently), human negative = mean < -0.5:")
    print(f"  {'threshold':>10}{'precision':>11}{'recall':>8}{'F1':>7}{'F0.5':>7}")
    for threshold in SWEEP:
        precision, recall = precision_recall(human, fixed, threshold)
        mark = "  <- default" if threshold == default else ""
        print(
            f"  {threshold:>10g}{precision:>11.3f}{recall:>8.3f}"
            f"{f_beta(precision, recall, 1):>7.3f}{f_beta(precision, recall, 0.5):>7.3f}{mark}"
        )


def report_long(rows: Rated, scorer: SentimentScorer, max_chars: int) -> None:
    """Cost of longer texts (tweets run together): why the detector reads max_chars."""
    joined = " ".join(t for _, t in rows)
    print("\n  cost of longer texts (CPU µs per text, median / p99 over 40 texts each;")
    print(f"  the detector reads only the first {max_chars} characters of a text):")
    print(f"  {'chars':>7}{'plain':>16}{'momently':>16}")
    for length in sorted({140, 280, 500, max_chars, 1000, 2000}):
        texts = [joined[i * length : (i + 1) * length] for i in range(40)]
        _, plain_us = timed(scorer.plain_compound, texts)
        _, fixed_us = timed(scorer.compound, texts)
        print(
            f"  {length:>7}{statistics.median(plain_us):>9.0f} / {p99(plain_us):<5.0f}"
            f"{statistics.median(fixed_us):>9.0f} / {p99(fixed_us):<5.0f}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="tweets only")
    args, _ = parser.parse_known_args(argv)
    sdist = fetch()
    if sdist is None:
        print(
            f"could not fetch vaderSentiment=={VERSION} with pip into {CACHE}: "
            "no figures (the data ship only in the source distribution)",
            file=sys.stderr,
        )
        return 2
    sets = load(sdist)
    tweets = sets[TWEETS]
    settings = FrictionSettings()
    started = time.perf_counter()
    scorer = SentimentScorer()
    print(f"SentimentScorer built in {(time.perf_counter() - started) * 1000:.0f} ms")
    with_emoji = sum(1 for _, t in tweets if any(e in t for e in EMOJI_VALENCE))
    print(f"tweets containing an emoji momently re-values: {with_emoji}")

    print("\npitfalls (compound):")
    print(f"  {'text':52}{'plain':>9}{'momently':>10}")
    for text in PITFALLS:
        print(f"  {text!r:52}{scorer.plain_compound(text):>+9.4f}{scorer.compound(text):>+10.4f}")

    r_plain, r_fixed, f1_plain, f1_fixed = report_set(TWEETS, tweets, scorer, settings)
    print(f"  (published figure for plain VADER: r = {PLAIN_R_PUBLISHED})")
    report_sweep(tweets, scorer, settings.threshold)
    report_long(tweets, scorer, settings.max_chars)
    if not args.quick:
        for name in OTHER_SETS:
            if name in sets:
                report_set(name, sets[name], scorer, settings)

    print(
        f"\non the tweets: r {r_plain:.4f} -> {r_fixed:.4f} "
        f"({'not below' if r_fixed >= r_plain else 'BELOW'} plain VADER), "
        f"macro F1 {f1_plain:.4f} -> {f1_fixed:.4f} "
        f"({'not below' if f1_fixed >= f1_plain else 'BELOW'} plain VADER)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
