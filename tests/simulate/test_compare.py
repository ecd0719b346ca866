"""The comparison harness recovers effects whose truth is known."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from momently.simulate import (
    DAY,
    START,
    BatchAndBlast,
    EventTriggers,
    Message,
    NoMessages,
    Oracle,
    Persona,
    Population,
    Send,
    World,
    in_holdout,
    lift,
    run_policy,
    true_effect,
)
from momently.simulate.baselines import stamp_ms
from momently.simulate.simtime import local_hour

EAGER = Persona(
    "eager",
    1.0,
    "professional",
    household=(2, 4),
    commutes=0.0,
    routes=(),
    leave=8.0,
    back=18.0,
    sessions=2.0,
    peaks=(9.0, 20.0),
    channels=(0.8, 0.8, 0.8, 0.8),
    tolerance=30.0,
    needs=(("toaster", 0.06), ("beauty", 0.06), ("fashion", 0.06)),
    app=1.0,
)


def test_lift_recovers_a_planted_difference_in_rates() -> None:
    rng = np.random.default_rng(12)
    treated = (rng.random(4000) < 0.30).astype(float)
    holdout = (rng.random(4000) < 0.25).astype(float)
    for method in ("normal", "bootstrap"):
        est = lift("rate", treated, holdout, method=method, rounds=500, seed=1)
        assert est.low < 0.05 < est.high, method
        assert est.significant
        assert (est.treated_n, est.holdout_n) == (4000, 4000)


def test_lift_of_nothing_contains_zero() -> None:
    rng = np.random.default_rng(3)
    est = lift("rate", rng.random(3000) < 0.2, rng.random(3000) < 0.2)
    assert est.low < 0 < est.high and not est.significant


def test_the_comparison_recovers_the_true_effect_of_a_policy() -> None:
    people = Population(700, seed=21, personas=(EAGER,))
    world = World(people)
    treated = run_policy(Oracle(world), world, days=8, holdout=0.5)
    without = run_policy(NoMessages(), World(people), days=8, holdout=0.5)
    rate, money = true_effect(treated, without)
    assert rate > 0 and money > 0
    est = treated.conversion
    assert est.low < rate < est.high, (est, rate)
    assert est.significant and est.difference > 0
    assert est.treated_n + est.holdout_n == 700
    assert treated.revenue_lift.low < money < treated.revenue_lift.high


def test_holdout_is_stable_near_its_share_and_never_messaged() -> None:
    ids = [f"sim0-{i}" for i in range(20_000)]
    share = sum(in_holdout(u, 0.1) for u in ids) / len(ids)
    assert abs(share - 0.1) < 0.01
    assert [in_holdout(u, 0.1) for u in ids[:50]] == [in_holdout(u, 0.1) for u in ids[:50]]
    people = Population(200, seed=2)
    world = World(people)
    result = run_policy(BatchAndBlast(), world, days=3, holdout=0.2)
    assert result.held_out > 0 and result.delivered > 0
    assert int(world.tally.messages[result.held].sum()) == 0


class Recorder:
    def __init__(self, inner: BatchAndBlast | EventTriggers) -> None:
        self.inner = inner
        self.name = inner.name
        self.sends: list[Send] = []
        self.stamps: list[int] = []  # when the events that drew sends happened

    def on_event(self, event: Message) -> Sequence[Send]:
        out = self.inner.on_event(event)
        self.sends.extend(out)
        self.stamps.extend(stamp_ms(event) for _ in out)
        return out

    def on_tick(self, now_ms: int) -> Sequence[Send]:
        out = self.inner.on_tick(now_ms)
        self.sends.extend(out)
        return out


def test_batch_and_blast_emails_everyone_at_ten_local_once_a_day() -> None:
    people = Population(150, seed=13)
    policy = Recorder(BatchAndBlast())
    run_policy(policy, World(people), days=4, holdout=0.0)
    assert policy.sends
    zones = {c.user_id: c.timezone for c in people}
    assert {local_hour(zones[s.customer], s.send_at) for s in policy.sends} == {10}
    assert {s.channel for s in policy.sends} == {"email"}
    per_day = {(s.customer, (s.send_at - START) // DAY) for s in policy.sends}
    assert len(per_day) == len(policy.sends)


def test_event_triggers_answer_searches_at_once() -> None:
    people = Population(150, seed=13)
    policy = Recorder(EventTriggers())
    result = run_policy(policy, World(people), days=3, holdout=0.0)
    searches = [s for s in policy.sends if s.offer_id.startswith("search-")]
    assert searches and all(
        s.send_at == stamp for s, stamp in zip(searches, policy.stamps, strict=True)
    )
    baskets = [s for s in policy.sends if s.offer_id == "cart-reminder"]
    assert baskets and {s.channel for s in policy.sends} <= {"push", "email"}
    assert result.requested == len(policy.sends)


def test_a_run_is_deterministic() -> None:
    people = Population(120, seed=30)
    first = run_policy(EventTriggers(), World(people), days=2)
    second = run_policy(EventTriggers(), World(people), days=2)
    assert (first.events, first.delivered, first.conversions, first.revenue, first.opt_outs) == (
        second.events,
        second.delivered,
        second.conversions,
        second.revenue,
        second.opt_outs,
    )
    assert (first.orders == second.orders).all() and first.conversion == second.conversion


class SeesAll(EventTriggers):
    """Event triggers shown every event: what they do must not change."""

    wants = None  # type: ignore[assignment]


def test_showing_a_policy_less_changes_nothing_but_speed() -> None:
    people = Population(120, seed=31)
    narrow = run_policy(EventTriggers(), World(people), days=2)
    wide = run_policy(SeesAll(), World(people), days=2)
    assert narrow.seen < wide.seen == wide.events == narrow.events
    assert (narrow.delivered, narrow.conversions, narrow.revenue, narrow.opt_outs) == (
        wide.delivered,
        wide.conversions,
        wide.revenue,
        wide.opt_outs,
    )


class ChangesItsMind:
    """Plans one message per customer for tomorrow, then withdraws every other one."""

    name = "changes-its-mind"
    wants = frozenset({"identify"})

    def on_event(self, event: Message) -> Sequence[Send]:
        user = str(event["userId"])
        return [Send(user, "email", "o", "toasters", START + DAY, f"plan-{user}")]

    def on_tick(self, now_ms: int) -> Sequence[Send]:
        return ()

    def still_wanted(self, send: Send) -> bool:
        return int(send.customer.rsplit("-", 1)[1]) % 2 == 0


def test_a_policy_may_withdraw_a_planned_send() -> None:
    people = Population(60, seed=2)
    world = World(people)
    result = run_policy(ChangesItsMind(), world, days=2, holdout=0.0)
    assert result.refused.get("withdrawn", 0) > 0
    odd = [c.index for c in people if c.index % 2]
    assert int(world.tally.messages[odd].sum()) == 0
    assert result.delivered > 0
