"""Conditions: what an event and a profile must be for a definition to react."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from momently.moments.conditions import Condition, compile_condition
from momently.state.profile import Stamped, apply_event, new_profile
from tests.moments.factories import T0, page, track


def holds(spec: Any, event: Any, profile: Any = None) -> bool:
    test = compile_condition(Condition.model_validate(spec))
    return test(event, profile)


def test_event_name_matches_track_and_page_names() -> None:
    assert holds({"event": "Order Completed"}, track("Order Completed", T0))
    assert not holds({"event": "Order Completed"}, track("Product Viewed", T0))
    assert holds({"event": ["Store Locator", "X"]}, page("Store Locator", T0))
    assert not holds({"event": "Store Locator", "type": "track"}, page("Store Locator", T0))


@pytest.mark.parametrize(
    ("op", "value", "expected"),
    [
        (">=", 100, True),
        (">", 120, False),
        ("<", 121, True),
        ("==", 120, True),
        ("!=", 120, False),
        ("in", [1, 120], True),
        ("not_in", [1, 120], False),
        ("exists", None, True),
    ],
)
def test_numeric_and_set_operators(op: str, value: object, expected: bool) -> None:
    event = track("Product Viewed", T0, properties={"price": 120})
    spec = {
        "event": "Product Viewed",
        "where": [{"path": "properties.price", "op": op, "value": value}],
    }
    assert holds(spec, event) is expected


def test_missing_paths_never_match_comparisons_but_match_missing() -> None:
    event = track("Product Viewed", T0)
    assert not holds({"where": [{"path": "properties.price", "op": ">=", "value": 0}]}, event)
    assert holds({"where": [{"path": "properties.price", "op": "missing"}]}, event)
    assert holds({"where": [{"path": "properties.price", "op": "!=", "value": 3}]}, event)


def test_strings_contains_is_case_insensitive_and_regex_searches() -> None:
    event = track("Products Searched", T0, properties={"query": "Toaster shop NEAR me"})
    assert holds(
        {"where": [{"path": "properties.query", "op": "contains", "value": "near me"}]}, event
    )
    assert holds(
        {"where": [{"path": "properties.query", "op": "matches", "value": "(?i)shop"}]}, event
    )
    assert not holds(
        {"where": [{"path": "properties.query", "op": "starts_with", "value": "shop"}]}, event
    )


def test_nested_context_paths() -> None:
    event = track("Application Opened", T0, device="d1")
    assert holds({"where": [{"path": "context.device.type", "op": "==", "value": "ios"}]}, event)


def test_profile_traits_and_consent() -> None:
    first = track("Signed Up", T0, traits={"household_size": 5})
    profile = apply_event(new_profile("c1", first), first)
    assert profile.traits["household_size"] == Stamped(5, T0, first.message_id)
    spec = {"profile": [{"path": "traits.household_size", "op": ">=", "value": 4}]}
    assert holds(spec, first, profile)
    assert not holds(spec, first, None)
    assert not holds(
        {"profile": [{"path": "consent.email", "op": "==", "value": True}]}, first, profile
    )


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        (
            {"where": [{"path": "properties.x", "op": ">=", "value": "ten"}]},
            "value must be a number",
        ),
        ({"where": [{"path": "properties.x", "op": "in", "value": 3}]}, "needs a list"),
        (
            {"where": [{"path": "properties.x", "op": "matches", "value": "("}]},
            "regular expression",
        ),
        ({"where": [{"path": "nowhere.x", "op": "exists"}]}, "must start with one of"),
        ({"profile": [{"path": "properties.x", "op": "exists"}]}, "must start with one of"),
        ({"where": [{"path": "properties.x", "op": "~="}]}, "Input should be"),
        ({"evnt": "x"}, "Extra inputs"),
    ],
)
def test_bad_conditions_are_refused_with_the_reason(spec: dict[str, object], reason: str) -> None:
    with pytest.raises(ValidationError, match=reason.replace("(", r"\(")):
        Condition.model_validate(spec)
