"""Arbitration: one moment in, one decision out — an offer on a channel at a time, or silence.

For every offer eligible for the moment and the customer, and every channel
the offer has a message for (or that channel's fallback when it is
unreachable), the best slot is found among *now* and the top of each local
hour until the moment (or the offer's time-to-live, or the horizon) runs out,
skipping slots a hard constraint forbids (:mod:`momently.decide.constraints`).
A candidate's score is::

    relevance × propensity × value × priority × timing − costs − fatigue × fatigue_cost

* **relevance** — P(the customer engages with this offer, here), from the
  contextual bandit (:mod:`momently.decide.bandit`) over customer, moment and
  offer features, offset by the moment's confidence so a cold start is sane;
* **propensity** — P(convert within the horizon), from the predictors, at
  least the moment's confidence (a moment *is* evidence of a need);
* **timing** — the customer's receptivity at the slot relative to their
  average, times the channel's affinity relative to neutral, times how much of
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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from momently.decide.constraints import (
    Contacts,
    Refusal,
    cap_keep_ms,
    check_send,
    customer_zone,
)
from momently.decide.holdout import in_holdout
from momently.decide.records import Candidate, Decision, Holdout, decision_id
from momently.decide.signals import Signals
from momently.decide.spec import ChannelSpec, DecideSpec, OfferSpec
from momently.moments.conditions import compile_profile_test
from momently.moments.model import Moment
from momently.state.profile import Profile

HOUR_MS: Final = 3_600_000
MAX_SLOTS: Final = 48
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


@dataclass(frozen=True, slots=True)
class _Offer:
    spec: OfferSpec
    eligible: Callable[[Profile | None], bool]
    features: dict[str, float]


def offer_features(offer: OfferSpec) -> dict[str, float]:
    """What the bandit knows of an offer: its id, pillars and purpose."""
    features = {f"offer={offer.id}": 1.0, f"purpose={offer.purpose}": 1.0}
    for pillar in offer.pillars:
        features[f"pillar={pillar}"] = 1.0
    return features


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
        self.offers = [
            _Offer(o, compile_profile_test(o.target.profile), offer_features(o))
            for o in spec.offers
        ]
        self.channels = {c.name: c for c in spec.channels}
        all_caps = list(spec.caps) + [c for o in spec.offers for c in o.caps]
        self.keep_ms = cap_keep_ms(all_caps)

    # -- eligibility ------------------------------------------------------------------

    def _eligible(self, offer: _Offer, moment: Moment, profile: Profile | None) -> str | None:
        """Why the offer does not fit the moment, or None when it does."""
        target = offer.spec.target
        if target.kinds and moment.kind not in target.kinds:
            return f"for {'/'.join(target.kinds)} moments, not {moment.kind}"
        if target.moments and moment.name not in target.moments:
            return f"for moments {', '.join(target.moments)}"
        if target.categories and moment.details.get("category") not in target.categories:
            return f"for categories {', '.join(target.categories)}"
        stages = moment.context.get("journeys", {})
        for journey, wanted in target.stages.items():
            if not isinstance(stages, dict) or stages.get(journey) not in wanted:
                return f"for {journey} stages {', '.join(wanted)}"
        if not offer.eligible(profile):
            return "customer does not match the offer's profile conditions"
        return None

    # -- timing and channel -------------------------------------------------------------

    def _slots(self, moment: Moment, offer: OfferSpec, now: int) -> list[int]:
        end = min(moment.expires_ms, now + self.spec.arbitration.horizon)
        if offer.ttl is not None:
            end = min(end, now + offer.ttl)
        slots = [now]
        nxt = (now // HOUR_MS + 1) * HOUR_MS
        while nxt < end and len(slots) < MAX_SLOTS:
            slots.append(nxt)
            nxt += HOUR_MS
        return slots

    def _timing(
        self, moment: Moment, signals: Signals, tz: str | None, at: int, now: int
    ) -> tuple[float, float]:
        """(receptivity relative to the customer's average, share of the moment left)."""
        mean = sum(signals.receptivity) / len(signals.receptivity)
        receptive = signals.engage_at(at, tz) / mean if mean > 0 else 1.0
        left = 1.0
        if self.spec.arbitration.decay == "linear" and moment.expires_ms > now:
            left = max(0.0, (moment.expires_ms - at) / (moment.expires_ms - now))
        return min(receptive, 4.0), left

    def _channels(
        self, offer: OfferSpec, profile: Profile | None, signals: Signals, contacts: Contacts
    ) -> list[tuple[ChannelSpec, str, Refusal | None]]:
        """Each channel to try for the offer, why it is tried, and any address/consent refusal."""
        tried: list[tuple[ChannelSpec, str, Refusal | None]] = []
        seen: set[str] = set()
        for name in offer.messages:
            channel: ChannelSpec | None = self.channels[name]
            reason = "has a message"
            while channel is not None and channel.name not in seen:
                seen.add(channel.name)
                refusal = check_send(
                    channel=channel,
                    offer=offer,
                    profile=profile,
                    contacts=Contacts(),
                    at_ms=0,
                    caps=[],
                    quiet=None,
                    min_gap_ms=0,
                    active_device=signals.active_device,
                )
                tried.append((channel, reason, refusal))
                if refusal is None or channel.fallback is None:
                    break
                reason = f"fallback from {channel.name} ({refusal.check})"
                channel = self.channels[channel.fallback]
        return tried

    # -- the decision ---------------------------------------------------------------------

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
        tz = customer_zone(profile).key
        arb = self.spec.arbitration
        candidates: list[Candidate] = []
        bound: list[str] = []
        fits = []
        for offer in self.offers:
            why = self._eligible(offer, moment, profile)
            if why is None:
                fits.append(offer)
            else:
                candidates.append(Candidate(offer=offer.spec.id, refused=f"eligibility: {why}"))
        prior = max(0.01, min(1.0, moment.confidence * 0.5))
        relevance = self.relevance.estimate(context, [o.features for o in fits], prior)
        propensity = max(signals.propensity, moment.confidence * 0.1)
        fatigue_cost = signals.fatigue * arb.fatigue_cost
        scored: list[tuple[float, Candidate, _Offer]] = []
        for offer, rel in zip(fits, relevance, strict=True):
            best = self._best(
                offer.spec, moment, profile, signals, contacts, now_ms, tz, rel, propensity,
                fatigue_cost, bound,
            )  # fmt: skip
            candidates.append(best)
            if best.refused is None:
                scored.append((best.score, best, offer))
        beating = [s for s in scored if s[0] > arb.min_score]
        beating.sort(key=lambda s: (-s[0], s[1].offer))
        candidates.append(Candidate(offer=SILENCE, score=0.0))
        if not beating:
            reason = (
                "no offer fits this moment"
                if not fits
                else "staying silent scores higher than every allowed candidate"
                if scored
                else "every fitting offer is ruled out by a constraint"
            )
            return base(
                action="silent", reasons=[reason], candidates=candidates,
                bound=sorted(set(bound)), features=context, status="silent",
            )  # fmt: skip
        index, probability = _explore(len(beating), arb.exploration, did)
        score, chosen, offer = beating[index]
        reasons = [
            f"{chosen.offer} scored {score:.3f} against silence 0"
            + (" (exploring)" if index > 0 else ""),
            _when_reason(chosen, now_ms),
            f"channel {chosen.channel}: {chosen.channel_reason}",
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
            reasons=[r for r in reasons if r],
            candidates=candidates,
            bound=sorted(set(bound)),
            features=context,
            status="held_out" if holdout else "decided",
        )

    def _best(
        self,
        offer: OfferSpec,
        moment: Moment,
        profile: Profile | None,
        signals: Signals,
        contacts: Contacts,
        now: int,
        tz: str,
        relevance: float,
        propensity: float,
        fatigue_cost: float,
        bound: list[str],
    ) -> Candidate:
        """The offer's best channel and slot, or the constraint that rules it out."""
        value = relevance * propensity * offer.value * offer.priority
        best: Candidate | None = None
        last: Refusal | None = None
        quiet = self.spec.quiet_hours
        caps = list(self.spec.caps)
        slots = self._slots(moment, offer, now)
        for channel, why, refusal in self._channels(offer, profile, signals, contacts):
            if refusal is not None:
                last = refusal
                bound.append(f"{refusal.check}: {refusal.reason}")
                continue
            affinity = signals.affinity(channel.kind) / 0.5
            context_boost = 1.0
            if channel.kind == "in_app":
                context_boost = 1.5  # the app is open now: answer where they are
            elif channel.kind == "push" and signals.active_device:
                context_boost = 1.2
            # In-app reaches only a session that is open now.
            channel_slots = slots[:1] if channel.kind == "in_app" else slots
            for at in channel_slots:
                receptive, left = self._timing(moment, signals, tz, at, now)
                score = (
                    value * receptive * left * min(affinity, 4.0) * context_boost
                    - channel.cost
                    - offer.cost * relevance
                    - fatigue_cost
                )
                if best is not None and score <= best.score:
                    continue
                refusal = check_send(
                    channel=channel, offer=offer, profile=profile, contacts=contacts, at_ms=at,
                    caps=caps, quiet=quiet, min_gap_ms=self.spec.min_gap,
                    active_device=signals.active_device,
                )  # fmt: skip
                if refusal is not None:
                    last = refusal
                    if at == now:
                        bound.append(f"{refusal.check}: {refusal.reason}")
                    continue
                best = Candidate(
                    offer=offer.id,
                    channel=channel.name,
                    send_at_ms=at,
                    score=round(score, 6),
                    parts={
                        "relevance": round(relevance, 6),
                        "propensity": round(propensity, 6),
                        "value": offer.value * offer.priority,
                        "receptivity": round(receptive, 4),
                        "left": round(left, 4),
                        "affinity": round(affinity, 4),
                        "context": context_boost,
                        "fatigue_cost": round(fatigue_cost, 6),
                    },
                    channel_reason=why,
                )
        if best is None:
            why_not = "no channel reaches the customer" if last is None else last.reason
            check = "address" if last is None else last.check
            return Candidate(offer=offer.id, refused=f"{check}: {why_not}")
        return best


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
