"""Next need: the customer's likely next touchpoint or product category.

An interpolated trigram (Markov) model over tokens — event names for
touchpoints, product categories for needs — learned across the population,
with the customer's own history as a Dirichlet layer on top:

    P1(y)        = (c(y) + 1) / (N + V + 1)
    P2(y | a)    = (c(a, y) + beta * P1(y)) / (c(a) + beta)
    P3(y | b, a) = (c(b, a, y) + beta * P2(y | a)) / (c(b, a) + beta)
    P(y)         = (own(y) + gamma * P3(y | b, a)) / (own + gamma)

``x`` carries the context — ``last`` and ``prev`` tokens — and the
customer's own evidence as ``own:<token>`` counts. The distribution returned
covers the candidates (successors of the context, the customer's own tokens
and the most popular ones), renormalised over them. Memory is bounded: the
vocabulary, the contexts and the successors kept per context are capped.

>>> model = NextNeed()
>>> for _ in range(5):
...     model.learn_one({"last": "Product Viewed"}, "Product Added")
...     model.learn_one({"last": "Product Added"}, "Checkout Started")
>>> model.predict_one({"last": "Product Viewed"})
'Product Added'
"""

from __future__ import annotations

from collections import _count_elements  # type: ignore[attr-defined]  # always defined
from collections.abc import Mapping, Sequence
from itertools import compress, repeat
from operator import eq, itemgetter
from typing import Any

from river import base
from river.base.typing import ClfTarget

from momently.predict.types import Features

_SEP = "\x1f"
_EMPTY: dict[str, int] = {}  # never written to
_SORT_ALL = 10
"""Up to this many candidates :func:`top_k` sorts them all by name. Above it, finding the
few at the top first is cheaper: 0.62-0.66x the time of sorting all at 25 candidates,
0.77-0.79x at 16, 0.90-0.92x at 12, but 1.00-1.22x at 6-10 (the synthetic population's
5-8; in-process, alternated, on 2,000 random score dicts of each size)."""


class NextNeed(base.Classifier):
    """Which token comes next, given the last two and the customer's own counts.

    Parameters
    ----------
    smoothing
        ``beta``: pseudo-counts with which a shorter context is a prior for a longer one.
    own_strength
        ``gamma``: pseudo-counts with which the population is a prior for the customer.
    max_tokens, max_contexts, max_successors
        Caps on the vocabulary, on the contexts with counts, and on the successors
        kept per context (the rarest is dropped first).
    candidates
        How many of the most popular tokens are always candidates.
    """

    def __init__(
        self,
        smoothing: float = 2.0,
        own_strength: float = 3.0,
        max_tokens: int = 1024,
        max_contexts: int = 8192,
        max_successors: int = 24,
        candidates: int = 5,
    ) -> None:
        self.smoothing = smoothing
        self.own_strength = own_strength
        self.max_tokens = max_tokens
        self.max_contexts = max_contexts
        self.max_successors = max_successors
        self.candidates = candidates
        self.counts: dict[str, int] = {}
        self.total = 0
        self.successors: dict[str, dict[str, int]] = {}  # "a" and "b<SEP>a" -> next -> count
        self.context_totals: dict[str, int] = {}
        self._popular: list[str] | None = None

    # The first ``candidates`` of ``_popular``, always scored; dropped with it.
    _always: dict[str, int] | None = None

    @property
    def _multiclass(self) -> bool:
        return True

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_popular"] = state["_always"] = None  # caches: not what the model knows
        return state

    def _add(self, context: str, y: str) -> None:
        following = self.successors.get(context)
        if following is None:
            if len(self.successors) >= self.max_contexts:
                return
            following = self.successors[context] = {}
        following[y] = following.get(y, 0) + 1
        self.context_totals[context] = self.context_totals.get(context, 0) + 1
        if len(following) > self.max_successors:
            rarest = min(following.items(), key=lambda kv: (kv[1], kv[0]))[0]
            del following[rarest]

    def learn_one(self, x: Features, y: ClfTarget) -> None:
        if not isinstance(y, str):
            return
        last, prev = x.get("last"), x.get("prev")
        self.learn_next(
            last if isinstance(last, str) else None, prev if isinstance(prev, str) else None, y
        )

    def learn_next(self, last: str | None, prev: str | None, y: str) -> None:
        """``learn_one({"last": last, "prev": prev}, y)`` without the features dict."""
        counts = self.counts
        count = counts.get(y, 0)
        if not count and len(counts) >= self.max_tokens:
            return
        count = counts[y] = count + 1
        self.total += 1
        self._refresh_popular(y, count)
        if last is not None:
            self._add(last, y)
            if prev is not None:
                self._add(prev + _SEP + last, y)

    def _refresh_popular(self, y: str, count: int) -> None:
        """Drop the cached ranking only if ``y``'s new count can change it."""
        ranked = self._popular
        if ranked is None:
            return
        if y in ranked:
            i = ranked.index(y)
            if i > 0 and self.counts[ranked[i - 1]] <= count:
                self._popular = self._always = None
        elif len(ranked) < max(self.candidates, 1) or self.counts[ranked[-1]] <= count:
            self._popular = self._always = None

    def popular(self, k: int) -> list[str]:
        """The ``k`` most frequent tokens (cached until the next update)."""
        if self._popular is None or len(self._popular) < min(k, len(self.counts)):
            self._popular = sorted(self.counts, key=lambda t: (-self.counts[t], t))[
                : max(k, self.candidates)
            ]
            self._always = None
        return self._popular[:k]

    def scores(
        self, last: str | None, prev: str | None, own: Mapping[str, float]
    ) -> dict[str, float]:
        """P(next = token) for each candidate token, not renormalised."""
        beta, gamma = self.smoothing, self.own_strength
        one = two = _EMPTY
        n1 = n2 = 0
        if last:
            successors, totals = self.successors, self.context_totals
            one = successors.get(last, _EMPTY)
            n1 = totals.get(last, 0)
            if prev:
                key = prev + _SEP + last
                two = successors.get(key, _EMPTY)
                n2 = totals.get(key, 0)
        # The recursion of the module docstring, expanded: each level's count times
        # the product of the weights above it, plus the add-one term.
        a3 = 1.0 / (sum(own.values()) + gamma)
        c2 = gamma * a3 / (n2 + beta)  # weight of the trigram count
        c1 = c2 * beta / (n1 + beta)  # weight of the bigram count
        c0 = c1 * beta / (self.total + len(self.counts) + 1)  # weight of count + 1
        always = self._always
        if always is None:
            always = self._always = dict.fromkeys(self.popular(self.candidates), 0)
        count = self.counts.get
        # A dict, not a set: its order (hence ties in predict_one) must not depend on hashing.
        # The bigram's successors, most of the candidates, with both their terms at once
        # (the same sum, in the same order, as adding the bigram's term to the first).
        found = {t: (count(t, 0) + 1) * c0 + n * c1 for t, n in one.items()}
        for t in {**two, **own, **always}:
            if t not in found:
                found[t] = (count(t, 0) + 1) * c0
        for t, n in two.items():
            found[t] += n * c2
        for t, w in own.items():  # the customer's own layer, on their few tokens only
            found[t] += w * a3
        return found

    def predict_proba_one(self, x: Features, **kwargs: Any) -> dict[ClfTarget, float]:
        last, prev = x.get("last"), x.get("prev")
        own = {
            k[4:]: float(v)
            for k, v in x.items()
            if isinstance(k, str) and k.startswith("own:") and isinstance(v, int | float) and v > 0
        }
        scores = self.scores(
            last if isinstance(last, str) else None, prev if isinstance(prev, str) else None, own
        )
        total = sum(scores.values())
        return {t: p / total for t, p in scores.items()} if total > 0 else {}


