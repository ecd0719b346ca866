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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Protocol

from momently.decide.constraints import (
    Contacts,
    Refusal,
    Windows,
    cap_keep_ms,
    caps_refusal,
    consent_refusal,
    customer_zone,
    reachable,
    spacing_refusal,
)
from momently.decide.holdout import in_holdout
from momently.decide.records import Candidate, Decision, Holdout, decision_id
from momently.decide.signals import Signals
from momently.decide.spec import ChannelSpec, DecideSpec, OfferSpec
from momently.moments.conditions import compile_profile_test
from momently.moments.model import MOMENT_KINDS, Moment
from momently.state.profile import Profile

HOUR_MS: Final = 3_600_000
MAX_SLOTS: Final = 48
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


@dataclass(frozen=True, slots=True)
class _Offer:
    spec: OfferSpec
    eligible: Callable[[Profile | None], bool]
    features: dict[str, float]


def relevance_prior(moment: Moment) -> float:
    """P(engage) before the bandit knows anything: half the moment's confidence."""
    return max(0.01, min(1.0, moment.confidence * 0.5))


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
        self.by_kind = {
            kind: [o for o in self.offers if not o.spec.target.kinds or kind in o.spec.target.kinds]
            for kind in MOMENT_KINDS
        }
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
        arb = self.spec.arbitration
        candidates: list[Candidate] = []
        fits = []
        same_kind = self.by_kind[moment.kind]
        for offer in same_kind:
            why = self._eligible(offer, moment, profile)
            if why is None:
                fits.append(offer)
            else:
                candidates.append(Candidate(offer=offer.spec.id, refused=f"eligibility: {why}"))
        prior = relevance_prior(moment)
        relevance = self.relevance.estimate(context, [o.features for o in fits], prior)
        search = _Search(self, moment, profile, signals, contacts, now_ms)
        scored: list[tuple[float, Candidate, _Offer]] = []
        for offer, rel in zip(fits, relevance, strict=True):
            best = search.best(offer.spec, rel)
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


