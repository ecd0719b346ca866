"""``normalise`` builds each Event by position (a keyword call costs 4 µs a message):
the field order it relies on is pinned here, and its result equals the keyword build."""

from __future__ import annotations

import msgspec

from momently.events import Event, decode_message, from_ms, normalise

RECEIVED_MS = 1_790_000_000_000

FIELDS = (
    "message_id", "type", "timestamp", "received_at", "source", "user_id", "anonymous_id",
    "previous_id", "group_id", "event", "name", "category", "properties", "traits", "context",
    "integrations", "original_timestamp", "sent_at",
)  # fmt: skip


def test_event_fields_are_in_the_order_normalise_passes_them() -> None:
    assert Event.__struct_fields__ == FIELDS


def test_normalise_gives_what_the_keyword_build_gives() -> None:
    message = {
        "type": "track",
        "messageId": "m-1",
        "userId": 42,
        "anonymousId": "a-1",
        "groupId": "g-1",
        "event": "Product Viewed",
        "name": "n",
        "category": "c",
        "properties": {"sku": "s"},
        "traits": {"plan": "pro"},
        "context": {"locale": "en-GB"},
        "integrations": {"All": True},
        "timestamp": "2026-09-21T14:13:19.500Z",
        "sentAt": "2026-09-21T14:13:20.000Z",
    }
    raw = decode_message(msgspec.json.encode(message))
    event = normalise(raw, received_ms=RECEIVED_MS, source="src", raw_size=100, ip="10.0.0.1")
    assert event == Event(
        message_id="m-1",
        type="track",
        timestamp=from_ms(RECEIVED_MS - 500),
        received_at=from_ms(RECEIVED_MS),
        source="src",
        user_id="42",
        anonymous_id="a-1",
        previous_id=None,
        group_id="g-1",
        event="Product Viewed",
        name="n",
        category="c",
        properties={"sku": "s"},
        traits={"plan": "pro"},
        context={"locale": "en-GB", "ip": "10.0.0.1"},
        integrations={"All": True},
        original_timestamp=raw.timestamp,
        sent_at=raw.sent_at,
    )
