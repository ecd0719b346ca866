"""The event model (Segment's spec) and its validation.

A client message is decoded into :class:`RawMessage`, checked against the rules
for its type, and normalised into an :class:`Event`: ids as strings, the
timestamp corrected for the client's clock skew, ``receivedAt`` stamped, the
batch-level ``context`` folded in and a ``messageId`` guaranteed.

>>> raw = decode_message(b'{"type": "track", "userId": "u1", "event": "Product Viewed"}')
>>> event = normalise(raw, received_ms=0, source="src", raw_size=10)
>>> (event.type, event.user_id, event.event)
('track', 'u1', 'Product Viewed')
"""

from __future__ import annotations

import functools
import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import msgspec

from momently.errors import InvalidInput, InvalidMessage, PayloadTooLarge

MAX_MESSAGE_BYTES: Final = 32 * 1024
MAX_BATCH_BYTES: Final = 500 * 1024
MESSAGE_TYPES: Final = frozenset({"track", "identify", "page", "screen", "alias", "group"})
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS: Final = timedelta(milliseconds=1)
# Deeper JSON is refused: the admin API's serialisers cannot write it back out.
MAX_DEPTH: Final = 64

Id = str | int | None


class RawMessage(msgspec.Struct, rename="camel", kw_only=True):
    """One message as a client sent it; unknown top-level fields are ignored."""

    type: str | None = None
    message_id: str | None = None
    user_id: Id = None
    anonymous_id: Id = None
    previous_id: Id = None
    group_id: Id = None
    event: str | None = None
    name: str | None = None
    category: str | None = None
    properties: dict[str, Any] | None = None
    traits: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    integrations: dict[str, Any] | None = None
    timestamp: datetime | None = None
    original_timestamp: datetime | None = None
    sent_at: datetime | None = None
    write_key: str | None = None


class Event(msgspec.Struct, rename="camel", omit_defaults=True):
    """A validated, normalised event: what the log stores and the core reads.

    Build it with keywords; :func:`normalise`, on the path of every message, passes
    its fields by position in this order (a keyword call costs it 4 µs, a positional
    one under 1), so a field is only ever added at the end.
    """

    message_id: str
    type: str
    timestamp: datetime
    received_at: datetime
    source: str = ""
    user_id: str | None = None
    anonymous_id: str | None = None
    previous_id: str | None = None
    group_id: str | None = None
    event: str | None = None
    name: str | None = None
    category: str | None = None
    properties: dict[str, Any] = {}
    traits: dict[str, Any] = {}
    context: dict[str, Any] = {}
    integrations: dict[str, Any] = {}
    original_timestamp: datetime | None = None
    sent_at: datetime | None = None

    @property
    def timestamp_ms(self) -> int:
        return to_ms(self.timestamp)

    @property
    def received_ms(self) -> int:
        return to_ms(self.received_at)


class Batch(msgspec.Struct, rename="camel", kw_only=True):
    """The envelope of ``/v1/batch`` and the mobile ``/v1/b``; messages stay raw."""

    batch: list[msgspec.Raw]
    sent_at: datetime | None = None
    context: dict[str, Any] | None = None
    integrations: dict[str, Any] | None = None
    write_key: str | None = None


_message_decoder = msgspec.json.Decoder(RawMessage)
_batch_decoder = msgspec.json.Decoder(Batch)
_event_decoder = msgspec.json.Decoder(Event)
_encoder = msgspec.json.Encoder()


def to_ms(moment: datetime) -> int:
    """Milliseconds since the epoch; a naive datetime is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    # Integer arithmetic: ``timestamp() * 1000`` is a float and reads .001 s as 0 ms.
    return (moment - _EPOCH) // _ONE_MS


def from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


# The same for every message of a batch: worked out once, not a hundred times.
_batch_ms = functools.lru_cache(maxsize=64)(to_ms)
_batch_time = functools.lru_cache(maxsize=64)(from_ms)


@functools.lru_cache(maxsize=64)
def _skew(received_ms: int, sent_at: datetime) -> timedelta:
    """What to add to a client's time to correct its clock: ``receivedAt - sentAt``."""
    return (received_ms - _batch_ms(sent_at)) * _ONE_MS


def _field_of(error: msgspec.ValidationError, prefix: str) -> tuple[str, str]:
    """Split msgspec's ``"reason - at `$.path`"`` into (field, reason)."""
    text = str(error)
    reason, sep, where = text.rpartition(" - at `")
    if not sep:
        return prefix or "$", text
    path = where.rstrip("`")[1:]  # drop msgspec's leading "$"
    if prefix:
        return prefix + path, reason
    return path.removeprefix(".") or "$", reason


