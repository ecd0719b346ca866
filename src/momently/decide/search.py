"""One decision's search over offers, channels and slots, with its checks shared.

For every offer, every channel the offer has a message for (or that
channel's fallback when it is unreachable) is tried, and on each the best
slot the hard constraints allow (:mod:`momently.decide.slots`). What does
not depend on the offer — a channel's consent and address, its affinity and
open slots — is worked out once per decision; which channels an offer ends
up on is remembered across decisions for each pattern of reachability.
"""

from __future__ import annotations

from typing import Final

from momently.decide.constraints import (
    Contacts,
    Refusal,
    calendar_span,
    cap_refusal,
    caps_refusal,
    consent_refusal,
    customer_zone,
    reachable,
)
from momently.decide.numbers import rounded
from momently.decide.offers import Offer
from momently.decide.records import Candidate
from momently.decide.signals import Signals
from momently.decide.slots import Slot, Timeline
from momently.decide.spec import ChannelSpec, DecideSpec, OfferSpec, Purpose
from momently.moments.model import Moment
from momently.state.profile import Profile

ROUTES_KEPT: Final = 4096  # channel routes remembered before starting afresh

Reach = tuple[Refusal | None, ...]  # per channel of the spec, in order: why it cannot be used
Route = tuple[tuple[tuple[str, str], ...], tuple[str, ...]]  # ((channel, why), ...), bound


Lane = tuple[float, float, float, list[Slot], Refusal | None]


class Routes:
    """Which channels an offer is tried on, given which channels reach the customer.

    Pure in the spec's channels, the offer's and a reachability pattern, so it
    is remembered across decisions (bounded); a pattern is named by a small
    number, so that a lookup hashes no refusal.
    """

    def __init__(self, spec: DecideSpec) -> None:
        self.channels = {c.name: c for c in spec.channels}
        self.order = [c.name for c in spec.channels]
        self._patterns: dict[tuple[tuple[str, str] | None, ...], int] = {}
        self._reaches: list[dict[str, Refusal | None]] = []
        self._known: dict[tuple[tuple[str, ...], int], Route] = {}

    def pattern(self, reach: Reach) -> int:
        """The number of a reachability pattern (one per channel of the spec, in order)."""
        key = tuple(None if r is None else (r.check, r.reason) for r in reach)
        found = self._patterns.get(key)
        if found is None:
            if len(self._patterns) >= ROUTES_KEPT:
                self._patterns.clear()
                self._reaches.clear()
                self._known.clear()
            found = self._patterns[key] = len(self._reaches)
            self._reaches.append(dict(zip(self.order, reach, strict=True)))
        return found

    def route(self, offer_channels: tuple[str, ...], pattern: int) -> Route:
        """The channels to try for an offer with messages on ``offer_channels``, and why
        each, and the constraints that bound on the way."""
        key = (offer_channels, pattern)
        found = self._known.get(key)
        if found is None:
            if len(self._known) >= ROUTES_KEPT:
                self._known.clear()
            found = self._known[key] = self._find(offer_channels, self._reaches[pattern])
        return found

    def _find(self, offer_channels: tuple[str, ...], reach: dict[str, Refusal | None]) -> Route:
        tried: list[tuple[str, str]] = []
        bound: list[str] = []
        seen: set[str] = set()
        own = set(offer_channels)
        for name in offer_channels:
            channel: ChannelSpec | None = self.channels[name]
            reason = "has a message"
            while channel is not None and channel.name not in seen:
                seen.add(channel.name)
                # A fallback serves only if the offer has a message written for it.
                if channel.name in own:
                    refusal = reach[channel.name]
                    if refusal is None:
                        tried.append((channel.name, reason))
                        break
                    bound.append(f"{refusal.check}: {refusal.reason}")
                    reason = f"fallback from {channel.name} ({refusal.check})"
                if channel.fallback is None:
                    break
                channel = self.channels[channel.fallback]
        return tuple(tried), tuple(bound)


