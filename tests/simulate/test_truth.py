"""Answers come from the hidden truth: no need, no order; opt-outs only past tolerance."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from momently.simulate import (
    ANY,
    DAY,
    HOUR,
    PERSONAS,
    START,
    Message,
    Population,
    Send,
    World,
    respond,
    run_policy,
    to_event,
)
from momently.simulate.personas import Persona
from momently.simulate.state import State

NO_NEEDS = tuple(dataclasses.replace(p, needs=(), doughnut=0.0) for p in PERSONAS)


class Spam:
    """Every customer, every hour, every channel, an offer that matches anything."""

    name = "spam"

    def __init__(self, users: Sequence[str]) -> None:
        self.users = users

    def on_event(self, event: Message) -> Sequence[Send]:
        return ()

    def on_tick(self, now_ms: int) -> Sequence[Send]:
        return [
            Send(u, ch, "anything", ANY, now_ms, f"spam-{u}-{ch}-{now_ms}")
            for u in self.users
            for ch in ("push", "email", "sms", "in_app")
        ]


def test_a_customer_with_no_need_never_buys() -> None:
    people = Population(40, seed=4, personas=NO_NEEDS)
    world = World(people)
    result = run_policy(Spam([c.user_id for c in people]), world, days=3, holdout=0.0, tick_ms=HOUR)
    assert result.delivered > 1000
    assert result.conversions == 0 and result.revenue == 0
    assert not any(s.needs for s in world.states)


def test_opt_out_only_after_pressure_beyond_tolerance() -> None:
    people = Population(60, seed=8)
    world = World(people)
    answers = []
    for hour in range(0, 14 * 24, 3):
        now = START + hour * HOUR
        list(world.events_until(now))
        for c in people:
            if c.email is not None:
                answers.append((c, world.deliver(Send(c.user_id, "email", "x", ANY, now))))
    opted = [(c, a) for c, a in answers if a.opted_out]
    assert opted, "relentless email drives some customers away"
    assert all(a.pressure > c.tolerance for c, a in opted)
    calm = [a for c, a in answers if a.pressure <= c.tolerance]
    assert calm and not any(a.opted_out for a in calm)
    refused = [a for _, a in answers if not a.delivered]
    assert refused and {a.reason for a in refused} == {"unsubscribed"}


def test_an_answer_is_a_pure_function_of_truth_and_message() -> None:
    people = Population(5, seed=2)
    c = people[1]
    send = Send(c.user_id, "push", "o", "toasters", START + 9 * HOUR, "d-7")
    first = respond(c, State(), send, seed=2, catalog=people.catalog)
    assert first == respond(c, State(), send, seed=2, catalog=people.catalog)


def test_a_matching_message_meets_a_live_need() -> None:
    eager = Persona(
        "eager",
        1.0,
        "professional",
        household=(2, 2),
        commutes=0.0,
        routes=(),
        leave=8.0,
        back=18.0,
        sessions=1.0,
        peaks=(9.0, 20.0),
        channels=(0.95, 0.95, 0.95, 0.95),
        tolerance=100.0,
        needs=(("toaster", 1.0),),
        app=1.0,
    )
    people = Population(30, seed=6, personas=(eager,))
    world = World(people)
    list(world.events_until(START + DAY))  # a toaster dies for most on day one
    bought = 0
    for c, st in zip(people, world.states, strict=True):
        if not st.needs:
            continue
        need = st.needs[0]
        when = max(need.arose_ms, world.now_ms) + HOUR
        list(world.events_until(when))
        if not need.live(world.now_ms):
            continue
        for k in range(6):
            answer = world.deliver(
                Send(c.user_id, "email", "t", "toasters", world.now_ms, f"m-{c.index}-{k}")
            )
            bought += answer.bought
    list(world.events_until(START + 3 * DAY))
    assert bought > 0
    assert int(world.tally.attributed.sum()) > 0
    assert int(world.tally.attributed.sum()) <= int(world.tally.conversions.sum())


class Collect(Spam):
    """Spam that keeps every event it sees."""

    def __init__(self, users: Sequence[str]) -> None:
        super().__init__(users)
        self.events: list[Message] = []

    def on_event(self, event: Message) -> Sequence[Send]:
        self.events.append(event)
        return ()


def test_answers_are_events_momently_accepts() -> None:
    people = Population(40, seed=15)
    policy = Collect([c.user_id for c in people])
    run_policy(policy, World(people), days=3, holdout=0.0, tick_ms=6 * HOUR)
    names = {e.get("event") for e in policy.events}
    assert {
        "Email Opened",
        "Email Link Clicked",
        "Push Notification Tapped",
        "Unsubscribed",
    } <= names
    for event in policy.events:
        assert to_event(event).message_id == event["messageId"]
    answered = [e for e in policy.events if "decision_id" in e.get("properties", {})]
    assert answered and all(e["properties"]["decision_id"].startswith("spam-") for e in answered)
