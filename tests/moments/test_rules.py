"""Moment definitions: plain, window, sequence and absence triggers, cooldowns, timers."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from momently.moments.rules import Firing, MomentDef, RuleSet, RulesState
from tests.moments.factories import HOUR, MINUTE, T0, track


def rules(*defs: dict[str, Any]) -> RuleSet:
    return RuleSet(tuple(MomentDef.model_validate({"kind": "buy", **d}) for d in defs))


def feed(ruleset: RuleSet, events: list[Any], state: RulesState | None = None) -> list[Firing]:
    state = state or RulesState()
    fired: list[Firing] = []
    for event in events:
        state, firings, _ = ruleset.on_time(state, event.timestamp_ms)
        fired += firings
        state, firings, _ = ruleset.on_event(state, event, None)
        fired += firings
    return fired


def test_plain_definition_fires_on_a_matching_event_and_respects_cooldown() -> None:
    ruleset = rules({"name": "bought", "when": {"event": "Order Completed"}, "cooldown": "1h"})
    events = [track("Order Completed", T0 + m * MINUTE) for m in (0, 30, 61)]
    fired = feed(ruleset, events)
    assert [f.at_ms for f in fired] == [T0, T0 + 61 * MINUTE]
    assert fired[0].trigger == events[0].message_id


def test_cooled_firings_are_counted() -> None:
    ruleset = rules({"name": "bought", "when": {"event": "Order Completed"}, "cooldown": "1h"})
    state = RulesState()
    state, first, cooled = ruleset.on_event(state, track("Order Completed", T0), None)
    assert (len(first), cooled) == (1, 0)
    state, again, cooled = ruleset.on_event(state, track("Order Completed", T0 + 1), None)
    assert (len(again), cooled) == (0, 1)


def test_window_count_fires_at_the_threshold_within_the_window_only() -> None:
    ruleset = rules(
        {
            "name": "comparing",
            "when": {"event": "Product Viewed"},
            "window": {"agg": "count", "over": "20m", "value": 3},
            "cooldown": 0,
        }
    )
    slow = [track("Product Viewed", T0 + m * 15 * MINUTE) for m in range(4)]
    assert feed(ruleset, slow) == []
    quick = [track("Product Viewed", T0 + m * 5 * MINUTE, user="u2") for m in range(3)]
    assert [f.at_ms for f in feed(ruleset, quick)] == [T0 + 10 * MINUTE]


def test_window_sum_reads_the_field() -> None:
    ruleset = rules(
        {
            "name": "big-cart",
            "when": {"event": "Product Added"},
            "window": {"agg": "sum", "field": "properties.price", "over": "2h", "value": 200},
        }
    )
    events = [track("Product Added", T0 + i * MINUTE, properties={"price": 90}) for i in range(3)]
    fired = feed(ruleset, events)
    assert [f.at_ms for f in fired] == [T0 + 2 * MINUTE]
    assert fired[0].details == {"window": 270}


def test_sequence_fires_only_in_order_and_within_time() -> None:
    spec = {
        "name": "search-then-directions",
        "sequence": {
            "steps": [{"event": "Products Searched"}, {"event": "Directions Requested"}],
            "within": "30m",
        },
    }
    in_order = [track("Products Searched", T0), track("Directions Requested", T0 + 10 * MINUTE)]
    assert len(feed(rules(spec), in_order)) == 1
    backwards = [track("Directions Requested", T0), track("Products Searched", T0 + MINUTE)]
    assert feed(rules(spec), backwards) == []
    too_slow = [track("Products Searched", T0), track("Directions Requested", T0 + 31 * MINUTE)]
    assert feed(rules(spec), too_slow) == []


VIEWED_NOT_BOUGHT = {
    "name": "viewed-not-bought",
    "absence": {
        "after": {"event": "Product Viewed"},
        "times": 2,
        "missing": {"event": "Order Completed"},
        "within": "24h",
    },
}


def test_absence_fires_when_time_runs_out_and_not_before() -> None:
    ruleset = rules(VIEWED_NOT_BOUGHT)
    state = RulesState()
    for at in (T0, T0 + HOUR):
        state, fired, _ = ruleset.on_event(state, track("Product Viewed", at), None)
        assert fired == []
    deadline = T0 + HOUR + 24 * HOUR
    assert ruleset.next_due(state) == deadline
    state, fired, _ = ruleset.on_time(state, deadline - 1)
    assert fired == []
    state, fired, _ = ruleset.on_time(state, deadline)
    assert [(f.definition.name, f.at_ms) for f in fired] == [("viewed-not-bought", deadline)]
    assert fired[0].trigger == f"timer:viewed-not-bought:{deadline}"
    assert ruleset.next_due(state) is None
    state, fired, _ = ruleset.on_time(state, deadline + HOUR)
    assert fired == []


def test_absence_needs_both_views_and_is_cancelled_by_a_purchase() -> None:
    one_view = [track("Product Viewed", T0), track("Anything", T0 + 25 * HOUR)]
    assert feed(rules(VIEWED_NOT_BOUGHT), one_view) == []
    bought = [
        track("Product Viewed", T0),
        track("Product Viewed", T0 + MINUTE),
        track("Order Completed", T0 + 2 * HOUR),
        track("Anything", T0 + 30 * HOUR),
    ]
    assert feed(rules(VIEWED_NOT_BOUGHT), bought) == []


def test_purchase_after_the_deadline_does_not_undo_the_moment() -> None:
    late = [
        track("Product Viewed", T0),
        track("Product Viewed", T0 + MINUTE),
        track("Order Completed", T0 + 25 * HOUR),
    ]
    fired = feed(rules(VIEWED_NOT_BOUGHT), late)
    assert [f.at_ms for f in fired] == [T0 + MINUTE + 24 * HOUR]


def test_definitions_fire_in_playbook_order() -> None:
    ruleset = rules(
        {"name": "second", "when": {"event": "Order Completed"}},
        {"name": "first", "when": {}},
    )
    fired = feed(ruleset, [track("Order Completed", T0)])
    assert [f.definition.name for f in fired] == ["second", "first"]


def test_untouched_definitions_keep_no_state() -> None:
    ruleset = rules(VIEWED_NOT_BOUGHT, {"name": "b", "when": {"event": "Order Completed"}})
    state, _, _ = ruleset.on_event(RulesState(), track("Unrelated", T0), None)
    assert state.rules == {}


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ({"name": "x"}, "exactly one of"),
        ({"name": "x", "when": {}, "sequence": {"steps": [{}, {}], "within": 60}}, "exactly one"),
        (
            {"name": "x", "window": {"over": "1h"}, "absence": VIEWED_NOT_BOUGHT["absence"]},
            "add `when`",
        ),
        ({"name": "Bad Name", "when": {}}, "String should match pattern"),
        ({"name": "x", "when": {}, "cooldown": "soon"}, "not a duration"),
        ({"name": "x", "sequence": {"steps": [{}], "within": 60}}, "at least 2"),
    ],
)
def test_bad_definitions_are_refused(spec: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValidationError, match=reason):
        MomentDef.model_validate({"kind": "buy", **spec})
