"""Intent from text: which micro-moment a search, a page or a post shows, and for what.

Two river pipelines, one for the kind (know, go, do, buy, or none) and one for
the product category (see :mod:`momently.moments.intent_data` for features and
data), are trained at load from the packaged labelled set in a fixed order, so
every process gets the same model (about 1.5 s).

A learned model, not a keyword list: it weighs every word against the others,
so "my toaster broke and I have no idea what to buy" is a *buy*, and it keeps
learning (:meth:`IntentModel.learn`). Results are cached in a small LRU because
the same queries come back again and again in real traffic. The caller applies
:class:`IntentSettings` (:func:`detect_intent` does) and turns an
:class:`Intent` into a moment.

>>> model = IntentModel.trained()
>>> intent = model.classify("toaster shop near me")
>>> intent.kind, intent.category
('go', 'kitchen-appliances')
>>> model.classify("order status 12345") is None
True
"""

from __future__ import annotations

import random
import re
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import parse_qsl, urlsplit

from pydantic import Field
from river import compose

from momently.events import Event
from momently.moments.intent_data import (
    CATEGORIES,
    NONE,
    EvaluationReport,
    LabelledText,
    WeightTable,
    category_pipeline,
    kind_pipeline,
    load_examples,
    normalise,
    score,
    split_examples,
)
from momently.moments.spec import Duration, SpecModel

__all__ = [
    "CART_EVENTS",
    "Intent",
    "IntentModel",
    "IntentSettings",
    "LabelledText",
    "detect_intent",
    "evaluate",
    "event_intent",
    "event_text",
    "load_examples",
    "normalise",
    "split_examples",
]

CART_EVENTS: Final = frozenset(
    {"Product Added", "Cart Viewed", "Checkout Started", "Payment Info Entered"}
)
"""Track events that are a buy intent in themselves, whatever their text."""
SEARCH_EVENT: Final = "Products Searched"
TEXT_EVENTS: Final = frozenset({"Social Post", "Support Message"})
_SEARCH_KEYS: Final = frozenset({"q", "query", "search", "s", "k", "keyword", "keywords", "term"})


class IntentSettings(SpecModel):
    """The playbook's ``detectors.intent`` section."""

    enabled: bool = True
    min_confidence: float = 0.5
    """Below this probability of its kind, a text is no moment."""
    expiry: Duration = Field(default="2h", validate_default=True)
    """How long an intent moment lives."""


@dataclass(frozen=True, slots=True)
class Intent:
    """What a text shows: a moment kind and a product category, each with its probability.

    ``category`` is None when the category model's best guess is *no category*;
    ``category_confidence`` is the probability of whichever it chose.
    """

    kind: str
    confidence: float
    category: str | None
    category_confidence: float
    text: str


