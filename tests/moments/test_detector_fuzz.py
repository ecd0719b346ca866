"""Any event the ingest API accepts goes through the detector without an error.

Events are already validated Segment messages, but their properties and
context are free-form JSON: a ``text`` that is a number, a location that is a
string, a rating of ``true``. The detector must read what it understands and
ignore the rest; a crash here would stall the moment stage on one event.
"""

from __future__ import annotations

from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from momently.events import Event, from_ms
from momently.moments.detector import CustomerState, MomentDetector, decode_state, encode_state
from momently.moments.model import MOMENT_KINDS
from momently.moments.playbook import load_playbook
from tests.moments.factories import T0

DETECTOR = MomentDetector(load_playbook())
NAMES = [
    "Products Searched", "Product Viewed", "Product Added", "Order Completed", "Location Updated",
    "Beacon Sighted", "Social Post", "Support Message", "Review Posted", "Payment Failed",
    "Subscribed", "Unsubscribed", "Application Opened", "Checkout Started", "Store Locator",
]  # fmt: skip
KEYS = [
    "text", "query", "rating", "uuid", "major", "minor", "product_id", "category", "price",
    "revenue", "topic", "error", "fulfilment", "products", "title", "search", "url",
]  # fmt: skip
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.text(max_size=60),
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(KEYS), inner, max_size=4)
    ),
    max_leaves=12,
)
properties = st.dictionaries(st.sampled_from(KEYS), json_values, max_size=6)
location = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {
            "latitude": json_values | st.floats(-90, 90),
            "longitude": json_values | st.floats(-180, 180),
        },
        optional={"accuracy": json_values},
    ),
)
context = st.fixed_dictionaries(
    {},
    optional={
        "location": location,
        "device": st.dictionaries(st.sampled_from(["id", "type", "token"]), json_values),
    },
)


@st.composite
def events(draw: st.DrawFn) -> Event:
    kind = draw(st.sampled_from(["track", "page", "screen"]))
    name = draw(st.sampled_from(NAMES))
    at = T0 + draw(st.integers(0, 30 * 86_400_000))
    return Event(
        message_id=f"m{draw(st.integers(0, 10**9))}",
        type=kind,
        timestamp=from_ms(at),
        received_at=from_ms(at),
        user_id="u",
        event=name if kind == "track" else None,
        name=None if kind == "track" else name,
        properties=draw(properties),
        context=draw(context),
    )


@settings(max_examples=400)
@given(st.lists(events(), min_size=1, max_size=8))
def test_any_event_is_detected_without_error(stream: list[Event]) -> None:
    state = CustomerState()
    for event in sorted(stream, key=lambda e: e.timestamp_ms):
        found = DETECTOR.on_event("c1", state, event, None)
        for moment in found.moments:
            assert moment.kind in MOMENT_KINDS
            assert 0 <= moment.confidence <= 1
            assert moment.expires_ms > moment.at_ms
            msgspec.json.encode(moment)
        state = decode_state(encode_state(state))  # what the store keeps must round-trip
    due = DETECTOR.next_due(state, None, T0)
    if due is not None:
        DETECTOR.on_time("c1", state, None, due)


def test_a_hostile_text_is_capped_not_crashed() -> None:
    text: Any = "😡 " * 20_000
    event = Event(
        message_id="m-big",
        type="track",
        timestamp=from_ms(T0),
        received_at=from_ms(T0),
        user_id="u",
        event="Social Post",
        properties={"text": text},
    )
    found = DETECTOR.on_event("c1", CustomerState(), event, None)
    assert any(m.kind == "friction" for m in found.moments)