class _Search:
    """One decision's search over offers, channels and slots, with its checks memoised.

    What does not depend on the offer — the slots and their timing factors, a
    channel's consent and address, the global caps, quiet hours and gap at a
    slot — is worked out once per decision, so 50 offers cost little more than 5.
    """

    def __init__(
        self,
        arbiter: Arbiter,
        moment: Moment,
        profile: Profile | None,
        signals: Signals,
        contacts: Contacts,
        now: int,
    ) -> None:
        self.arbiter = arbiter
        self.spec = arbiter.spec
        self.moment = moment
        self.profile = profile
        self.signals = signals
        self.contacts = contacts
        self.now = now
        self.zone = customer_zone(profile)
        self.bound: set[str] = set()
        self.fatigue_cost = signals.fatigue * self.spec.arbitration.fatigue_cost
        self.propensity = max(signals.propensity, moment.confidence * 0.1)
        self._reach: dict[tuple[str, str], Refusal | None] = {}
        self._global: dict[tuple[str, int], Refusal | None] = {}
        self._spaced: dict[int, Refusal | None] = {}
        self._tried: dict[tuple[str, ...], list[tuple[ChannelSpec, str]]] = {}
        self._windows: Windows = {}
        self._open_slots: dict[str, list[tuple[float, int, float, float]]] = {}
        self._closed: dict[str, Refusal] = {}
        self._parts: dict[str, tuple[float, float, float, float, float, float]] = {}
        # Slots: now, then the top of each hour until the moment or the horizon ends,
        # best first by the customer's receptivity and what is left of the moment.
        end = min(moment.expires_ms, now + self.spec.arbitration.horizon)
        times = [now]
        nxt = (now // HOUR_MS + 1) * HOUR_MS
        while nxt < end and len(times) < MAX_SLOTS:
            times.append(nxt)
            nxt += HOUR_MS
        curve = signals.receptivity
        mean = sum(curve) / len(curve)
        linear = self.spec.arbitration.decay == "linear"
        span = moment.expires_ms - now
        self.slots: list[tuple[float, int, float, float]] = []  # (factor, at, receptive, left)
        for at in times:
            local = datetime.fromtimestamp(at / 1000, self.zone)
            how = local.weekday() * 24 + local.hour
            receptive = min(curve[how] / mean, 4.0) if mean > 0 else 1.0
            left = max(0.0, (moment.expires_ms - at) / span) if linear and span > 0 else 1.0
            self.slots.append((receptive * left, at, receptive, left))
            self._spaced[at] = spacing_refusal(
                self.spec.quiet_hours, self.spec.min_gap, contacts, at, self.zone,
                local.hour * 60 + local.minute,
            )  # fmt: skip
        self.slots.sort(key=lambda s: (-s[0], s[1]))

    def _reachable(self, channel: ChannelSpec, offer: OfferSpec) -> Refusal | None:
        key = (channel.name, offer.purpose)
        if key not in self._reach:
            refusal = consent_refusal(channel, offer.purpose, self.profile)
            if refusal is None and not reachable(channel, self.profile, self.signals.active_device):
                refusal = Refusal("address", f"{channel.name}: no address for this customer")
            self._reach[key] = refusal
        return self._reach[key]

    def _caps(self, channel: str, at: int) -> Refusal | None:
        if not self.contacts.items:
            return None  # nothing counted yet: no cap of one or more can bind
        key = (channel, at)
        if key not in self._global:
            self._global[key] = caps_refusal(
                self.spec.caps, self.contacts, at, self.zone, channel, None, self._windows
            )
        return self._global[key]

    def _spacing(self, at: int) -> Refusal | None:
        return self._spaced[at]

    def _open(self, channel: str) -> list[tuple[float, int, float, float]]:
        """The slots no global cap, quiet hour or gap closes on this channel, best first."""
        found = self._open_slots.get(channel)
        if found is None:
            found = []
            for slot in self.slots:
                at = slot[1]
                refusal = self._caps(channel, at) or self._spacing(at)
                if refusal is None:
                    found.append(slot)
                    continue
                self._closed[channel] = refusal
                if at == self.now:
                    self.bound.add(f"{refusal.check}: {refusal.reason}")
            self._open_slots[channel] = found
        return found

    def _channels(self, offer: OfferSpec) -> list[tuple[ChannelSpec, str]]:
        """Channels to try for the offer (its own, or their fallbacks), and why each."""
        key = (offer.purpose, *offer.channels)
        known = self._tried.get(key)
        if known is None:
            known = self._tried[key] = self._find_channels(offer)
        return known

    def _find_channels(self, offer: OfferSpec) -> list[tuple[ChannelSpec, str]]:
        tried: list[tuple[ChannelSpec, str]] = []
        seen: set[str] = set()
        own = set(offer.channels)
        for name in offer.channels:
            channel: ChannelSpec | None = self.arbiter.channels[name]
            reason = "has a message"
            while channel is not None and channel.name not in seen:
                seen.add(channel.name)
                # A fallback serves only if the offer has a message written for it.
                if channel.name in own:
                    refusal = self._reachable(channel, offer)
                    if refusal is None:
                        tried.append((channel, reason))
                        break
                    self.bound.add(f"{refusal.check}: {refusal.reason}")
                    reason = f"fallback from {channel.name} ({refusal.check})"
                if channel.fallback is None:
                    break
                channel = self.arbiter.channels[channel.fallback]
        return tried

    def best(self, offer: OfferSpec, relevance: float) -> Candidate:
        """The offer's best channel and slot, or the constraint that rules it out."""
        value = relevance * self.propensity * offer.value * offer.priority
        end = self.now + offer.ttl if offer.ttl is not None else None
        # (score, channel, why, at, receptive, left, affinity, boost) of the best so far
        best: tuple[float, ChannelSpec, str, int, float, float, float, float] | None = None
        last: Refusal | None = None
        for channel, why in self._channels(offer):
            affinity = min(self.signals.affinity(channel.kind), 4.0)
            boost = 1.0
            if channel.kind == "in_app":
                boost = 1.5  # the app is open now: answer where they are
            elif channel.kind == "push" and self.signals.active_device:
                boost = 1.2
            gain = value * affinity * boost
            costs = channel.cost + offer.cost * relevance + self.fatigue_cost
            marketing = offer.purpose == "marketing"
            # Caps, quiet hours and gaps bind marketing only.
            slots = self._open(channel.name) if marketing else self.slots
            if marketing and channel.name in self._closed:
                last = self._closed[channel.name]
            for factor, at, receptive, left in slots:
                if channel.kind == "in_app" and at != self.now:
                    continue  # in-app reaches only the session open now
                if end is not None and at >= end:
                    continue
                score = gain * factor - costs
                if best is not None and score <= best[0]:
                    break  # slots come best first: nothing further on this channel beats it
                if marketing and offer.caps:
                    refusal = caps_refusal(
                        offer.caps, self.contacts, at, self.zone, channel.name, offer.id,
                        self._windows,
                    )  # fmt: skip
                    if refusal is not None:
                        last = refusal
                        if at == self.now:
                            self.bound.add(f"{refusal.check}: {refusal.reason}")
                        continue
                best = (score, channel, why, at, receptive, left, affinity, boost)
                break  # the first allowed slot is this channel's best
        if best is None:
            if last is None:
                return Candidate(offer=offer.id, refused="address: no channel reaches the customer")
            return Candidate(offer=offer.id, refused=f"{last.check}: {last.reason}")
        score, channel, why, at, receptive, left, affinity, boost = best
        self._parts[offer.id] = (
            relevance,
            offer.value * offer.priority,
            receptive,
            left,
            affinity,
            boost,
        )
        return Candidate(
            offer=offer.id,
            channel=channel.name,
            send_at_ms=at,
            score=round(score, 6),
            channel_reason=why,
        )

    def explain(self, candidate: Candidate) -> None:
        """Fill in the parts of a candidate's score (done for the top few only: cheap)."""
        relevance, value, receptive, left, affinity, boost = self._parts[candidate.offer]
        candidate.parts = {
            "relevance": round(relevance, 6),
            "propensity": round(self.propensity, 6),
            "value": value,
            "receptivity": round(receptive, 4),
            "left": round(left, 4),
            "affinity": round(affinity, 4),
            "context": boost,
            "fatigue_cost": round(self.fatigue_cost, 6),
        }


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
