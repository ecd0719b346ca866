"""momently itself on the simulator: the real engine decides, simulated customers answer."""

from __future__ import annotations

from momently.moments.playbook import load_playbook
from momently.simulate import NoMessages, Population, compare
from momently.simulate.engine_policy import EnginePolicy, without_holdouts


def test_the_harness_keeps_the_only_holdout() -> None:
    playbook = without_holdouts(load_playbook())
    assert playbook.decide.holdout == 0.0
    assert all(o.holdout == 0.0 for o in playbook.decide.offers)
    assert load_playbook().decide.holdout > 0  # the shipped playbook is not changed


def test_the_engine_decides_and_the_simulated_customers_answer() -> None:
    policy = EnginePolicy()
    silent, engine = compare([NoMessages(), policy], Population(60, seed=5), days=3)
    assert silent.delivered == 0
    assert engine.requested > 0 and engine.delivered > 0, engine
    assert policy.refused == 0
    decisions = policy.stage.decided
    assert decisions >= engine.requested  # silence is decided too, and not requested
    # the simulated customers' answers came back into the engine as events
    names = {r.event.event for r in policy.store.read_log(0, 1_000_000)}
    assert names & {"Push Notification Tapped", "Email Opened", "Order Completed"}
