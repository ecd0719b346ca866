"""The decide step: moments in, decisions out, with each customer's contacts and what the
bandit is waiting to hear about.

It runs inside the moment stage, on the same customer state and in the same
transaction, so a reservation against a cap is committed with the decision
that made it: two moments of one customer are decided one after the other,
and the second sees the first's reservation (a cap of one cannot be passed
twice). Time is the moment's own (event time), so a replay decides the same.

Feedback closes the loop here too: an engagement event naming a decision
(``properties.decision_id``) teaches the bandit that the offer was relevant, and
so does a purchase that names none, credited last-touch to the latest decision
already sent whose moment is still open;
a decision whose moment expires without one teaches it that it was not. A
purchase resolves the customer's pending *scheduled* sends, and an opt-out
cancels the marketing ones; their cap reservations are given back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

import msgspec

from momently.decide.arbitrate import Arbiter, offer_features, relevance_prior
from momently.decide.bandit import LinearBandit
from momently.decide.constraints import Contact, Contacts
from momently.decide.records import Decision
from momently.decide.signals import Signals
from momently.decide.spec import DecideSpec
from momently.events import Event
from momently.moments.model import Moment
from momently.state.profile import Profile, consent_updates

ENGAGED: Final = frozenset(
    {
        "Email Link Clicked",
        "Link Clicked",
        "Message Clicked",
        "Push Notification Tapped",
        "In-App Message Clicked",
        "SMS Link Clicked",
        "Order Completed",
    }
)
OPT_OUT: Final = frozenset({"Unsubscribed"})
MAX_PENDING: Final = 50
BANDIT_BITS: Final = 14
BANDIT: Final = "decide.bandit"  # its name among the stored model snapshots
BANDIT_VERSION: Final = f"linear-diagonal-{BANDIT_BITS}-1"


class Pending(msgspec.Struct, array_like=True, frozen=True):
    """A decision sent (or due to be sent) whose outcome the bandit has not learned yet."""

    decision_id: str
    offer: str
    send_at_ms: int
    until_ms: int  # no engagement by then: the offer was not relevant
    prior: float
    features: dict[str, float]
    purpose: str = "marketing"


class DecideState(msgspec.Struct, omit_defaults=True):
    """What the decide step remembers about one customer; bounded in size."""

    contacts: Contacts = msgspec.field(default_factory=Contacts)
    pending: list[Pending] = []


def _last_touch(pending: Sequence[Pending], now_ms: int) -> str | None:
    """The decision a purchase that names none is credited to: the latest one already sent
    whose attribution window (until its moment expires) is still open; none if none."""
    sent = [p for p in pending if p.send_at_ms <= now_ms < p.until_ms]
    return max(sent, key=lambda p: p.send_at_ms).decision_id if sent else None


@dataclass(slots=True)
class Outcome:
    """What one event or timer did: decisions made, sends cancelled, the bandit taught."""

    decisions: list[Decision] = field(default_factory=list)
    cancelled: list[tuple[str, str]] = field(default_factory=list)  # (decision id, reason)
    learned: int = 0


class BanditRelevance:
    """Relevance from the bandit: the moment's prior plus what the bandit has learned."""

    def __init__(self, bandit: LinearBandit) -> None:
        self.bandit = bandit

    def estimate(
        self, context: Mapping[str, float], actions: Sequence[Mapping[str, float]], prior: float
    ) -> list[float]:
        if not actions:
            return []
        means = self.bandit.predict(context, actions)
        return [min(1.0, max(0.001, prior + m)) for m in means.tolist()]


def new_bandit() -> LinearBandit:
    """The runtime's bandit: a small hashed space, so its snapshot stays small."""
    return LinearBandit(alpha=0.5, epsilon=0.0, bits=BANDIT_BITS, seed=7)