def in_top_k(scores: Mapping[str, float], token: str, k: int) -> bool:
    """Whether ``token`` is among the ``k`` best (ties broken by name, as :func:`top_k`)."""
    mine = scores.get(token)
    if mine is None:
        return False
    better = 0
    for t, p in scores.items():
        if p > mine or (p == mine and t < token):
            better += 1
            if better >= k:
                return False
    return True


def top_k(scores: Mapping[str, float], k: int) -> list[tuple[str, float]]:
    """The ``k`` best tokens with their probabilities renormalised over the candidates."""
    total = sum(scores.values())
    if total <= 0:
        return []
    if len(scores) > _SORT_ALL and len(scores) > k:
        # Only the tokens scoring at least the k-th best can be among the k best: sort
        # the floats (cheap), then by name only those few, not every candidate.
        cut = sorted(scores.values())[-k]
        best = sorted([(t, p) for t, p in scores.items() if p >= cut])
    else:
        best = sorted(scores.items())
    best.sort(key=itemgetter(1), reverse=True)  # by name, then (stable) by probability
    return [(t, p / total) for t, p in best[:k]]


def successors_in(history: Sequence[str], last: str | None) -> dict[str, float]:
    """The customer's own evidence for touchpoints: what followed ``last`` in their history."""
    own: dict[str, float] = {}
    if last is None or last not in history[:-1]:
        return own
    # each token's successor where the token is ``last``, counted in C (whole counts)
    _count_elements(own, compress(history[1:], map(eq, history[:-1], repeat(last))))
    return own


def frequencies_in(history: Sequence[str]) -> dict[str, float]:
    """The customer's own evidence for categories: how often each came up lately."""
    own: dict[str, float] = {}
    _count_elements(own, history)  # Counter's counting loop, in C, without Counter's overhead
    return own


def context_x(history: Sequence[str]) -> Features:
    """The context features of a history: its last two tokens."""
    x: Features = {}
    if history:
        x["last"] = history[-1]
        if len(history) > 1:
            x["prev"] = history[-2]
    return x


def context_of(history: Sequence[str]) -> tuple[str | None, str | None]:
    """The last and the one-before-last tokens of a history."""
    last = history[-1] if history else None
    prev = history[-2] if len(history) > 1 else None
    return last, prev


def own_evidence(history: Sequence[str], sequence: bool) -> dict[str, float]:
    """The customer's own evidence: what followed their last touchpoint, or how often
    each category came up."""
    if sequence:
        return successors_in(history, history[-1] if history else None)
    return frequencies_in(history)