def decode_message(data: bytes, *, field: str = "") -> RawMessage:
    """Decode one message, raising :class:`InvalidMessage` with the field at fault."""
    try:
        return _message_decoder.decode(data)
    except msgspec.ValidationError as error:
        where, reason = _field_of(error, field)
        raise InvalidMessage(reason, where) from None
    except msgspec.DecodeError as error:
        raise InvalidMessage(f"malformed JSON: {error}", field or "$") from None
    except RecursionError:
        raise InvalidMessage("JSON is nested too deeply", field or "$") from None
    except UnicodeDecodeError as error:
        raise InvalidMessage(f"malformed JSON: not UTF-8: {error.reason}", field or "$") from None


def decode_batch(data: bytes) -> Batch:
    """Decode a batch envelope; the messages inside are decoded one by one later."""
    try:
        return _batch_decoder.decode(data)
    except msgspec.ValidationError as error:
        where, reason = _field_of(error, "")
        raise InvalidMessage(reason, where) from None
    except msgspec.DecodeError as error:
        raise InvalidMessage(f"malformed JSON: {error}", "$") from None
    except RecursionError:
        raise InvalidMessage("JSON is nested too deeply", "$") from None
    except UnicodeDecodeError as error:
        raise InvalidMessage(f"malformed JSON: not UTF-8: {error.reason}", "$") from None


def _check_depth(value: object, field: str) -> None:
    """Refuse a value nested more than :data:`MAX_DEPTH` levels deep (the value is level 1)."""
    if isinstance(value, dict | list) and _too_deep(value, 1):
        raise InvalidMessage(f"nested more than {MAX_DEPTH} levels deep", field)


def _surely_shallow(value: object) -> bool:
    """A cheap proof that nothing in ``value`` is nested past :data:`MAX_DEPTH`.

    JSON cannot nest deeper than it has brackets, and brackets inside strings
    only make the count larger; encoding and counting in C is several times
    faster than walking the values, so :func:`_check_depth` runs only when the
    count cannot rule it out.
    """
    try:
        data = _encoder.encode(value)
    except (TypeError, ValueError, OverflowError, RecursionError):
        return False
    return data.count(b"{") + data.count(b"[") <= MAX_DEPTH


def _brackets_bound(data: bytes) -> bool:
    """The same proof as :func:`_surely_shallow`, counted on a message's own JSON bytes."""
    return data.count(b"{") + data.count(b"[") <= MAX_DEPTH


_SCALARS: Final = frozenset({str, int, float, bool, type(None)})


def _too_deep(value: dict[Any, Any] | list[Any], depth: int) -> bool:
    """Whether anything inside ``value`` (a container at ``depth``) is past :data:`MAX_DEPTH`.

    On the hot path of every message: it recurses only into containers and
    tells scalars (all JSON leaves) apart by exact type before any isinstance.
    """
    children = value.values() if isinstance(value, dict) else value
    if depth >= MAX_DEPTH:
        return len(children) > 0  # the children sit at depth + 1
    for child in children:
        kind = type(child)
        if kind in _SCALARS:
            continue
        if isinstance(child, dict | list) and _too_deep(child, depth + 1):
            return True
    return False


def encode_event(event: Event) -> bytes:
    return _encoder.encode(event)


def decode_event(data: bytes) -> Event:
    return _event_decoder.decode(data)


def _id(value: Id, field: str) -> str | None:
    if value is None:
        return None
    text = str(value)  # Segment's libraries send numeric ids as numbers at times
    if not text.strip():
        return None
    if len(text) > 1024:
        raise InvalidMessage("an id may be at most 1024 characters", field)
    return text


def _auto_message_id(source: str, kind: str, raw: RawMessage) -> str:
    """A deterministic id for a message sent without one, so a retry still dedupes.

    ``sentAt`` and the write key are left out: a client may re-stamp them on a retry.
    The type is the one the message is stored as, so one body posted to two
    endpoints (``/v1/page`` and ``/v1/screen``) is two events, not a retry.
    """
    digest = hashlib.blake2b(source.encode(), digest_size=16)
    stable = msgspec.structs.replace(raw, type=kind, sent_at=None, write_key=None)
    digest.update(msgspec.json.encode(stable))
    return "auto-" + digest.hexdigest()


