"""Intent detection: held-out quality against a keyword rule, and the cost of one classify.

Measured in one run on the packaged labelled set, split 75/25 stratified by kind
(seed 0):

* **quality** — per-class precision, recall and F1, for the kind and for the
  category, of the learned model (trained on the train split only) beside a
  hand-written keyword rule (no learning) on the same held-out texts;
* **training** — seconds to train on the train split and on the whole set
  (what start-up pays);
* **latency** — median and p99 microseconds per ``classify`` over the held-out
  texts, uncached (every call a miss) and cached (the LRU warm), and the
  keyword rule for scale; each figure is the median of 5 runs.

Run ``python benchmarks/bench_intent.py [--quick]``.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Final

from momently.moments.intent import IntentModel, evaluate, load_examples, split_examples
from momently.moments.intent_data import ClassificationReport, LabelledText, normalise, score

TARGET_KIND_MACRO_F1: Final = 0.85
RUNS: Final = 5

# The baseline: the first rule whose words appear wins. Order matters ("where to
# buy toasters near me" is a go), as it would in any hand-written rule.
_KIND_RULES: Final = (
    (
        "go",
        r"near me|nearby|nearest|closest|open now|open (today|late|sunday)|directions?|"
        r"opening (hours|times)|hours|locator|find a|route to|address|close to me",
    ),
    (
        "do",
        r"how (to|do i)|diy|fix|recipe|tutorial|repair|troubleshoot|not working|wont|"
        r"clean|set ?up|install|guide|tips|hacks|manual|instructions|step by step",
    ),
    (
        "buy",
        r"buy|price|deals?|coupon|discount|sale|cheap|order|in stock|shop|checkout|cart|"
        r"basket|promo|offers?|delivery|cost|book|payment",
    ),
    (
        "know",
        r"best|reviews?|vs|compare|comparison|worth|which|what|top|difference|specs|"
        r"ratings?|reddit|is|are|explained|pros and cons",
    ),
)
_CATEGORY_RULES: Final = (
    (
        "kitchen-appliances",
        r"toaster|kettle|coffee machine|espresso machine|blender|mixer|"
        r"air fryer|microwave|juicer|cooker|waffle|frother|food processor|dishwasher",
    ),
    ("orthodontics", r"brace|aligner|invisalign|retainer|orthodont|teeth|dentist"),
    (
        "bakery-cafe",
        r"donut|doughnut|coffee|latte|cappuccino|bagel|croissant|bakery|cafe|"
        r"muffin|pastr|cake|cupcake|espresso|cold brew|starbucks|krispy kreme|dunkin",
    ),
    (
        "electronics",
        r"phone|iphone|headphone|earbud|airpods|laptop|macbook|charger|tablet|"
        r"ipad|tv|monitor|router|ps5|speaker|watch|kindle|samsung|pixel|cable",
    ),
    (
        "fashion",
        r"shoe|sneaker|trainer|jacket|dress|jeans|boot|sandal|hoodie|suit|handbag|"
        r"sunglasses|coat|heels|swimsuit|shirt|nike|adidas|zara",
    ),
    (
        "home-garden",
        r"lawn|garden|patio|sofa|mattress|bookshelf|paint|drill|plant|grill|bbq|"
        r"curtain|rug|vacuum|fan|shed|hedge|bulb|compost|chair|bed|fence|table|ikea|tap|drain",
    ),
    (
        "beauty",
        r"moisturi|sunscreen|spf|foundation|mascara|lipstick|shampoo|hair|nail|serum|"
        r"retinol|perfume|eyeliner|mask|concealer|beard|skin|makeup|sephora|ulta|salon",
    ),
    (
        "travel",
        r"flight|hotel|car rental|car hire|airbnb|train|travel|luggage|resort|cruise|"
        r"airport|hostel|holiday|visa|passport|trip|booking",
    ),
    (
        "grocery",
        r"milk|eggs|avocado|banana|bread|chicken|pasta|olive oil|pizza|salmon|formula|"
        r"rice|flour|yogurt|cheese|grocer|supermarket|butter|aldi|tesco|whole foods",
    ),
)
_KIND_PATTERNS: Final = [(k, re.compile(rf"\b(?:{p})")) for k, p in _KIND_RULES]
_CATEGORY_PATTERNS: Final = [(c, re.compile(rf"\b(?:{p})")) for c, p in _CATEGORY_RULES]


def keyword_rule(text: str) -> tuple[str, str]:
    """The baseline's (kind, category): the first matching keyword list, else ``none``."""
    plain = normalise(text)
    kind = next((k for k, pattern in _KIND_PATTERNS if pattern.search(plain)), "none")
    category = next((c for c, pattern in _CATEGORY_PATTERNS if pattern.search(plain)), "none")
    return kind, category


