"""What the intent detector learns from: the labelled set, the text features, the scores.

The set ships with the package (``data/intent.tsv``: ``text``, ``kind``,
``category``) so the model can be trained at start-up. A text becomes features
in a river pipeline:

* **kind** (know, go, do, buy, or none): word unigrams and bigrams feeding a
  :class:`river.linear_model.SoftmaxRegression` (AdaGrad);
* **category** (the retail taxonomy, or none): the same words plus character
  4-grams of the longer words, which carry typos and plurals ("toster",
  "donuts"), feeding another softmax regression (SGD).

The split and the per-class scores are what the tests and
``benchmarks/bench_intent.py`` report.

>>> report = score(["buy", "go", "buy"], ["buy", "buy", "buy"])
>>> report.accuracy, report.per_class["buy"].recall
(0.6666666666666666, 1.0)
"""

from __future__ import annotations

import math
import random
import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, Final

from river import compose, feature_extraction, linear_model, optim

INTENT_KINDS: Final = ("know", "go", "do", "buy")
NONE: Final = "none"
"""The label of a text that is no micro-moment, and of a text with no category."""
CATEGORIES: Final = (
    "kitchen-appliances",
    "orthodontics",
    "bakery-cafe",
    "electronics",
    "fashion",
    "home-garden",
    "beauty",
    "travel",
    "grocery",
)
_NOT_WORDS: Final = re.compile(r"[\W_]+")
_APOSTROPHES: Final = str.maketrans("", "", "'\u2019`")
_BIAS: Final = {"__bias__": 1.0}
_DATA_PACKAGE: Final = "momently.moments"
_DATA_FILE: Final = ("data", "intent.tsv")


@dataclass(frozen=True, slots=True)
class LabelledText:
    """One labelled example: the text, its kind (or ``none``) and its category (or ``none``)."""

    text: str
    kind: str
    category: str


def parse_examples(lines: Iterable[str]) -> list[LabelledText]:
    """Examples from tab-separated lines with a ``text kind category`` header."""
    examples: list[LabelledText] = []
    kinds = {*INTENT_KINDS, NONE}
    categories = {*CATEGORIES, NONE}
    for number, line in enumerate(lines, start=1):
        line = line.rstrip("\r\n")
        if number == 1 or not line.strip():
            continue  # the header, and blank lines
        parts = line.split("\t")
        if len(parts) != 3:
            raise ValueError(f"line {number}: expected text, kind and category, got {line!r}")
        text, kind, category = parts
        if kind not in kinds:
            raise ValueError(f"line {number}: unknown kind {kind!r}")
        if category not in categories:
            raise ValueError(f"line {number}: unknown category {category!r}")
        examples.append(LabelledText(text, kind, category))
    return examples


def load_examples() -> list[LabelledText]:
    """The labelled set that ships with the package, in file order."""
    path = resources.files(_DATA_PACKAGE).joinpath(*_DATA_FILE)
    return parse_examples(path.read_text(encoding="utf-8").splitlines())


def split_examples(
    examples: Sequence[LabelledText], test_share: float = 0.25, seed: int = 0
) -> tuple[list[LabelledText], list[LabelledText]]:
    """A (train, test) split, stratified by kind and the same for the same seed."""
    if not 0.0 < test_share < 1.0:
        raise ValueError("test_share must lie strictly between 0 and 1")
    rng = random.Random(seed)  # noqa: S311 - a reproducible split, not a secret
    by_kind: dict[str, list[int]] = defaultdict(list)
    for index, example in enumerate(examples):
        by_kind[example.kind].append(index)
    held_out: set[int] = set()
    for kind in sorted(by_kind):  # sorted: the rng is drawn in the same order every run
        indices = by_kind[kind]
        rng.shuffle(indices)
        held_out.update(indices[: round(len(indices) * test_share)])
    train = [e for i, e in enumerate(examples) if i not in held_out]
    test = [e for i, e in enumerate(examples) if i in held_out]
    return train, test


@dataclass(frozen=True, slots=True)
class ClassScores:
    """Precision, recall and F1 of one class, and how many true examples it had."""

    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True, slots=True)
class ClassificationReport:
    """Per-class scores, accuracy and macro-averaged F1 of one labelling."""

    per_class: dict[str, ClassScores]
    accuracy: float
    macro_f1: float

    def table(self, title: str = "class") -> str:
        """The report as a fixed-width text table."""
        width = max([len(title), *(len(label) for label in self.per_class)])
        lines = [f"{title:<{width}}  precision  recall     f1  support"]
        for label, s in self.per_class.items():
            figures = f"{s.precision:9.3f}  {s.recall:6.3f}  {s.f1:5.3f}  {s.support:7d}"
            lines.append(f"{label:<{width}}  {figures}")
        total = sum(s.support for s in self.per_class.values())
        lines.append(f"{'macro F1':<{width}}  {'':9}  {'':6}  {self.macro_f1:5.3f}  {total:7d}")
        lines.append(f"{'accuracy':<{width}}  {'':9}  {'':6}  {self.accuracy:5.3f}")
        return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class EvaluationReport:
    """How well a model labels a set: the kind and the category, scored apart."""

    kind: ClassificationReport
    category: ClassificationReport