def normalise(
    raw: RawMessage,
    *,
    received_ms: int,
    source: str,
    raw_size: int,
    type_hint: str | None = None,
    field: str = "",
    batch_sent_at: datetime | None = None,
    batch_context: dict[str, Any] | None = None,
    batch_integrations: dict[str, Any] | None = None,
    ip: str | None = None,
    shallow: bool = False,
) -> Event:
    """Check ``raw`` against the rules for its type and return the stored event.

    ``shallow`` says the caller has already proved that nothing in the message
    (nor in the batch's context and integrations) is nested past :data:`MAX_DEPTH`.
    Raises :class:`InvalidMessage` (with the field, prefixed by ``field``) or
    :class:`PayloadTooLarge`.
    """
    at = field + "." if field else ""
    if raw_size > MAX_MESSAGE_BYTES:
        raise PayloadTooLarge(
            f"a message may be at most {MAX_MESSAGE_BYTES} bytes, this one is {raw_size}",
            field or None,
        )
    kind = type_hint or raw.type
    if kind is None:
        raise InvalidMessage("missing; one of " + ", ".join(sorted(MESSAGE_TYPES)), at + "type")
    if kind not in MESSAGE_TYPES:
        raise InvalidMessage(
            f"unknown type {kind!r}; one of " + ", ".join(sorted(MESSAGE_TYPES)), at + "type"
        )
    user_id = _id(raw.user_id, at + "userId")
    anonymous_id = _id(raw.anonymous_id, at + "anonymousId")
    previous_id = _id(raw.previous_id, at + "previousId")
    group_id = _id(raw.group_id, at + "groupId")
    if kind == "alias":
        if previous_id is None:
            raise InvalidMessage("alias needs previousId", at + "previousId")
        if user_id is None:
            raise InvalidMessage("alias needs userId", at + "userId")
    elif user_id is None and anonymous_id is None:
        raise InvalidMessage("either userId or anonymousId is required", at + "userId")
    name = raw.event
    if kind == "track" and (name is None or not name.strip()):
        raise InvalidMessage("track needs a non-empty event name", at + "event")
    if kind == "group" and group_id is None:
        raise InvalidMessage("group needs groupId", at + "groupId")

    context = dict(batch_context) if batch_context else {}
    if raw.context:
        context.update(raw.context)
    if ip and "ip" not in context:
        context["ip"] = ip
    integrations = dict(batch_integrations) if batch_integrations else {}
    if raw.integrations:
        integrations.update(raw.integrations)
    traits = raw.traits or {}
    if not traits and kind == "identify":
        # RudderStack's clients put identify traits in context.traits.
        context_traits = context.get("traits")
        if isinstance(context_traits, dict):
            traits = context_traits

    properties = raw.properties or {}
    if not shallow and not _surely_shallow((properties, traits, context, integrations)):
        for part, value in (
            ("properties", properties),
            ("traits", traits),
            ("context", context),
            ("integrations", integrations),
        ):
            _check_depth(value, at + part)

    client_time = raw.timestamp or raw.original_timestamp
    sent_at = raw.sent_at or batch_sent_at
    try:
        if client_time is None:
            timestamp = _batch_time(received_ms)
        elif sent_at is not None:
            # Segment's skew correction: the client's clock may be wrong, but the
            # gap between "happened" and "sent" it measured is right.
            if client_time.tzinfo is UTC and not client_time.microsecond % 1000:
                # Whole milliseconds in UTC, as the SDKs send them: one addition,
                # the same instant as the arithmetic in milliseconds below.
                timestamp = client_time + _skew(received_ms, sent_at)
            else:
                timestamp = from_ms(received_ms - (_batch_ms(sent_at) - to_ms(client_time)))
        else:
            timestamp = from_ms(to_ms(client_time))
    except (OverflowError, OSError, ValueError):
        raise InvalidMessage("timestamp out of range", at + "timestamp") from None

    # By position, in field order (see Event): message_id, type, timestamp, received_at,
    # source, user_id, anonymous_id, previous_id, group_id, event, name, category,
    # properties, traits, context, integrations, original_timestamp, sent_at.
    return Event(
        _id(raw.message_id, at + "messageId") or _auto_message_id(source, kind, raw),
        kind,
        timestamp,
        _batch_time(received_ms),
        source,
        user_id,
        anonymous_id,
        previous_id,
        group_id,
        name if kind == "track" else None,
        raw.name,
        raw.category,
        properties,
        traits,
        context,
        integrations,
        client_time,
        sent_at,
    )


def normalise_batch(
    envelope: Batch, *, received_ms: int, source: str, ip: str | None = None
) -> tuple[list[Event], list[tuple[int, InvalidInput]]]:
    """Judge a batch message by message: the valid events, and each bad one's index and error."""
    events: list[Event] = []
    rejected: list[tuple[int, InvalidInput]] = []
    # Merging two dicts at the top level nests no deeper than the deeper of them,
    # so the envelope's parts are proved shallow once and each message on its bytes.
    envelope_shallow = (
        envelope.context is None and envelope.integrations is None
    ) or _surely_shallow((envelope.context, envelope.integrations))
    for index, item in enumerate(envelope.batch):
        where = f"batch[{index}]"
        try:
            data = bytes(item)
            raw = decode_message(data, field=where)
            events.append(
                normalise(
                    raw,
                    received_ms=received_ms,
                    source=source,
                    raw_size=len(data),
                    field=where,
                    batch_sent_at=envelope.sent_at,
                    batch_context=envelope.context,
                    batch_integrations=envelope.integrations,
                    ip=ip,
                    shallow=envelope_shallow and _brackets_bound(data),
                )
            )
        except InvalidInput as error:
            rejected.append((index, error))
    return events, rejected