class IntentModel:
    """The kind and category pipelines, with an LRU of recent results.

    ``kind_model`` and ``category_model`` are river pipelines from raw text to
    label and follow river's protocol (``learn_one``, ``predict_one``,
    ``predict_proba_one``); ones passed in must be built like
    :func:`kind_pipeline` (normaliser, features, softmax regression).
    :meth:`classify` reads the same weights through a per-feature copy
    (:class:`WeightTable`), about twice as fast, kept in step by :meth:`learn`.
    """

    def __init__(
        self,
        kind_model: compose.Pipeline | None = None,
        category_model: compose.Pipeline | None = None,
        *,
        cache_size: int = 4096,
    ) -> None:
        if cache_size < 0:
            raise ValueError("cache_size may not be negative")
        self.kind_model = kind_pipeline() if kind_model is None else kind_model
        self.category_model = category_pipeline() if category_model is None else category_model
        self.cache_size = cache_size
        self._compile()

    def _compile(self) -> None:
        self._kind_steps = list(self.kind_model.steps.values())
        self._category_steps = list(self.category_model.steps.values())
        self._kind_table = WeightTable(self._kind_steps[-1])
        self._category_table = WeightTable(self._category_steps[-1])
        self._cache: OrderedDict[str, Intent | None] = OrderedDict()

    @classmethod
    def trained(
        cls, examples: Iterable[LabelledText] | None = None, *, epochs: int = 2, seed: int = 0
    ) -> IntentModel:
        """A model trained on ``examples`` (default: the packaged set), the same every time."""
        if epochs < 1:
            raise ValueError("epochs must be at least 1")
        data = load_examples() if examples is None else list(examples)
        model = cls()
        rng = random.Random(seed)  # noqa: S311 - a reproducible order, not a secret
        order: list[int] = []
        for _ in range(epochs):
            epoch = list(range(len(data)))
            rng.shuffle(epoch)  # a fixed seed: the same order, so the same weights
            order.extend(epoch)
        for steps, labels in (
            (model._kind_steps, [e.kind for e in data]),
            (model._category_steps, [e.category for e in data]),
        ):
            # Each text is turned into features once, not once per epoch.
            features = [_features(steps, e.text) for e in data]
            classifier = steps[-1]
            for i in order:
                classifier.learn_one(features[i], labels[i])
        model._compile()
        return model

    def learn(self, example: LabelledText) -> None:
        """Learn from one more labelled text (and forget cached results)."""
        for steps, table, label in (
            (self._kind_steps, self._kind_table, example.kind),
            (self._category_steps, self._category_table, example.category),
        ):
            x = _features(steps, example.text)
            steps[-1].learn_one(x, label)
            table.sync(x)
        self._cache.clear()

    def predict(self, text: str) -> tuple[tuple[str, float], tuple[str, float]]:
        """The best (kind, probability) and (category, probability), ``none`` included."""
        return self._predict(normalise(text))

    def _predict(self, plain: str) -> tuple[tuple[str, float], tuple[str, float]]:
        kind = self._kind_table.best(_features(self._kind_steps, plain, normalised=True))
        return kind, self._category(plain)

    def predict_category(self, text: str) -> tuple[str, float]:
        """The best category of ``text`` and its probability, ``none`` included."""
        return self._category(normalise(text))

    def _category(self, plain: str) -> tuple[str, float]:
        return self._category_table.best(_features(self._category_steps, plain, normalised=True))

    def classify(self, text: str) -> Intent | None:
        """The intent of ``text``; None when it is empty or no micro-moment."""
        cache = self._cache
        if text in cache:
            cache.move_to_end(text)
            return cache[text]
        intent = self._classify(text)
        cache[text] = intent
        if len(cache) > self.cache_size:
            cache.popitem(last=False)
        return intent

    def _classify(self, text: str) -> Intent | None:
        plain = normalise(text)
        if not plain:
            return None
        (kind, confidence), (category, category_confidence) = self._predict(plain)
        if kind == NONE:
            return None
        return Intent(
            kind=kind,
            confidence=confidence,
            category=None if category == NONE else category,
            category_confidence=category_confidence,
            text=text,
        )

    def __getstate__(self) -> dict[str, Any]:
        # The tables and the cache are derived from the pipelines: rebuilt on load.
        return {
            "kind_model": self.kind_model,
            "category_model": self.category_model,
            "cache_size": self.cache_size,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.kind_model = state["kind_model"]
        self.category_model = state["category_model"]
        self.cache_size = state["cache_size"]
        self._compile()


def _features(steps: Sequence[Any], text: str, *, normalised: bool = False) -> dict[Any, float]:
    """Run ``text`` through a pipeline's transformers (the first one normalises)."""
    x: Any = text
    for step in steps[1:-1] if normalised else steps[:-1]:
        x = step.transform_one(x)
    features: dict[Any, float] = x
    return features


def _search_terms(search: str) -> str:
    """The search words in a URL query string (``?q=buy+toaster``), or the string itself."""
    if "=" not in search:
        return search.lstrip("?")
    pairs = parse_qsl(search.lstrip("?"))
    return " ".join(value for key, value in pairs if key.lower() in _SEARCH_KEYS)


def _path_words(path: str) -> str:
    """The words of a URL path: ``/products/breville-4-slice-toaster`` -> its words."""
    parts = re.split(r"[/\-_.+]+", urlsplit(path).path)
    return " ".join(p for p in parts if p.isalpha() and p.lower() not in {"html", "htm", "php"})


def _text(value: object) -> str:
    return value.strip() if isinstance(value, str) else ""


def event_text(event: Event) -> str | None:
    """The text of an event that says what its customer is after, or None."""
    properties = event.properties
    if event.type == "track":
        if event.event == SEARCH_EVENT:
            return _text(properties.get("query")) or None
        if event.event in TEXT_EVENTS:
            return _text(properties.get("text")) or None
        return None
    if event.type not in ("page", "screen"):
        return None
    path = _text(properties.get("path")) or _text(properties.get("url"))
    pieces = [
        _text(event.name) or _text(properties.get("name")),
        _text(properties.get("title")),
        _search_terms(_text(properties.get("search"))),
        _path_words(path) if path else "",
    ]
    kept: list[str] = []
    seen = ""
    for piece in pieces:
        plain = normalise(piece)
        if plain and plain not in seen:  # the title often repeats the name
            kept.append(piece)
            seen += " " + plain
    return " - ".join(kept) or None


def _products(properties: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    products = properties.get("products")
    if isinstance(products, list):
        return [p for p in products if isinstance(p, Mapping)]
    return [properties]


def _cart_intent(model: IntentModel, event: Event) -> Intent:
    """A cart or checkout event: a buy for sure; the category from the data or the model."""
    products = _products(event.properties)
    names = [n for n in (_text(p.get("name")) for p in products) if n]
    labels = [c for c in (_text(p.get("category")) for p in products) if c]
    text = ", ".join(names) or str(event.event)
    category: str | None = None
    category_confidence = 0.0
    known = {normalise(c).replace(" ", "-"): c for c in CATEGORIES}
    for label in labels:
        if (slug := normalise(label).replace(" ", "-")) in known:
            category, category_confidence = known[slug], 1.0
            break
    else:
        # A shop's own category ("Toasters", "Audio") or the product names, read by the model.
        hint = " ".join([*labels, *names])
        if normalise(hint):
            guess, probability = model.predict_category(hint)
            if guess != NONE:
                category, category_confidence = guess, probability
    return Intent("buy", 1.0, category, category_confidence, text)


def event_intent(model: IntentModel, event: Event) -> Intent | None:
    """The intent an event shows, or None."""
    if event.type == "track" and event.event in CART_EVENTS:
        return _cart_intent(model, event)
    text = event_text(event)
    return None if text is None else model.classify(text)


def detect_intent(model: IntentModel, event: Event, settings: IntentSettings) -> Intent | None:
    """:func:`event_intent`, kept only when the settings enable it and it is sure enough."""
    if not settings.enabled:
        return None
    intent = event_intent(model, event)
    if intent is None or intent.confidence < settings.min_confidence:
        return None
    return intent


def evaluate(model: IntentModel, examples: Sequence[LabelledText]) -> EvaluationReport:
    """Per-class precision, recall and F1, and accuracy, of kind and category on ``examples``."""
    kinds: list[str] = []
    categories: list[str] = []
    for example in examples:
        (kind, _), (category, _) = model.predict(example.text)
        kinds.append(kind)
        categories.append(category)
    return EvaluationReport(
        kind=score([e.kind for e in examples], kinds),
        category=score([e.category for e in examples], categories),
    )
