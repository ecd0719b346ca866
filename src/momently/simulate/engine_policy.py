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
from momently.moments.detector import MomentDetector
from momently.moments.playbook import Playbook, load_playbook
from momently.runtime.stage import Decided, MomentStage
from momently.simulate.catalog import EXAMPLE_OFFERS
from momently.simulate.events import to_event
from momently.simulate.needs import NEEDS
from momently.simulate.respond import Send
from momently.simulate.types import Message
from momently.store.memory import MemoryStore
from momently.store.moments_memory import MemoryMomentStore

DEPARTMENTS: Final = ("fashion", "electronics", "beauty", "travel", "grocery", "home-garden")
"""The simulated shop's departments the example playbook has no offer for; each is both
the intent model's category and the simulator's need category."""
MARGIN: Final = 0.25  # an offer's value: a quarter of the department's mean price


def department_offer(department: str) -> OfferSpec:
    """The offer a brand would write for one department of its catalogue."""
    low, high = NEEDS[department].price
    name = department.replace("-", " and ")
    return OfferSpec.model_validate(
        {
            "id": f"shop-{department}",
            "title": f"Our {name} range",
            "value": round(MARGIN * (low + high) / 2, 2),
            "for": {"kinds": ["buy", "know"], "categories": [department]},
            "messages": {
                "push": {"title": f"Looking for {name}?", "body": f"Picked for you: our {name}."},
                "email": {"subject": f"Our {name} range", "body": f"The best of our {name}."},
                "in_app": {"body": f"See what's new in {name}."},
            },
            "caps": [{"max": 1, "per": "week"}],
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

    def __init__(self, playbook: Playbook | None = None) -> None:
        self.playbook = without_holdouts(playbook or with_catalogue(load_playbook()))
        self.kinds = {c.name: c.kind for c in self.playbook.decide.channels}
        self.clock = FakeClock(0)
        self.store = MemoryStore()
        self.engine = Engine(self.store)
        self.stage = MomentStage(
            self.store,
            MemoryMomentStore(),
            MomentDetector(self.playbook),
            self.clock,
            on_decisions=self._decided,
        )
        self._sends: list[Send] = []
        self.refused = 0  # simulated messages the engine's validation refused

    def _user(self, customer_id: str) -> str | None:
        canonical = self.store.canonical(customer_id) or customer_id
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
        self.engine.ingest([parsed])
        self.clock.set(max(self.clock.now_ms(), parsed.timestamp_ms))
        self.stage.catch_up()
        return self._drain()

    def still_wanted(self, send: Send) -> bool:
        """Whether a planned send still stands: not if the engine called it off."""
        if send.decision_id is None:
            return True
        decision = self.stage.moments.decision(send.decision_id)
        return decision is None or decision.status != "cancelled"

    def on_tick(self, now_ms: int) -> Sequence[Send]:
        self.clock.set(max(self.clock.now_ms(), now_ms))
        self.stage.tick()
        return self._drain()