class Search:
    """The best channel and slot for each offer of one decision, with the constraints
    that bound on the way (``bound``) and the parts of each score (for :meth:`explain`)."""

    def __init__(
        self,
        spec: DecideSpec,
        routes: Routes,
        moment: Moment,
        profile: Profile | None,
        signals: Signals,
        contacts: Contacts,
        now: int,
    ) -> None:
        self.spec = spec
        self.routes = routes
        self.profile = profile
        self.signals = signals
        self.contacts = contacts
        self.now = now
        self.zone = customer_zone(profile)
        self.bound: set[str] = set()
        self.fatigue_cost = signals.fatigue * spec.arbitration.fatigue_cost
        self.propensity = max(signals.propensity, moment.confidence * 0.1)
        self.timeline = Timeline(spec, moment, signals, contacts, now, self.zone, self.bound)
        # An offer's own caps count only its messages: one never sent cannot be capped.
        self.sent = {c.offer for c in contacts.items}
        self._patterns: dict[Purpose, int] = {}
        # Per channel: (affinity, context boost, cost, usable slots best first, the last
        # constraint that closed one) — for marketing (caps, quiet hours and gaps bind) or not.
        self._lanes: tuple[dict[str, Lane], dict[str, Lane]] = ({}, {})
        self._parts: dict[str, tuple[float, float, float, float, float, float]] = {}
        # (offer, cap) -> the local days or weeks counted so far: (start, end, refusal)
        self._offer_spans: dict[tuple[str, int], list[tuple[int, int, Refusal | None]]] = {}
        self._shared: tuple[float, float] | None = None  # propensity, fatigue cost, rounded

    def _reachable(self, channel: ChannelSpec, purpose: Purpose) -> Refusal | None:
        refusal = consent_refusal(channel, purpose, self.profile)
        if refusal is None and not reachable(channel, self.profile, self.signals.active_device):
            refusal = Refusal("address", f"{channel.name}: no address for this customer")
        return refusal

    def _pattern(self, purpose: Purpose) -> int:
        found = self._patterns.get(purpose)
        if found is None:
            reach = tuple(self._reachable(c, purpose) for c in self.spec.channels)
            found = self._patterns[purpose] = self.routes.pattern(reach)
        return found

    def _lane(self, name: str, marketing: bool) -> Lane:
        channel = self.routes.channels[name]
        boost = 1.0
        if channel.kind == "in_app":
            boost = 1.5  # the app is open now: answer where they are
        elif channel.kind == "push" and self.signals.active_device:
            boost = 1.2
        closed = None
        if marketing:
            slots, closed = self.timeline.open(name)
        else:
            slots = self.timeline.slots
        if channel.kind == "in_app":
            slots = [s for s in slots if s[1] == self.now]  # only the session open now
        affinity = min(self.signals.affinity(channel.kind), 4.0)
        lane = self._lanes[marketing][name] = (affinity, boost, channel.cost, slots, closed)
        return lane

    def best(self, offer: Offer, relevance: float) -> Candidate:
        """The offer's best channel and slot, or the constraint that rules it out."""
        spec = offer.spec
        value = relevance * self.propensity * spec.value * spec.priority
        end = self.now + spec.ttl if spec.ttl is not None else None
        marketing = offer.marketing
        capped = marketing and bool(spec.caps) and spec.id in self.sent
        pattern = self._patterns.get(spec.purpose)
        if pattern is None:
            pattern = self._pattern(spec.purpose)
        tried, bound = self.routes.route(offer.channels, pattern)
        if bound:
            self.bound.update(bound)
        lanes = self._lanes[marketing]
        # (score, channel, why, at, receptive, left, affinity, boost) of the best so far
        best: tuple[float, str, str, int, float, float, float, float] | None = None
        last: Refusal | None = None
        for name, why in tried:
            lane = lanes.get(name)
            if lane is None:
                lane = self._lane(name, marketing)
            affinity, boost, cost, slots, closed = lane
            if closed is not None:
                last = closed
            gain = value * affinity * boost
            costs = cost + spec.cost * relevance + self.fatigue_cost
            for factor, at, receptive, left in slots:
                if end is not None and at >= end:
                    continue
                score = gain * factor - costs
                if best is not None and score <= best[0]:
                    break  # slots come best first: nothing further on this channel beats it
                if capped:
                    refusal = self._offer_caps(spec, name, at)
                    if refusal is not None:
                        last = refusal
                        if at == self.now:
                            self.bound.add(f"{refusal.check}: {refusal.reason}")
                        continue
                best = (score, name, why, at, receptive, left, affinity, boost)
                break  # the first allowed slot is this channel's best
        if best is None:
            if last is None:
                return Candidate(offer=spec.id, refused="address: no channel reaches the customer")
            return Candidate(offer=spec.id, refused=f"{last.check}: {last.reason}")
        score, name, why, at, receptive, left, affinity, boost = best
        self._parts[spec.id] = (relevance, offer.worth, receptive, left, affinity, boost)
        return Candidate(
            offer=spec.id,
            channel=name,
            send_at_ms=at,
            score=rounded(score, 6),
            channel_reason=why,
        )

    def _offer_caps(self, offer: OfferSpec, channel: str, at: int) -> Refusal | None:
        """The offer's first cap a message on ``channel`` at ``at`` would exceed: what
        :func:`caps_refusal` says, with each local day's or week's count counted once."""
        for i, cap in enumerate(offer.caps):
            if cap.channel is not None and cap.channel != channel:
                continue
            if isinstance(cap.per, int):
                refusal = caps_refusal((cap,), self.contacts, at, self.zone, channel, offer.id)
            else:
                spans = self._offer_spans.setdefault((offer.id, i), [])
                known = next((span for span in spans if span[0] <= at < span[1]), None)
                if known is not None:
                    refusal = known[2]
                else:
                    start, end = calendar_span(cap, at, self.zone)
                    used = sum(
                        1
                        for c in self.contacts.items
                        if start <= c.at_ms < end
                        and c.offer == offer.id
                        and (cap.channel is None or c.channel == cap.channel)
                    )
                    refusal = cap_refusal(cap, used, offer.id) if used + 1 > cap.max else None
                    spans.append((start, end, refusal))
            if refusal is not None:
                return refusal
        return None

    def explain(self, candidate: Candidate) -> None:
        """Fill in the parts of a candidate's score (done for the top few only: cheap)."""
        relevance, value, receptive, left, affinity, boost = self._parts[candidate.offer]
        if self._shared is None:
            self._shared = (rounded(self.propensity, 6), rounded(self.fatigue_cost, 6))
        propensity, fatigue_cost = self._shared
        candidate.parts = {
            "relevance": rounded(relevance, 6),
            "propensity": propensity,
            "value": value,
            "receptivity": rounded(receptive, 4),
            "left": rounded(left, 4),
            "affinity": rounded(affinity, 4),
            "context": boost,
            "fatigue_cost": fatigue_cost,
        }
