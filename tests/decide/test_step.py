"""The decide step: reservations across simultaneous moments, feedback, cancellations."""

from __future__ import annotations

from typing import Any

import msgspec

from momently.decide.signals import Signals
from momently.decide.spec import DecideSpec
from momently.decide.step import Decider, DecideState
from momently.events import Event, from_ms
from tests.decide.factories import HOUR, MONDAY_NY, SPEC, moment, profile

NOON = MONDAY_NY + 12 * HOUR


def decider(**changes: Any) -> Decider:
    """The shared decision section with no one held out."""
    offers = [{**o, "holdout": 0.0} for o in SPEC["offers"]]
    return Decider(DecideSpec.model_validate({**SPEC, "offers": offers, "holdout": 0.0, **changes}))


def track(name: str, at: int, **properties: Any) -> Event:
    return Event(
        message_id=f"m-{name}-{at}",
        type="track",
        event=name,
        timestamp=from_ms(at),
        received_at=from_ms(at),
        user_id="c1",
        properties=properties,
    )


def test_two_simultaneous_moments_cannot_both_pass_a_cap_of_one() -> None:
    step = decider(caps=[{"max": 1, "per": "day"}], min_gap=0)
    state = DecideState()
    both = [moment(NOON, name="a"), moment(NOON, name="b")]
    first, second = step.decide(state, both, profile(), Signals())
    assert first.action == "send"
    assert second.action in ("silent", "schedule")
    if second.action == "schedule":  # only on another local day
        assert second.send_at_ms is not None and second.send_at_ms >= MONDAY_NY + 24 * HOUR
    else:
        assert any(b.startswith("cap") for b in second.bound)
    assert len(state.contacts.items) == 1 + (second.action == "schedule")


def test_the_state_round_trips_through_msgpack() -> None:
    step = decider()
    state = DecideState()
    step.decide(state, [moment(NOON)], profile(), Signals())
    data = msgspec.msgpack.encode(state)
    assert msgspec.msgpack.decode(data, type=DecideState) == state


def test_an_engagement_teaches_the_bandit_and_expiry_teaches_it_too() -> None:
    step = decider(arbitration={"exploration": 0.0})
    state = DecideState()
    [sent] = step.decide(state, [moment(NOON, ttl=HOUR)], profile(), Signals())
    assert sent.action == "send" and len(state.pending) == 1
    before = step.bandit.n_updates
    out = step.on_event(
        state, track("Push Notification Tapped", NOON + 60_000, decision_id=sent.decision_id)
    )
    assert out.learned == 1 and step.bandit.n_updates == before + 1 and not state.pending
    # family-toaster is capped at one a week now; an apology is another matter
    upset = moment(NOON + 2 * HOUR, ttl=HOUR, kind="friction")
    [other] = step.decide(state, [upset], profile(), Signals())
    assert (other.action, other.offer) == ("send", "sorry")
    assert step.next_due(state) == NOON + 3 * HOUR
    assert step.on_time(state, NOON + 3 * HOUR).learned == 1 and not state.pending


def test_a_purchase_naming_no_decision_credits_the_latest_one_sent() -> None:
    """Last touch: the purchase teaches the bandit through the latest send whose moment is
    still open; one not yet sent, or whose window closed, gets nothing."""
    step = decider(arbitration={"exploration": 0.0})
    state = DecideState()
    [first] = step.decide(state, [moment(NOON, ttl=4 * HOUR)], profile(), Signals())
    upset = moment(NOON + 2 * HOUR, ttl=4 * HOUR, kind="friction")
    [latest] = step.decide(state, [upset], profile(), Signals())
    assert first.action == latest.action == "send" and len(state.pending) == 2
    before = step.bandit.n_updates
    out = step.on_event(state, track("Order Completed", NOON + 3 * HOUR, revenue=20))
    assert out.learned == 1 and step.bandit.n_updates == before + 1
    assert [p.decision_id for p in state.pending] == [first.decision_id]
    # the first's window is still open: a second purchase is credited to it
    assert step.on_event(state, track("Order Completed", NOON + 3 * HOUR + 1)).learned == 1
    assert not state.pending
    # nothing pending: a purchase teaches nothing
    assert step.on_event(state, track("Order Completed", NOON + 4 * HOUR)).learned == 0


def test_learning_moves_relevance_for_that_offer() -> None:
    step = decider(arbitration={"exploration": 0.0})
    context = {"kind=buy": 1.0}
    before = step.arbiter.relevance.estimate(context, [step._features["family-toaster"]], 0.2)
    for i in range(30):
        state = DecideState()
        [d] = step.decide(state, [moment(NOON + i * 3 * HOUR, ttl=HOUR)], profile(), Signals())
        if d.offer == "family-toaster":
            step.on_event(
                state, track("Email Link Clicked", d.at_ms + 1, decision_id=d.decision_id)
            )
    assert step.dirty
    after = step.arbiter.relevance.estimate(context, [step._features["family-toaster"]], 0.2)
    assert after[0] > before[0]


def test_a_purchase_cancels_scheduled_sends_and_gives_the_reservation_back() -> None:
    step = decider(arbitration={"exploration": 0.0})
    state = DecideState()
    late = MONDAY_NY + 22 * HOUR  # quiet hours: the send waits for the morning
    [d] = step.decide(state, [moment(late, ttl=12 * HOUR)], profile(), Signals())
    assert d.action == "schedule"
    assert len(state.contacts.items) == 1
    out = step.on_event(state, track("Order Completed", late + HOUR, revenue=20))
    assert out.cancelled == [(d.decision_id, "the customer bought already")]
    assert not state.contacts.items and not state.pending


def test_an_opt_out_cancels_marketing_sends() -> None:
    step = decider(arbitration={"exploration": 0.0})
    state = DecideState()
    late = MONDAY_NY + 22 * HOUR
    [d] = step.decide(state, [moment(late, ttl=12 * HOUR)], profile(), Signals())
    out = step.on_event(state, track("Unsubscribed", late + 60_000, channel="push"))
    assert [c[0] for c in out.cancelled] == [d.decision_id]


def test_held_out_decisions_reserve_but_teach_nothing() -> None:
    step = Decider(DecideSpec.model_validate({**SPEC, "holdout": 0.99}))
    state = DecideState()
    [d] = step.decide(state, [moment(NOON)], profile(), Signals())
    assert d.holdout == "global" and d.status == "held_out"
    assert len(state.contacts.items) == 1 and not state.pending