def score(truth: Sequence[str], predicted: Sequence[str]) -> ClassificationReport:
    """Score predicted labels against true ones (classes: every label seen in either)."""
    if len(truth) != len(predicted):
        raise ValueError("truth and predicted must have the same length")
    labels = sorted({*truth, *predicted})
    per_class: dict[str, ClassScores] = {}
    for label in labels:
        true_pos = sum(1 for t, p in zip(truth, predicted, strict=True) if t == p == label)
        guessed = sum(1 for p in predicted if p == label)
        support = sum(1 for t in truth if t == label)
        precision = true_pos / guessed if guessed else 0.0
        recall = true_pos / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[label] = ClassScores(precision, recall, f1, support)
    correct = sum(1 for t, p in zip(truth, predicted, strict=True) if t == p)
    accuracy = correct / len(truth) if truth else 0.0
    # Macro F1 over the classes that occur in the truth: a class never present
    # would otherwise count as a zero and punish one stray guess twice.
    present = [s.f1 for s in per_class.values() if s.support]
    macro_f1 = sum(present) / len(present) if present else 0.0
    return ClassificationReport(per_class, accuracy, macro_f1)


def normalise(text: str) -> str:
    """Lower case, no accents, no punctuation or emoji, single spaces.

    >>> normalise("  Café — Won't POP!! 😩 ")
    'cafe wont pop'
    """
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(_NOT_WORDS.sub(" ", plain.lower().translate(_APOSTROPHES)).split())


def words(text: str) -> list[str]:
    """The words of a normalised text."""
    return text.split()


def char_grams(text: str) -> list[str]:
    """Character 4-grams of each word of four letters or more, with word edges marked.

    >>> char_grams("a toster")
    ['<tos', 'tost', 'oste', 'ster', 'ter>']
    """
    grams: list[str] = []
    for word in text.split():
        if len(word) >= 4:
            marked = f"<{word}>"
            grams.extend(marked[i : i + 4] for i in range(len(marked) - 3))
    return grams


def bias(_text: str) -> dict[str, float]:
    """A constant feature: river's softmax regression has no intercept of its own."""
    return _BIAS


def _function(func: Any) -> compose.FuncTransformer:
    # river annotates FuncTransformer for dicts; it applies ``func`` to whatever x is.
    return compose.FuncTransformer(func)


def _bag_of_words(tokenizer: Any, ngram_range: tuple[int, int]) -> Any:
    # Tokens are already lower case and plain: normalise() ran first.
    return feature_extraction.BagOfWords(
        lowercase=False, strip_accents=False, tokenizer=tokenizer, ngram_range=ngram_range
    )


def kind_pipeline() -> compose.Pipeline:
    """A fresh, untrained river pipeline from raw text to kind."""
    features = compose.TransformerUnion(_bag_of_words(words, (1, 2)), _function(bias))
    classifier = linear_model.SoftmaxRegression(optimizer=optim.AdaGrad(0.5), l2=1e-5)
    return compose.Pipeline(_function(normalise), features, classifier)


def category_pipeline() -> compose.Pipeline:
    """A fresh, untrained river pipeline from raw text to category."""
    features = compose.TransformerUnion(
        _bag_of_words(words, (1, 2)),
        _bag_of_words(char_grams, (1, 1)),
        _function(bias),
    )
    classifier = linear_model.SoftmaxRegression(optimizer=optim.SGD(0.2))
    return compose.Pipeline(_function(normalise), features, classifier)


class WeightTable:
    """The weights of a river softmax regression, one tuple of class weights per feature.

    river keeps a dict per class, so scoring a text looks every (feature, class)
    pair up in turn; here one lookup per feature fetches all its class weights
    and the columns are summed at C speed, several times faster. A softmax step
    changes only the weights of the features of the example it learned, so
    :meth:`sync` with those features keeps the table equal to the model.
    """

    def __init__(self, classifier: Any) -> None:
        self.classifier = classifier
        self.rebuild()

    def rebuild(self) -> None:
        """Copy every weight of the classifier (after training, or a new class)."""
        weights: Mapping[Any, Mapping[Any, float]] = self.classifier.weights
        self.labels = [str(label) for label in weights]
        columns = list(weights.values())
        self.rows: dict[Any, tuple[float, ...]] = {
            f: tuple(w.get(f, 0.0) for w in columns) for w in columns for f in w
        }

    def sync(self, x: Mapping[Any, float]) -> None:
        """Copy the weights of the features in ``x`` after the classifier learned ``x``."""
        weights: Mapping[Any, Mapping[Any, float]] = self.classifier.weights
        if len(weights) != len(self.labels):
            self.rebuild()
            return
        columns = list(weights.values())
        for f in x:
            self.rows[f] = tuple(w.get(f, 0.0) for w in columns)

    def best(self, x: Mapping[Any, float]) -> tuple[str, float]:
        """The most probable class for features ``x``, and its probability."""
        if not self.labels:
            return NONE, 0.0
        table = self.rows
        rows = [
            row if v == 1 else tuple(v * w for w in row)  # bag-of-words counts are mostly 1
            for f, v in x.items()
            if (row := table.get(f)) is not None
        ]
        logits = [sum(column) for column in zip(*rows, strict=True)] if rows else []
        if not logits:
            return self.labels[0], 1.0 / len(self.labels)
        top = max(range(len(logits)), key=logits.__getitem__)
        # softmax(top) = 1 / sum(exp(logit - logit_top)): no overflow for any logits
        return self.labels[top], 1.0 / sum(math.exp(z - logits[top]) for z in logits)
