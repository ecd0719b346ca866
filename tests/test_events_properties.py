"""Property tests for the event model: decoding, validation, normalisation, the log codec."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any, Final

import msgspec
import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from momently.errors import InvalidInput, InvalidMessage
from momently.events import (
    MAX_MESSAGE_BYTES,
    MESSAGE_TYPES,
    Event,
    decode_batch,
    decode_event,
    decode_message,
    encode_event,
    normalise,
)

EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
OFFSETS: Final[list[tzinfo | None]] = [
    None,  # no offset: read as UTC
    UTC,
    timezone(timedelta(hours=5, minutes=30)),
    timezone(timedelta(hours=-8)),
    timezone(timedelta(hours=14)),
]
KINDS: Final = sorted(MESSAGE_TYPES)
ABSENT: Final = object()  # a field left out of the message altogether
BLANK_IDS: Final = [ABSENT, None, "", " ", "\t\n"]
RAW_FIELDS: Final = [
    "type",
    "messageId",
    "userId",
    "anonymousId",
    "previousId",
    "groupId",
    "event",
    "name",
    "category",
    "properties",
    "traits",
    "context",
    "integrations",
    "timestamp",
    "originalTimestamp",
    "sentAt",
    "writeKey",
    "batch",
]


def exact_ms(moment: datetime) -> int:
    """Milliseconds since the epoch in integer arithmetic; no offset means UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - EPOCH) // timedelta(milliseconds=1)


json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
json_objects = st.dictionaries(st.text(max_size=10), json_values, max_size=5)
ids = st.one_of(
    st.text(min_size=1, max_size=40).filter(lambda s: bool(s.strip())),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
)
names = st.text(min_size=1, max_size=30).filter(lambda s: bool(s.strip()))
times = st.datetimes(
    min_value=datetime(2000, 1, 1),  # noqa: DTZ001 - bounds of st.datetimes are naive
    max_value=datetime(2050, 1, 1),  # noqa: DTZ001
    timezones=st.sampled_from(OFFSETS),
)
received = st.integers(
    min_value=exact_ms(datetime(2000, 1, 1, tzinfo=UTC)),
    max_value=exact_ms(datetime(2050, 1, 1, tzinfo=UTC)),
)
sources = st.text(max_size=12)


@st.composite
def messages(
    draw: st.DrawFn, *, kind: str | None = None, message_id: bool = True
) -> dict[str, Any]:
    """A message a Segment client could send: valid for its type, optional parts at random."""
    kind = kind or draw(st.sampled_from(KINDS))
    message: dict[str, Any] = {"type": kind}
    if kind == "alias":
        message["userId"] = draw(ids)
        message["previousId"] = draw(ids)
    else:
        which = draw(st.sampled_from(["userId", "anonymousId", "both"]))
        if which in ("userId", "both"):
            message["userId"] = draw(ids)
        if which in ("anonymousId", "both"):
            message["anonymousId"] = draw(ids)
    if kind == "group":
        message["groupId"] = draw(ids)
    if kind == "track":
        message["event"] = draw(names)
    if message_id and draw(st.booleans()):
        message["messageId"] = draw(st.text(max_size=40) | st.sampled_from(["", " ", "m-1"]))
    optional = {
        "name": names,
        "category": names,
        "properties": json_objects,
        "traits": json_objects,
        "context": json_objects,
        "integrations": json_objects,
        "timestamp": times,
        "originalTimestamp": times,
        "sentAt": times,
    }
    for field in draw(st.lists(st.sampled_from(sorted(optional)), unique=True)):
        message[field] = draw(optional[field])
    return message


def encode(message: dict[str, Any]) -> bytes:
    return msgspec.json.encode({k: v for k, v in message.items() if v is not ABSENT})


def normalised(data: bytes, *, received_ms: int = 1_700_000_000_000, source: str = "s") -> Event:
    raw = decode_message(data)
    return normalise(raw, received_ms=received_ms, source=source, raw_size=len(data))


def as_id(value: object) -> str | None:
    return None if value is None else str(value)


