"""momently itself as a policy on the simulator: the real engine decides what to send.

Every simulated event goes through the real pipeline in process — validation,
the log, identity, the moment stage with its detectors, the online models and
the decide step — on in-memory stores and a clock that follows simulated time;
the sends it decides come back to the harness, which delivers them to the
simulated customers (and so their answers, opens, clicks, purchases and
opt-outs, flow back into the engine as events). The harness keeps its own
holdout, so momently's own holdouts are switched off here: the comparison's
control group is the same for every policy.

A planned send that a purchase or an opt-out cancels inside the engine is
withdrawn when it falls due (:meth:`EnginePolicy.still_wanted`).

The simulated shop sells more than the example playbook has offers for (it is
a toaster brand's playbook; the simulated shop is a department store), so the
engine gets the playbook a brand selling that catalogue would write: the
example's offers plus one offer per further department, for customers whose
searches and visits show they are buying or researching in it
(:func:`with_catalogue`). The event-trigger baseline addresses every department
by its keyword rules, so without these the comparison would pit a full
catalogue against a partial one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from momently.clock import FakeClock
from momently.decide.spec import OfferSpec
from momently.engine import Engine
from momently.errors import InvalidInput
from momently.events import Event
from momently.moments.detector import MomentDetector
from momently.moments.playbook import Playbook, load_playbook
from momently.runtime.stage import Decided, MomentStage
from momently.simulate.catalog import EXAMPLE_OFFERS
from momently.simulate.events import to_event
from momently.simulate.needs import NEEDS
from momently.simulate.respond import Response, Send
from momently.simulate.simtime import iso
from momently.simulate.types import Message
from momently.simulate.window import WindowMomentStore, WindowStore
from momently.store.memory import MemoryStore
from momently.store.moments_memory import MemoryMomentStore

DEPARTMENTS: Final = ("fashion", "electronics", "beauty", "travel", "grocery", "home-garden")
"""The simulated shop's departments the example playbook has no offer for; each is both
the intent model's category and the simulator's need category."""
BATCH_MS: Final = 60_000
"""How much simulated time of events the engine takes in one go (ingest, then the stage):
what the running engine does too, where the stage reads the log in steps a little behind
the writer. A send decided in a batch is delivered when the batch is done, up to this much
later than the event that prompted it; 0 runs the stage after every event."""
MARGIN: Final = 0.25  # an offer's value: a quarter of the department's mean price


def department_offer(department: str) -> OfferSpec:
    """The offer a brand would write for one department of its catalogue.

    It answers *buying* moments only, at most once a day. Measured on 1,000 customers
    over 14 days (seed 1, the engine's decisions beside the hidden truth): when it also
    answered research ("know") moments, with one message a week, 2,542 of momently's 4,267
    sends went to know moments, 78% of them to customers with no live need in the category
    (a curious search); and each spent the offer's weekly cap, so the buying moments that
    followed — 99% of those naming a category came from a live need of it — were refused
    ("cap: offer shop-…") or left silent: 285 of 2,872 were answered. A know search is
    weak evidence of a need, a buy search strong, and a need may take more than one try.
    """
    low, high = NEEDS[department].price
    name = department.replace("-", " and ")
    return OfferSpec.model_validate(
        {
            "id": f"shop-{department}",
            "title": f"Our {name} range",
            "value": round(MARGIN * (low + high) / 2, 2),
            "for": {"kinds": ["buy"], "categories": [department]},
            "messages": {
                "push": {"title": f"Looking for {name}?", "body": f"Picked for you: our {name}."},
                "email": {"subject": f"Our {name} range", "body": f"The best of our {name}."},
                "in_app": {"body": f"See what's new in {name}."},
            },
            "caps": [{"max": 1, "per": "day"}],
        }
    )


def with_catalogue(playbook: Playbook) -> Playbook:
    """The playbook with an offer for each department it does not cover yet."""
    known = {o.id for o in playbook.decide.offers}
    extra = tuple(department_offer(d) for d in DEPARTMENTS if f"shop-{d}" not in known)
    decide = playbook.decide.model_copy(update={"offers": playbook.decide.offers + extra})
    return playbook.model_copy(update={"decide": decide})


def category_of(offer_id: str) -> str:
    """The simulator's category an offer speaks to (``*``: whatever the customer needs)."""
    department = offer_id.removeprefix("shop-")
    if department != offer_id and department in NEEDS:
        return department
    return EXAMPLE_OFFERS.get(offer_id, "*")


def without_holdouts(playbook: Playbook) -> Playbook:
    """The playbook with its global and per-offer holdouts at zero."""
    offers = tuple(o.model_copy(update={"holdout": 0.0}) for o in playbook.decide.offers)
    decide = playbook.decide.model_copy(update={"holdout": 0.0, "offers": offers})
    return playbook.model_copy(update={"decide": decide})


class EnginePolicy:
    """The engine, in process, deciding for the simulated population."""

    name = "momently"

    def __init__(
        self, playbook: Playbook | None = None, *, batch_ms: int = BATCH_MS, window: bool = False
    ) -> None:
        """``window``: keep only the log ahead of the stage and recent decisions
        (:mod:`momently.simulate.window`, forgotten at each simulated day's end), for
        runs too large for memory; the decisions are the same as without."""
        self.batch_ms = batch_ms
        self._batch: list[Event] = []
        self._batch_start = 0
        self.playbook = without_holdouts(playbook or with_catalogue(load_playbook()))
        self.kinds = {c.name: c.kind for c in self.playbook.decide.channels}
        self.clock = FakeClock(0)
        self.store: MemoryStore = WindowStore() if window else MemoryStore()
        self.moment_store: MemoryMomentStore = (
            WindowMomentStore() if window else MemoryMomentStore()
        )
        self.engine = Engine(self.store)
        self.stage = MomentStage(
            self.store,
            self.moment_store,
            MomentDetector(self.playbook),
            self.clock,
            on_decisions=self._decided,
        )
        self._sends: list[Send] = []
        self.refused = 0  # simulated messages the engine's validation refused
        self._names: dict[str, str] = {
            c.kind: c.name for c in reversed(self.playbook.decide.channels)
        }

    def _user(self, customer_id: str) -> str | None:
        canonical = self.store.canonical(customer_id) or customer_id
        profile = self.store.profile(canonical)
        if profile is not None and profile.user_id is not None:
            return profile.user_id  # no list of keys to build
        return next((v for k, v in self.store.identities(canonical) if k == "user_id"), None)

    def _decided(self, decided: Decided) -> None:
        for decision in decided.decisions:
            if decision.action == "silent" or decision.offer is None:
                continue
            user = self._user(decision.customer_id)
            if user is None or decision.channel is None or decision.send_at_ms is None:
                continue
            self._sends.append(
                Send(
                    user,
                    self.kinds.get(decision.channel, decision.channel),
                    decision.offer,
                    category_of(decision.offer),
                    decision.send_at_ms,
                    decision.decision_id,
                )
            )

    def _drain(self) -> list[Send]:
        sends, self._sends = self._sends, []
        return sends

    def on_event(self, event: Message) -> Sequence[Send]:
        try:
            parsed = to_event(event)
        except InvalidInput:
            self.refused += 1
            return []
        ts = parsed.timestamp_ms
        sends: Sequence[Send] = ()
        if self._batch and ts - self._batch_start >= self.batch_ms:
            sends = self.flush()
        if not self._batch:
            self._batch_start = ts
        self._batch.append(parsed)
        if self.batch_ms <= 0:
            return self.flush()
        return sends

    def flush(self) -> list[Send]:
        """Ingest the events held back and run the stage over them; the sends decided."""
        if self._batch:
            batch, self._batch = self._batch, []
            self.engine.ingest(batch)
            self.clock.set(max(self.clock.now_ms(), max(e.timestamp_ms for e in batch)))
            self.stage.catch_up()
        return self._drain()

    def on_delivered(self, send: Send, answer: Response) -> None:
        """What the engine's outbox writes to the log once a provider has answered:
        ``Message Sent``, or ``Message Failed`` with the reason (see
        :func:`momently.runtime.delivery.outcome_event`). Without it the engine's
        models would never learn how many messages went out — only the opens."""
        if send.decision_id is None:
            return
        at = max(send.send_at, self.clock.now_ms())
        properties: dict[str, object] = {
            "decision_id": send.decision_id,
            "channel": self._names.get(send.channel, send.channel),
            "kind": send.channel,
            "offer": send.offer_id,
            "attempts": 1,
        }
        if not answer.delivered:
            properties["reason"] = answer.reason
        state = "sent" if answer.delivered else "dead"
        message = {
            "type": "track",
            "event": "Message Sent" if answer.delivered else "Message Failed",
            "messageId": f"dlv-{send.decision_id}-{state}",
            "userId": send.customer,
            "timestamp": iso(at),
            "properties": properties,
        }
        try:
            parsed = to_event(message)
        except InvalidInput:
            self.refused += 1
            return
        if not self._batch:
            self._batch_start = parsed.timestamp_ms
        self._batch.append(parsed)  # in the log in the order it happened

    def still_wanted(self, send: Send) -> bool:
        """Whether a planned send still stands: not if the engine called it off."""
        if send.decision_id is None:
            return True
        decision = self.stage.moments.decision(send.decision_id)
        return decision is None or decision.status != "cancelled"

    def compact(self, now_ms: int) -> None:
        """With ``window``: forget the log behind the stage and the decisions done
        with (the harness calls it at each simulated day's end); otherwise nothing."""
        if isinstance(self.store, WindowStore):
            self.store.forget_before(self.stage.position)
        if isinstance(self.moment_store, WindowMomentStore):
            self.moment_store.forget_before(now_ms)

    def on_tick(self, now_ms: int) -> Sequence[Send]:
        sends = self.flush()
        self.clock.set(max(self.clock.now_ms(), now_ms))
        self.stage.tick()
        return sends + self._drain()
