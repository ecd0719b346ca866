"""Arbitration: one moment in, one decision out — an offer on a channel at a time, or silence.

For every offer eligible for the moment and the customer, and every channel
the offer has a message for (or that channel's fallback when it is
unreachable), the best slot is found among *now* and the top of each local
hour until the moment (or the offer's time-to-live, or the horizon) runs out,
skipping slots a hard constraint forbids (:mod:`momently.decide.constraints`;
the search is :mod:`momently.decide.search`, the slots :mod:`momently.decide.slots`).
A candidate's score is::

    relevance × propensity × value × priority × timing − costs − fatigue × fatigue_cost

* **relevance** — P(the customer engages with this offer, here), from the
  contextual bandit (:mod:`momently.decide.bandit`) over customer, moment and
  offer features, offset by the moment's confidence so a cold start is sane;
* **propensity** — P(convert within the horizon), from the predictors, at
  least the moment's confidence (a moment *is* evidence of a need);
* **timing** — the customer's receptivity at the slot relative to their
  average, times the channel's affinity relative to their average channel, times how much of
  the moment is left (linear decay to its expiry);
* **fatigue** — P(one more message makes them opt out) times what an opt-out
  costs the brand.

Silence scores 0; a candidate must beat it by ``min_score``. When something
beats silence, an epsilon share of choices explores uniformly among the
candidates that beat it, and the exact probability of the pick is logged, so
any other policy can be evaluated offline on these decisions. The random draw
is a hash of the decision id: a replay picks the same.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping, Sequence
from typing import Final, Protocol

from momently.decide.constraints import Contacts, cap_keep_ms
from momently.decide.holdout import in_holdout
from momently.decide.offers import Offer, ProfileTest, offer_features
from momently.decide.records import Candidate, Decision, Holdout, decision_id
from momently.decide.search import Routes, Search
from momently.decide.signals import Signals
from momently.decide.slots import HOUR_MS, MAX_SLOTS
from momently.decide.spec import DecideSpec
from momently.moments.model import MOMENT_KINDS, Moment
from momently.state.profile import Profile

__all__ = [
    "EXPLAINED",
    "MAX_SLOTS",
    "SILENCE",
    "Arbiter",
    "PriorRelevance",
    "Relevance",
    "context_features",
    "offer_features",
    "relevance_prior",
]

EXPLAINED: Final = 5  # candidates whose score is broken into its parts
SILENCE: Final = "(silence)"


class Relevance(Protocol):
    """Estimates P(engage) for each offer in a context (the bandit, or a prior)."""

    def estimate(
        self, context: Mapping[str, float], actions: Sequence[Mapping[str, float]], prior: float
    ) -> list[float]: ...


class PriorRelevance:
    """No model: every offer is as relevant as the moment is sure."""

    def estimate(
        self, context: Mapping[str, float], actions: Sequence[Mapping[str, float]], prior: float
    ) -> list[float]:
        return [prior] * len(actions)


def relevance_prior(moment: Moment) -> float:
    """P(engage) before the bandit knows anything: half the moment's confidence."""
    return max(0.01, min(1.0, moment.confidence * 0.5))


def context_features(moment: Moment, profile: Profile | None, signals: Signals) -> dict[str, float]:
    """What the bandit knows of the customer and the moment."""
    features = {
        f"kind={moment.kind}": 1.0,
        f"moment={moment.name}": 1.0,
        "confidence": moment.confidence,
        "propensity": signals.propensity,
        "fatigue": signals.fatigue,
        "active": 1.0 if signals.active_device else 0.0,
    }
    category = moment.details.get("category")
    if isinstance(category, str):
        features[f"category={category}"] = 1.0
    if profile is not None:
        for key in ("segment", "persona", "plan"):
            stamped = profile.traits.get(key)
            if stamped is not None and isinstance(stamped.value, str):
                features[f"{key}={stamped.value}"] = 1.0
    return features