@given(messages(), received, sources, st.none() | json_objects)
def test_valid_messages_normalise_and_survive_the_log_codec(
    message: dict[str, Any], received_ms: int, source: str, batch_context: dict[str, Any] | None
) -> None:
    data = encode(message)
    assume(len(data) <= MAX_MESSAGE_BYTES)
    raw = decode_message(data)
    event = normalise(
        raw,
        received_ms=received_ms,
        source=source,
        raw_size=len(data),
        batch_context=batch_context,
    )
    kind = message["type"]
    assert event.type == kind
    assert event.source == source
    assert event.received_ms == received_ms
    assert event.user_id == as_id(message.get("userId"))
    assert event.anonymous_id == as_id(message.get("anonymousId"))
    assert event.previous_id == as_id(message.get("previousId"))
    assert event.group_id == as_id(message.get("groupId"))
    assert event.event == (message["event"] if kind == "track" else None)
    assert event.properties == message.get("properties", {})
    assert event.context == {**(batch_context or {}), **message.get("context", {})}
    sent_id = message.get("messageId")
    if sent_id is not None and sent_id.strip():
        assert event.message_id == sent_id
    else:
        assert event.message_id.startswith("auto-")

    data = encode_event(event)
    again = decode_event(data)
    assert again == event
    assert encode_event(again) == data


@given(
    messages(kind="track"),
    received,
    st.none() | times,
    st.none() | times,
    st.none() | times,
    st.none() | times,
)
def test_timestamp_is_corrected_for_client_clock_skew(
    message: dict[str, Any],
    received_ms: int,
    timestamp: datetime | None,
    original: datetime | None,
    sent_at: datetime | None,
    batch_sent_at: datetime | None,
) -> None:
    for field, value in (
        ("timestamp", timestamp),
        ("originalTimestamp", original),
        ("sentAt", sent_at),
    ):
        message.pop(field, None)
        if value is not None:
            message[field] = value
    data = encode(message)
    event = normalise(
        decode_message(data),
        received_ms=received_ms,
        source="s",
        raw_size=len(data),
        batch_sent_at=batch_sent_at,
    )
    client = timestamp or original
    sent = sent_at or batch_sent_at
    if client is None:
        expected = received_ms
    elif sent is not None:
        expected = received_ms - (exact_ms(sent) - exact_ms(client))
    else:
        expected = exact_ms(client)
    assert event.timestamp_ms == expected
    assert event.received_ms == received_ms
    assert event.original_timestamp == client
    assert event.sent_at == sent


@given(st.integers(min_value=0, max_value=4_102_444_800_000), st.sampled_from(OFFSETS))
@example(1_577_836_800_001, UTC)  # 2020-01-01T00:00:00.001Z, which float maths reads as .000
def test_millisecond_timestamps_are_read_exactly(ms: int, offset: tzinfo | None) -> None:
    moment = (EPOCH + timedelta(milliseconds=ms)).astimezone(offset or UTC)
    if offset is None:
        moment = moment.replace(tzinfo=None)
    data = encode({"type": "track", "event": "e", "userId": "u", "timestamp": moment})
    assert normalised(data).timestamp_ms == ms


@given(
    st.sampled_from([k for k in KINDS if k != "alias"]),
    st.sampled_from(BLANK_IDS),
    st.sampled_from(BLANK_IDS),
    st.sampled_from(["", "batch[0]", "batch[41]"]),
)
def test_a_message_without_user_or_anonymous_id_is_refused(
    kind: str, user: object, anonymous: object, prefix: str
) -> None:
    message = {
        "type": kind,
        "event": "e",
        "groupId": "g",
        "userId": user,
        "anonymousId": anonymous,
    }
    with pytest.raises(InvalidMessage) as caught:
        normalise(
            decode_message(encode(message)), received_ms=0, source="s", raw_size=1, field=prefix
        )
    assert caught.value.field == (f"{prefix}.userId" if prefix else "userId")


@given(
    st.sampled_from(BLANK_IDS),
    st.sampled_from([*BLANK_IDS, "u1", 7]),
    st.sampled_from(["", "batch[3]"]),
)
def test_an_alias_without_previous_id_or_user_id_is_refused(
    previous: object, user: object, prefix: str
) -> None:
    message = {"type": "alias", "previousId": previous, "userId": user}
    with pytest.raises(InvalidMessage) as caught:
        normalise(
            decode_message(encode(message)), received_ms=0, source="s", raw_size=1, field=prefix
        )
    at = prefix + "." if prefix else ""
    assert caught.value.field == at + "previousId"

    message["previousId"] = "anon-1"
    if user in BLANK_IDS:
        with pytest.raises(InvalidMessage) as caught:
            normalise(
                decode_message(encode(message)), received_ms=0, source="s", raw_size=1, field=prefix
            )
        assert caught.value.field == at + "userId"


@given(messages(kind="group"), st.sampled_from(BLANK_IDS))
def test_a_group_without_group_id_is_refused(message: dict[str, Any], group: object) -> None:
    message["groupId"] = group
    with pytest.raises(InvalidMessage) as caught:
        normalised(encode(message))
    assert caught.value.field == "groupId"