def side_by_side(title: str, model: ClassificationReport, rule: ClassificationReport) -> str:
    """Two reports as one table: the model's figures, then the rule's, per class."""
    labels = sorted({*model.per_class, *rule.per_class})
    width = max(len(title), *(len(label) for label in labels))
    head = f"{title:<{width}}  {'model P':>7} {'R':>5} {'F1':>5}   {'rule P':>6} {'R':>5} {'F1':>5}"
    lines = [head + f"  {'support':>7}"]
    zero = (0.0, 0.0, 0.0, 0)
    for label in labels:
        m, r = model.per_class.get(label), rule.per_class.get(label)
        mp, mr, mf, support = (m.precision, m.recall, m.f1, m.support) if m else zero
        rp, rr, rf, _ = (r.precision, r.recall, r.f1, r.support) if r else zero
        lines.append(
            f"{label:<{width}}  {mp:7.3f} {mr:5.3f} {mf:5.3f}   {rp:6.3f} {rr:5.3f} {rf:5.3f}"
            f"  {support:7d}"
        )
    lines.append(
        f"{'macro F1':<{width}}  {'':13} {model.macro_f1:5.3f}   {'':12} {rule.macro_f1:5.3f}"
    )
    lines.append(
        f"{'accuracy':<{width}}  {'':13} {model.accuracy:5.3f}   {'':12} {rule.accuracy:5.3f}"
    )
    return "\n".join(lines)


def latency(call: Callable[[str], object], texts: Sequence[str], runs: int) -> tuple[float, float]:
    """Median over ``runs`` of the (median, p99) microseconds of one call per text."""
    medians: list[float] = []
    p99s: list[float] = []
    for _ in range(runs):
        times: list[int] = []
        for text in texts:
            started = time.perf_counter_ns()
            call(text)
            times.append(time.perf_counter_ns() - started)
        times.sort()
        medians.append(times[len(times) // 2] / 1000)
        p99s.append(times[min(len(times) - 1, int(len(times) * 0.99))] / 1000)
    return statistics.median(medians), statistics.median(p99s)


def _timed_training(examples: Sequence[LabelledText]) -> tuple[IntentModel, float]:
    started = time.perf_counter()
    model = IntentModel.trained(examples)
    return model, time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 latency runs instead of 5")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    runs = 2 if args.quick else RUNS

    examples = load_examples()
    train, test = split_examples(examples, test_share=0.25, seed=0)
    model, train_s = _timed_training(train)
    _, full_s = _timed_training(examples)
    print(f"labelled set: {len(examples)} texts; train {len(train)}, held out {len(test)}")
    print(f"training: {train_s:.2f} s on the train split, {full_s:.2f} s on the whole set\n")

    report = evaluate(model, test)
    rules = [keyword_rule(e.text) for e in test]
    rule_kind = score([e.kind for e in test], [k for k, _ in rules])
    rule_category = score([e.category for e in test], [c for _, c in rules])
    print(side_by_side("kind", report.kind, rule_kind), "\n")
    print(side_by_side("category", report.category, rule_category), "\n")
    verdict = "meets" if report.kind.macro_f1 >= TARGET_KIND_MACRO_F1 else "MISSES"
    print(
        f"kind macro F1 {report.kind.macro_f1:.3f} {verdict} the {TARGET_KIND_MACRO_F1} target "
        f"({report.kind.macro_f1 / rule_kind.macro_f1:.2f}x the keyword rule's "
        f"{rule_kind.macro_f1:.3f})\n"
    )

    texts = [e.text for e in test]
    model.cache_size = 0  # every call a miss
    uncached = latency(model.classify, texts, runs)
    model.cache_size = 4096
    for text in texts:
        model.classify(text)
    cached = latency(model.classify, texts, runs)
    rule = latency(keyword_rule, texts, runs)
    print(f"per classify, {len(texts)} held-out texts, median of {runs} runs:")
    print(f"  model, uncached  median {uncached[0]:7.1f} us   p99 {uncached[1]:7.1f} us")
    print(f"  model, cached    median {cached[0]:7.1f} us   p99 {cached[1]:7.1f} us")
    print(f"  keyword rule     median {rule[0]:7.1f} us   p99 {rule[1]:7.1f} us")
    print(f"  uncached / rule: {uncached[0] / rule[0]:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