class Decider:
    """The playbook's decision section and the bandit; per-customer state is passed in."""

    def __init__(self, spec: DecideSpec, bandit: LinearBandit | None = None) -> None:
        self.spec = spec
        self.bandit = bandit or new_bandit()
        self.arbiter = Arbiter(spec, BanditRelevance(self.bandit))
        self._offers = {o.id: o for o in spec.offers}
        self._features = {o.id: offer_features(o) for o in spec.offers}
        self._kinds = {c.name: c.kind for c in spec.channels}
        self.dirty = False  # the bandit learned since the last snapshot

    @property
    def enabled(self) -> bool:
        return bool(self.spec.offers)

    def may_answer(self, moment: Moment) -> bool:
        """Whether any offer could fit a moment like this one (its kind and name)."""
        return any(
            (not o.target.kinds or moment.kind in o.target.kinds)
            and (not o.target.moments or moment.name in o.target.moments)
            for o in self.spec.offers
        )

    def snapshot(self) -> bytes:
        """The bandit's state, to commit with the checkpoint."""
        self.dirty = False
        return self.bandit.to_bytes()

    def restore(self, data: bytes | None) -> None:
        """Start from a committed snapshot, or afresh (``None``)."""
        self.bandit = new_bandit() if data is None else LinearBandit.from_bytes(data)
        self.arbiter.relevance = BanditRelevance(self.bandit)
        self.dirty = False

    def decide(
        self,
        state: DecideState,
        moments: Sequence[Moment],
        profile: Profile | None,
        signals: Signals,
    ) -> list[Decision]:
        """One decision per moment, in order; each send reserves its place against the caps."""
        decisions = []
        for moment in moments:
            decision = self.arbiter.decide(moment, profile, signals, state.contacts, moment.at_ms)
            decisions.append(decision)
            if decision.action == "silent" or decision.send_at_ms is None:
                continue
            # Held-out decisions reserve too: the control group is decided exactly as the
            # treated group is, so the two stay comparable.
            state.contacts.reserve(
                Contact(
                    decision.send_at_ms,
                    decision.channel or "",
                    decision.offer or "",
                    decision.decision_id,
                ),
                self.arbiter.keep_ms,
            )
            if decision.holdout is None and decision.offer is not None:
                offer = self._offers[decision.offer]
                base = relevance_prior(moment)
                state.pending = [
                    *state.pending,
                    Pending(
                        decision.decision_id, decision.offer, decision.send_at_ms,
                        max(moment.expires_ms, decision.send_at_ms), base,
                        decision.features, offer.purpose,
                    ),
                ][-MAX_PENDING:]  # fmt: skip
        return decisions

    def on_event(self, state: DecideState, event: Event) -> Outcome:
        """Feedback and resolution: learn from engagement, cancel what a purchase or an
        opt-out makes moot."""
        out = Outcome()
        now = event.timestamp_ms
        self._expire(state, now, out)
        refused = [k for k, (granted, _) in consent_updates(event).items() if not granted]
        if refused and state.pending:
            self._withdraw(state, now, out, refused)
        name = event.event if event.type == "track" else None
        if name is None:
            return out
        decided = event.properties.get("decision_id") or event.properties.get("decisionId")
        if name == "Order Completed" and not isinstance(decided, str):
            decided = _last_touch(state.pending, now)
        if name in ENGAGED and isinstance(decided, str):
            for pending in state.pending:
                if pending.decision_id == decided:
                    self._learn(pending, 1.0)
                    out.learned += 1
            state.pending = [p for p in state.pending if p.decision_id != decided]
        if name == "Order Completed":
            self._cancel(state, now, out, "the customer bought already", marketing_only=False)
        return out

    def on_time(self, state: DecideState, now_ms: int) -> Outcome:
        out = Outcome()
        self._expire(state, now_ms, out)
        return out

    def next_due(self, state: DecideState) -> int | None:
        return min((p.until_ms for p in state.pending), default=None)

    def _expire(self, state: DecideState, now: int, out: Outcome) -> None:
        if not state.pending or all(p.until_ms > now for p in state.pending):
            return
        kept = []
        for pending in state.pending:
            if pending.until_ms <= now:
                self._learn(pending, 0.0)
                out.learned += 1
            else:
                kept.append(pending)
        state.pending = kept

    def _cancel(
        self, state: DecideState, now: int, out: Outcome, reason: str, *, marketing_only: bool
    ) -> None:
        kept = []
        for pending in state.pending:
            later = pending.send_at_ms > now
            if later and (not marketing_only or pending.purpose == "marketing"):
                out.cancelled.append((pending.decision_id, reason))
                state.contacts.cancel(pending.decision_id)
            else:
                kept.append(pending)
        state.pending = kept

    def _withdraw(self, state: DecideState, now: int, out: Outcome, refused: list[str]) -> None:
        """Cancel the later sends an opt-out forbids: ``<scope>:<purpose>`` keys, the scope
        a channel name, a channel kind or ``all`` (a bare purpose means all channels)."""
        channels = {c.decision: c.channel for c in state.contacts.items}
        scopes = []
        for key in refused:
            scope, _, purpose = key.rpartition(":")
            scopes.append((purpose, scope or "all"))
        kept = []
        for pending in state.pending:
            channel = channels.get(pending.decision_id, "")
            covered = ("all", channel, self._kinds.get(channel))
            if pending.send_at_ms > now and any(
                purpose == pending.purpose and scope in covered for purpose, scope in scopes
            ):
                why = f"the customer opted out of {pending.purpose} on {channel}"
                out.cancelled.append((pending.decision_id, why))
                state.contacts.cancel(pending.decision_id)
            else:
                kept.append(pending)
        state.pending = kept

    def _learn(self, pending: Pending, reward: float) -> None:
        features = self._features.get(pending.offer)
        if features is None:
            return  # an offer the playbook no longer has
        # The bandit learns what the moment's prior does not already say.
        self.bandit.learn(pending.features, features, reward - pending.prior, 1.0)
        self.dirty = True