class Arbiter:
    """A playbook's decision section, compiled once; :meth:`decide` is pure."""

    def __init__(self, spec: DecideSpec, relevance: Relevance | None = None) -> None:
        self.spec = spec
        self.relevance = relevance or PriorRelevance()
        tests: dict[str, ProfileTest] = {}
        self.offers = [Offer.of(o, tests) for o in spec.offers]
        self.by_kind = {
            kind: [o for o in self.offers if not o.spec.target.kinds or kind in o.spec.target.kinds]
            for kind in MOMENT_KINDS
        }
        self.channels = {c.name: c for c in spec.channels}
        self.routes = Routes(spec)
        all_caps = list(spec.caps) + [c for o in spec.offers for c in o.caps]
        self.keep_ms = cap_keep_ms(all_caps)

    def decide(
        self,
        moment: Moment,
        profile: Profile | None,
        signals: Signals,
        contacts: Contacts,
        now_ms: int,
    ) -> Decision:
        """Choose for ``moment``: send now, schedule, or stay silent — with the reasons."""
        did = decision_id(moment.moment_id)
        base = functools.partial(
            Decision,
            decision_id=did,
            customer_id=moment.customer_id,
            moment_id=moment.moment_id,
            moment_name=moment.name,
            moment_kind=moment.kind,
            at_ms=now_ms,
            expires_ms=moment.expires_ms,
        )
        context = context_features(moment, profile, signals)
        if moment.expires_ms <= now_ms:
            return base(
                action="silent", reasons=["the moment expired before a decision"],
                features=context, status="silent",
            )  # fmt: skip
        arb = self.spec.arbitration
        candidates: list[Candidate] = []
        fits = []
        same_kind = self.by_kind[moment.kind]
        tested: dict[ProfileTest, bool] = {}
        for offer in same_kind:
            if offer.plain:
                fits.append(offer)
                continue
            why = offer.why_not(moment, profile, tested)
            if why is None:
                fits.append(offer)
            else:
                candidates.append(Candidate(offer=offer.spec.id, refused=f"eligibility: {why}"))
        prior = relevance_prior(moment)
        relevance = self.relevance.estimate(context, [o.features for o in fits], prior)
        search = Search(self.spec, self.routes, moment, profile, signals, contacts, now_ms)
        scored: list[tuple[float, Candidate, Offer]] = []
        for offer, rel in zip(fits, relevance, strict=True):
            best = search.best(offer, rel)
            candidates.append(best)
            if best.refused is None:
                scored.append((best.score, best, offer))
        beating = [s for s in scored if s[0] > arb.min_score]
        beating.sort(key=lambda s: (-s[0], s[1].offer))
        for _, top, _ in beating[:EXPLAINED]:
            search.explain(top)
        candidates.append(Candidate(offer=SILENCE, score=0.0))
        bound = sorted(search.bound)
        others = len(self.offers) - len(same_kind)
        notes = [f"{others} other offers are not for {moment.kind} moments"] if others else []
        if not beating:
            reason = (
                "no offer fits this moment"
                if not fits
                else "staying silent scores higher than every allowed candidate"
                if scored
                else "every fitting offer is ruled out by a constraint"
            )
            return base(
                action="silent", reasons=[reason, *notes], candidates=candidates, bound=bound,
                features=context, status="silent",
            )  # fmt: skip
        index, probability = _explore(len(beating), arb.exploration, did)
        score, chosen, offer = beating[index]
        reasons = [
            f"{chosen.offer} scored {score:.3f} against silence 0"
            + (" (exploring)" if index > 0 else ""),
            _when_reason(chosen, now_ms),
            f"channel {chosen.channel}: {chosen.channel_reason}",
            *notes,
        ]
        channel = self.channels[chosen.channel or ""]
        device = signals.active_device if channel.kind in ("in_app", "push") else None
        holdout: Holdout | None = None
        if in_holdout(moment.customer_id, self.spec.holdout, "global"):
            holdout = "global"
        elif in_holdout(moment.customer_id, offer.spec.holdout, offer.spec.id):
            holdout = "offer"
        if holdout is not None:
            reasons.append(f"held out ({holdout} control group): logged, not sent")
        send_at = chosen.send_at_ms if chosen.send_at_ms is not None else now_ms
        return base(
            action="send" if send_at <= now_ms else "schedule",
            offer=chosen.offer,
            channel=chosen.channel,
            device=device,
            send_at_ms=send_at,
            probability=probability,
            score=score,
            holdout=holdout,
            reasons=reasons,
            candidates=candidates,
            bound=bound,
            features=context,
            status="held_out" if holdout else "decided",
        )


def _when_reason(candidate: Candidate, now: int) -> str:
    at = candidate.send_at_ms if candidate.send_at_ms is not None else now
    if at <= now:
        return "now: no later slot before the moment expires scores higher"
    hours = (at - now) / HOUR_MS
    receptive = candidate.parts.get("receptivity", 1.0)
    return f"in {hours:.1f} h: receptivity {receptive:.2f}× their average then beats sending now"


def _explore(n: int, epsilon: float, key: str) -> tuple[int, float]:
    """Epsilon-greedy over ``n`` ranked candidates: (pick, its exact probability)."""
    if n == 1:
        return 0, 1.0
    probs = [epsilon / n + (1.0 - epsilon if i == 0 else 0.0) for i in range(n)]
    u = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big") / 2**64
    cumulative = 0.0
    for i, p in enumerate(probs):
        cumulative += p
        if u < cumulative:
            return i, p
    return n - 1, probs[-1]