@given(messages(kind="track"), st.sampled_from([*BLANK_IDS, "   "]))
def test_a_track_without_event_name_is_refused(message: dict[str, Any], name: object) -> None:
    message["event"] = name
    with pytest.raises(InvalidMessage) as caught:
        normalised(encode(message))
    assert caught.value.field == "event"


@given(messages(), st.sampled_from(["userId", "anonymousId", "previousId", "groupId"]))
def test_an_overlong_id_is_refused(message: dict[str, Any], field: str) -> None:
    message[field] = "x" * 1025
    with pytest.raises(InvalidMessage) as caught:
        normalised(encode(message))
    assert caught.value.field == field


@given(messages(message_id=False), sources, sources, received, received)
def test_auto_message_id_is_deterministic_and_depends_on_the_source(
    message: dict[str, Any], source: str, other_source: str, at: int, later: int
) -> None:
    data = encode(message)
    first = normalised(data, source=source, received_ms=at)
    retry = normalised(data, source=source, received_ms=later)
    assert first.message_id.startswith("auto-")
    assert retry.message_id == first.message_id
    if other_source != source:
        assert normalised(data, source=other_source).message_id != first.message_id


@given(messages(message_id=False), messages(message_id=False))
def test_auto_message_ids_of_different_messages_differ(
    message: dict[str, Any], other: dict[str, Any]
) -> None:
    data, other_data = encode(message), encode(other)
    assume(decode_message(data) != decode_message(other_data))
    assert normalised(data).message_id != normalised(other_data).message_id


@given(st.sampled_from(KINDS), st.sampled_from(KINDS))
def test_auto_message_id_differs_between_endpoints(kind: str, other: str) -> None:
    """The same body posted to /v1/page and /v1/screen is two events, not a retry."""
    assume(kind != other)
    body = {"userId": "u1", "previousId": "a1", "groupId": "g1", "event": "e"}
    data = msgspec.json.encode(body)

    def event_id(hint: str) -> str:
        raw = decode_message(data)
        return normalise(
            raw, received_ms=0, source="s", raw_size=len(data), type_hint=hint
        ).message_id

    assert event_id(kind) != event_id(other)


# Arbitrary input: decoding and normalising raise InvalidInput subclasses or nothing.

fuzz_values = json_values | times | st.datetimes(timezones=st.sampled_from(OFFSETS)) | ids
fuzz_objects = st.dictionaries(
    st.sampled_from(RAW_FIELDS) | st.text(max_size=6), fuzz_values, max_size=8
)
fuzz_bytes = st.one_of(
    st.binary(max_size=200),
    fuzz_objects.map(msgspec.json.encode),
    st.builds(lambda b, cut: b[:cut], fuzz_objects.map(msgspec.json.encode), st.integers(0, 200)),
    st.builds(
        lambda depth, inner: (
            b'{"type":"track","properties":{"x":' + b"[" * depth + inner + b"]" * depth + b"}}"
        ),
        st.integers(1, 3000),
        st.sampled_from([b"", b"1", b'{"a":[]}']),
    ),
)


@given(fuzz_bytes, st.sampled_from(["", "batch[2]"]))
@example(b"[" * 5000 + b"]" * 5000, "")
@example(b'{"properties":' + b'{"a":' * 3000 + b"1" + b"}" * 3001, "")
def test_decode_message_raises_only_invalid_message(data: bytes, field: str) -> None:
    try:
        raw = decode_message(data, field=field)
    except InvalidMessage as error:
        assert error.field is not None
        assert error.field.startswith(field)
        return
    try:
        event = normalise(raw, received_ms=1_700_000_000_000, source="s", raw_size=len(data))
    except InvalidInput:
        return
    assert decode_event(encode_event(event)) == event


@given(
    st.one_of(
        fuzz_bytes,
        st.fixed_dictionaries(
            {"batch": st.lists(fuzz_objects, max_size=4)},
            optional={"sentAt": fuzz_values, "context": fuzz_values, "writeKey": fuzz_values},
        ).map(msgspec.json.encode),
    )
)
@example(b'{"batch":[' + b"[" * 5000 + b"]" * 5000 + b"]}")
@example(b'{"batch":[],"context":' + b"[" * 5000 + b"]" * 5000 + b"}")
def test_decode_batch_raises_only_invalid_message(data: bytes) -> None:
    try:
        batch = decode_batch(data)
    except InvalidMessage:
        return
    for index, item in enumerate(batch.batch):
        where = f"batch[{index}]"
        try:
            raw = decode_message(bytes(item), field=where)
            normalise(
                raw,
                received_ms=1_700_000_000_000,
                source="s",
                raw_size=len(item),
                field=where,
                batch_sent_at=batch.sent_at,
                batch_context=batch.context,
            )
        except InvalidInput as error:
            assert error.field is None or error.field.startswith(where)
