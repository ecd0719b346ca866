"""Off-policy evaluation of logged decisions under changed levers, on a known truth."""

from __future__ import annotations

import random

import pytest

from momently.decide.records import Candidate, Decision
from momently.events import Event, from_ms
from momently.measure.offline import PolicyChange, distribution, estimate, rewards, rounds

TRUE_RATE = {"kettle": 0.10, "toaster": 0.30}


def logged(n: int, epsilon: float, seed: int = 3) -> tuple[list[Decision], list[Event]]:
    """A logging policy that prefers the kettle (higher score) and explores with epsilon."""
    rng = random.Random(seed)  # noqa: S311 - a simulation, not security
    decisions, events = [], []
    for i in range(n):
        explore = rng.random() < epsilon
        offer = rng.choice(["kettle", "toaster"]) if explore else "kettle"
        probability = epsilon / 2 + (1 - epsilon if offer == "kettle" else 0.0)
        did = f"de-{i}"
        decisions.append(
            Decision(
                decision_id=did,
                customer_id=f"c{i}",
                moment_id=f"mo-{i}",
                moment_name="m",
                moment_kind="buy",
                at_ms=i * 1000,
                action="send",
                offer=offer,
                channel="push",
                send_at_ms=i * 1000,
                probability=probability,
                candidates=[
                    Candidate(offer="kettle", channel="push", score=2.0),
                    Candidate(offer="toaster", channel="push", score=1.0),
                    Candidate(offer="mixer", refused="cap: 1 of 1 per day already"),
                    Candidate(offer="(silence)"),
                ],
            )  # fmt: skip
        )
        if rng.random() < TRUE_RATE[offer]:
            events.append(
                Event(
                    message_id=f"m-{i}",
                    type="track",
                    event="Push Notification Tapped",
                    timestamp=from_ms(i * 1000 + 60_000),
                    received_at=from_ms(i * 1000 + 60_000),
                    user_id=f"c{i}",
                    properties={"decision_id": did},
                )  # fmt: skip
            )
    return decisions, events


def test_rewards_count_only_engagements_naming_the_decision_in_time() -> None:
    decisions, events = logged(200, 0.5)
    earned = rewards(decisions, events, window_ms=3_600_000)
    assert sum(earned) == len(events)
    assert sum(rewards(decisions, events, window_ms=1_000)) == 0


def test_a_policy_is_a_distribution_over_the_rounds_actions() -> None:
    decisions, events = logged(10, 0.5)
    [first, *_] = rounds(decisions, rewards(decisions, events, 3_600_000))
    assert first.actions == ("(silence)", "kettle", "toaster")  # the refused mixer has no support
    assert distribution(first, PolicyChange()) == [0.0, 1.0, 0.0]
    assert distribution(first, PolicyChange(levers={"toaster": 3.0})) == [0.0, 0.0, 1.0]
    assert distribution(first, PolicyChange(disabled=("kettle", "toaster"))) == [1.0, 0.0, 0.0]
    spread = distribution(first, PolicyChange(exploration=0.2))
    assert spread == pytest.approx([0.0, 0.9, 0.1]) and sum(spread) == pytest.approx(1.0)


def test_the_value_of_promoting_the_toaster_is_recovered() -> None:
    decisions, events = logged(6000, epsilon=0.4)
    found = rounds(decisions, rewards(decisions, events, 3_600_000))
    result = estimate(found, PolicyChange(levers={"toaster": 3.0}), n_boot=300)
    for name in ("ips", "snips", "dr"):
        assert result[name].low <= TRUE_RATE["toaster"] <= result[name].high, name
    logging_value = estimate(found, PolicyChange(exploration=0.4), n_boot=100)["snips"].value
    assert logging_value == pytest.approx(sum(r.reward for r in found) / len(found), abs=0.02)


def test_nothing_to_evaluate_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="no logged decisions"):
        estimate([], PolicyChange())
