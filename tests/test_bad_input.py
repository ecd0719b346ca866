"""Every kind of bad input gets a clear 4xx in the one JSON error shape and writes nothing;
and the good-path rules of the tracking API, asserted exactly.

Each refusal below checks three things: the status code, the JSON body
(``error`` is the class name from :mod:`momently.errors`, ``field`` names what
was wrong), and that nothing reached the log or the profiles
(``app.event_count()`` unchanged, ``/api/profiles/<id>`` a 404).

Batches are judged message by message (see ``test_batch_keeps_good_messages_and_lists_bad_ones``):
the Segment and RudderStack clients drop a whole batch when they get a 4xx, so
refusing a batch for one bad message would lose the good ones.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import threading
import tracemalloc
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, cast

import httpx2
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from momently.engine import Engine, IngestResult
from momently.errors import Overloaded, PayloadTooLarge, error_body
from momently.events import MAX_BATCH_BYTES, MAX_DEPTH, MAX_MESSAGE_BYTES, Event, from_ms, to_ms
from momently.ingest.body import read_limited
from momently.runtime.writer import Writer
from momently.store.memory import MemoryStore
from tests.conftest import START, WRITE_KEY, App
from tests.distributed.e2e import MODES, IngestNode, ingest_node
from tests.nats_server import NatsServer

BAD_USER = "u-bad"  # every refused message below is about this user: it must never exist
TRACK = {"userId": BAD_USER, "event": "Product Viewed"}
WAIT = 10.0  # a bound on waiting for the writer thread, so a broken test fails, not hangs


# --- helpers ----------------------------------------------------------------------------------


def post(
    app: App,
    path: str,
    body: object = None,
    *,
    content: bytes | None = None,
    auth: tuple[str, str] | None = (WRITE_KEY, ""),
    headers: dict[str, str] | None = None,
) -> httpx2.Response:
    """POST JSON (``body``) or raw bytes (``content``) with the write key as Basic user."""
    data = content if content is not None else json.dumps(body).encode()
    sent = {"Content-Type": "application/json"}
    if auth is not None:
        sent["Authorization"] = "Basic " + base64.b64encode(":".join(auth).encode()).decode()
    return app.client.post(path, content=data, headers={**sent, **(headers or {})})


def assert_error(
    answer: httpx2.Response, status: int, error: str, field: str | None
) -> dict[str, Any]:
    """The answer is ``status`` with the JSON error shape, naming ``error`` and ``field``."""
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/json"
    body: dict[str, Any] = answer.json()
    assert body["error"] == error, body
    assert body.get("field") == field, body
    assert isinstance(body["reason"], str) and body["reason"], body
    return body


def assert_nothing_written(app: App, *customers: str) -> None:
    assert app.event_count() == 0
    for customer in customers or (BAD_USER,):
        answer = app.client.get(f"/api/profiles/{customer}", headers=app.admin)
        assert_error(answer, 404, "NotFound", "id")


def stored(app: App, customer: str) -> list[dict[str, Any]]:
    """The customer's events as the admin API returns them, in log order."""
    answer = app.client.get("/api/events", params={"customer": customer}, headers=app.admin)
    assert answer.status_code == 200, answer.text
    events: list[dict[str, Any]] = answer.json()["events"]
    return events


def ms(text: str) -> int:
    return to_ms(datetime.fromisoformat(text))


def padded(message: dict[str, Any], size: int) -> bytes:
    """``message`` as JSON of exactly ``size`` bytes, padded with an ignored field."""
    bare = json.dumps({**message, "pad": ""}).encode()
    data = json.dumps({**message, "pad": "a" * (size - len(bare))}).encode()
    assert len(data) == size
    return data


def nested(depth: int) -> str:
    """A JSON list nested ``depth`` levels deep."""
    return "[" * depth + "]" * depth


def metric(app: App, name: str, **labels: str) -> float:
    text = app.client.get("/metrics", headers=app.admin).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return 0.0


# --- the body is not JSON, or not the JSON a message is ---------------------------------------


SINGLE_BAD: list[tuple[str, str, bytes, str]] = [
    # (case, endpoint, body, field at fault); every one is a 400 InvalidMessage
    ("malformed JSON", "/v1/track", b'{"userId": "u-bad", "event": ', "$"),
    ("trailing garbage", "/v1/track", json.dumps(TRACK).encode() + b"}", "$"),
    ("not UTF-8", "/v1/track", b'{"userId": "u-bad", "event": "\xff\xfe"}', "$"),
    ("empty body", "/v1/track", b"", "$"),
    ("JSON array", "/v1/track", json.dumps([TRACK]).encode(), "$"),
    ("JSON string", "/v1/track", b'"u-bad"', "$"),
    ("JSON null", "/v1/track", b"null", "$"),
    ("JSON number", "/v1/identify", b"42", "$"),
    ("userId a list", "/v1/track", json.dumps({**TRACK, "userId": [BAD_USER]}).encode(), "userId"),
    ("userId a bool", "/v1/track", json.dumps({**TRACK, "userId": True}).encode(), "userId"),
    ("userId a float", "/v1/track", json.dumps({**TRACK, "userId": 1.5}).encode(), "userId"),
    (
        "anonymousId an object",
        "/v1/page",
        json.dumps({"userId": BAD_USER, "anonymousId": {"a": 1}}).encode(),
        "anonymousId",
    ),
    (
        "properties a string",
        "/v1/track",
        json.dumps({**TRACK, "properties": "cheap"}).encode(),
        "properties",
    ),
    (
        "traits a list",
        "/v1/identify",
        json.dumps({"userId": BAD_USER, "traits": ["vip"]}).encode(),
        "traits",
    ),
    ("context a string", "/v1/track", json.dumps({**TRACK, "context": "x"}).encode(), "context"),
    (
        "timestamp not RFC 3339",
        "/v1/track",
        json.dumps({**TRACK, "timestamp": "yesterday"}).encode(),
        "timestamp",
    ),
    (
        "timestamp a date only",
        "/v1/track",
        json.dumps({**TRACK, "timestamp": "2026-01-01"}).encode(),
        "timestamp",
    ),
    (
        "timestamp as epoch number",
        "/v1/track",
        json.dumps({**TRACK, "timestamp": 1_790_000_000}).encode(),
        "timestamp",
    ),
    ("sentAt not RFC 3339", "/v1/track", json.dumps({**TRACK, "sentAt": "now"}).encode(), "sentAt"),
    (
        "corrected timestamp out of range",
        "/v1/track",
        json.dumps(
            {**TRACK, "timestamp": "9999-12-31T23:59:59Z", "sentAt": "0001-01-01T00:00:00Z"}
        ).encode(),
        "timestamp",
    ),
    ("event a number", "/v1/track", json.dumps({**TRACK, "event": 5}).encode(), "event"),
    (
        "messageId a number",
        "/v1/track",
        json.dumps({**TRACK, "messageId": 7}).encode(),
        "messageId",
    ),
    ("no ids at all", "/v1/track", json.dumps({"event": "Product Viewed"}).encode(), "userId"),
    (
        "blank ids",
        "/v1/identify",
        json.dumps({"userId": "  ", "anonymousId": ""}).encode(),
        "userId",
    ),
    (
        "id over 1024 chars",
        "/v1/track",
        json.dumps({**TRACK, "userId": "u" * 1025}).encode(),
        "userId",
    ),
    (
        "alias without previousId",
        "/v1/alias",
        json.dumps({"userId": BAD_USER}).encode(),
        "previousId",
    ),
    ("alias without userId", "/v1/alias", json.dumps({"previousId": BAD_USER}).encode(), "userId"),
    ("group without groupId", "/v1/group", json.dumps({"userId": BAD_USER}).encode(), "groupId"),
    ("track without event", "/v1/track", json.dumps({"userId": BAD_USER}).encode(), "event"),
    ("track with empty event", "/v1/track", json.dumps({**TRACK, "event": ""}).encode(), "event"),
    ("track with blank event", "/v1/track", json.dumps({**TRACK, "event": "  "}).encode(), "event"),
    (
        f"properties nested past {MAX_DEPTH}",
        "/v1/track",
        b'{"userId": "u-bad", "event": "e", "properties": {"x": %s}}' % nested(MAX_DEPTH).encode(),
        "properties",
    ),
    (
        "context nested past the limit",
        "/v1/track",
        b'{"userId": "u-bad", "event": "e", "context": {"x": %s}}' % nested(300).encode(),
        "context",
    ),
    (
        "nested past the decoder's recursion limit",
        "/v1/track",
        b'{"userId": "u-bad", "event": "e", "properties": {"x": %s}}' % nested(5000).encode(),
        "$",
    ),
]


@pytest.mark.parametrize(
    ("endpoint", "body", "field"),
    [case[1:] for case in SINGLE_BAD],
    ids=[case[0] for case in SINGLE_BAD],
)
def test_bad_single_message_is_400(app: App, endpoint: str, body: bytes, field: str) -> None:
    assert_error(post(app, endpoint, content=body), 400, "InvalidMessage", field)
    assert_nothing_written(app)


def test_nesting_at_the_limit_is_accepted_and_readable(app: App) -> None:
    """The depth limit exists so every stored event can be read back: at the limit it can."""
    properties = b'{"x": %s}' % nested(MAX_DEPTH - 1).encode()
    body = b'{"userId": "u1", "event": "e", "properties": %s}' % properties
    assert post(app, "/v1/track", content=body).status_code == 200
    assert stored(app, "u1")[0]["properties"] == json.loads(properties)


BATCH_BAD: list[tuple[str, bytes, str]] = [
    # (case, body, field at fault); the envelope itself is broken: a 400 InvalidMessage
    ("malformed JSON", b'{"batch": [', "$"),
    ("JSON array", json.dumps([{**TRACK, "type": "track"}]).encode(), "$"),
    ("no batch field", json.dumps({"messages": []}).encode(), "$"),
    ("batch not a list", json.dumps({"batch": {"type": "track"}}).encode(), "batch"),
    (
        "sentAt not RFC 3339",
        json.dumps({"batch": [{**TRACK, "type": "track"}], "sentAt": "now"}).encode(),
        "sentAt",
    ),
    (
        "context a string",
        json.dumps({"batch": [{**TRACK, "type": "track"}], "context": "x"}).encode(),
        "context",
    ),
    ("nested past the recursion limit", b'{"batch": [%s]}' % nested(200_000).encode(), "$"),
]


@pytest.mark.parametrize(
    ("body", "field"), [case[1:] for case in BATCH_BAD], ids=[case[0] for case in BATCH_BAD]
)
@pytest.mark.parametrize("endpoint", ["/v1/batch", "/v1/import", "/v1/b"])
def test_bad_batch_envelope_is_400(app: App, endpoint: str, body: bytes, field: str) -> None:
    assert_error(post(app, endpoint, content=body), 400, "InvalidMessage", field)
    assert_nothing_written(app)


def test_batch_with_no_valid_message_is_400_listing_all(app: App) -> None:
    batch = [
        {"type": "purchase", "userId": BAD_USER},  # unknown type
        {"userId": BAD_USER, "event": "e"},  # no type
        "not an object",
        None,
        {"type": "track", "userId": BAD_USER, "event": 5},
        {"type": "alias", "userId": BAD_USER},
    ]
    body = assert_error(
        post(app, "/v1/batch", {"batch": batch}), 400, "InvalidMessage", "batch[0].type"
    )
    types = "alias, group, identify, page, screen, track"
    assert body["rejected"] == [
        {
            "index": 0,
            "error": "InvalidMessage",
            "reason": f"unknown type 'purchase'; one of {types}",
            "field": "batch[0].type",
        },
        {
            "index": 1,
            "error": "InvalidMessage",
            "reason": f"missing; one of {types}",
            "field": "batch[1].type",
        },
        {
            "index": 2,
            "error": "InvalidMessage",
            "reason": "Expected `object`, got `str`",
            "field": "batch[2]",
        },
        {
            "index": 3,
            "error": "InvalidMessage",
            "reason": "Expected `object`, got `null`",
            "field": "batch[3]",
        },
        {
            "index": 4,
            "error": "InvalidMessage",
            "reason": "Expected `str | null`, got `int`",
            "field": "batch[4].event",
        },
        {
            "index": 5,
            "error": "InvalidMessage",
            "reason": "alias needs previousId",
            "field": "batch[5].previousId",
        },
    ]
    assert_nothing_written(app)


# --- size limits --------------------------------------------------------------------------------


def test_single_message_at_32_kb_is_accepted(app: App) -> None:
    data = padded({"userId": "u1", "event": "e"}, MAX_MESSAGE_BYTES)
    assert post(app, "/v1/track", content=data).json()["accepted"] == 1


def test_single_message_over_32_kb_is_413(app: App) -> None:
    data = padded(TRACK, MAX_MESSAGE_BYTES + 1)
    assert_error(post(app, "/v1/track", content=data), 413, "PayloadTooLarge", None)
    assert_nothing_written(app)


def test_single_message_far_over_32_kb_is_413(app: App) -> None:
    data = padded(TRACK, 10 * MAX_MESSAGE_BYTES)
    assert_error(post(app, "/v1/track", content=data), 413, "PayloadTooLarge", None)
    assert_nothing_written(app)


def _batch_of_size(size: int) -> bytes:
    """A batch envelope of exactly ``size`` bytes whose messages are each under 32 KB."""
    message = {"type": "track", "userId": "u1", "event": "e", "properties": {"p": "b" * 30_000}}
    count = size // 31_000
    batch = [{**message, "messageId": f"m{i}"} for i in range(count)]
    return padded({"batch": batch}, size)


def test_batch_at_500_kb_is_accepted(app: App) -> None:
    answer = post(app, "/v1/batch", content=_batch_of_size(MAX_BATCH_BYTES))
    assert answer.status_code == 200, answer.text
    assert answer.json()["accepted"] == MAX_BATCH_BYTES // 31_000


def test_batch_over_500_kb_is_413(app: App) -> None:
    data = _batch_of_size(MAX_BATCH_BYTES + 1)
    assert_error(post(app, "/v1/batch", content=data), 413, "PayloadTooLarge", None)
    assert_nothing_written(app, "u1")


def test_content_length_claiming_too_much_is_413(app: App) -> None:
    data = json.dumps(TRACK).encode()
    answer = post(app, "/v1/track", content=data, headers={"Content-Length": "99999999"})
    body = assert_error(answer, 413, "PayloadTooLarge", None)
    assert "99999999" in body["reason"]
    assert_nothing_written(app)


def test_content_length_claiming_too_little_is_413(app: App) -> None:
    """A small declared length does not let a big body through: the bytes are counted."""
    data = padded(TRACK, 2 * MAX_MESSAGE_BYTES)
    answer = post(app, "/v1/track", content=data, headers={"Content-Length": "20"})
    assert_error(answer, 413, "PayloadTooLarge", None)
    assert_nothing_written(app)


def test_content_length_not_a_number_is_400(app: App) -> None:
    answer = post(
        app, "/v1/track", content=json.dumps(TRACK).encode(), headers={"Content-Length": "lots"}
    )
    assert_error(answer, 400, "BadEncoding", "Content-Length")
    assert_nothing_written(app)


def test_read_limited_refuses_before_reading_a_declared_oversize() -> None:
    """Memory safety below the HTTP layer: a body declared too big is never read."""
    consumed: list[bytes] = []

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(1000):
            consumed.append(b"x" * 1000)
            yield consumed[-1]

    with pytest.raises(PayloadTooLarge):
        asyncio.run(read_limited(chunks(), 10_000, "1000000"))
    assert consumed == []
    # and an undeclared (chunked) body is dropped as soon as it passes the limit
    with pytest.raises(PayloadTooLarge):
        asyncio.run(read_limited(chunks(), 10_000, None))
    assert len(consumed) == 11


# --- encodings -----------------------------------------------------------------------------------


def test_garbage_labelled_gzip_is_400(app: App) -> None:
    answer = post(
        app, "/v1/track", content=b"not gzip at all", headers={"Content-Encoding": "gzip"}
    )
    assert_error(answer, 400, "BadEncoding", "Content-Encoding")
    assert_nothing_written(app)


def test_garbage_after_gzip_magic_is_400(app: App) -> None:
    """Mobile clients gzip without saying so; the magic bytes alone switch inflating on."""
    answer = post(app, "/v1/b", content=b"\x1f\x8b" + b"\x00" * 30)
    assert_error(answer, 400, "BadEncoding", "Content-Encoding")
    assert_nothing_written(app)


@pytest.mark.parametrize("cut", [1, 8, 20])
def test_truncated_gzip_is_400(app: App, cut: int) -> None:
    whole = gzip.compress(json.dumps(TRACK).encode())
    answer = post(app, "/v1/track", content=whole[:-cut], headers={"Content-Encoding": "gzip"})
    body = assert_error(answer, 400, "BadEncoding", "Content-Encoding")
    assert body["reason"] == "gzip body is truncated"
    assert_nothing_written(app)


@pytest.fixture(scope="module")
def bomb() -> bytes:
    """50 MB of zeros, about 50 KB on the wire."""
    data = gzip.compress(b"\0" * 50_000_000, compresslevel=9)
    assert len(data) < 60_000
    return data


@pytest.mark.parametrize("labelled", [True, False], ids=["Content-Encoding", "magic-bytes"])
def test_gzip_bomb_is_413_without_inflating_it(app: App, bomb: bytes, labelled: bool) -> None:
    headers = {"Content-Encoding": "gzip"} if labelled else {}
    tracemalloc.start()
    try:
        answer = post(app, "/v1/batch", content=bomb, headers=headers)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    body = assert_error(answer, 413, "PayloadTooLarge", "Content-Encoding")
    assert body["reason"] == f"gzip body inflates past the {MAX_BATCH_BYTES} byte limit"
    assert peak < 10_000_000  # the bomb is 50 MB inflated; at most ~500 KB of it ever is
    assert_nothing_written(app)


def test_gzip_bomb_on_single_endpoint_is_413(app: App, bomb: bytes) -> None:
    # too big on the wire already
    answer = post(app, "/v1/track", content=bomb, headers={"Content-Encoding": "gzip"})
    assert_error(answer, 413, "PayloadTooLarge", None)
    # small on the wire, too big inflated
    small_bomb = gzip.compress(b"\0" * 10_000_000, compresslevel=9)
    assert len(small_bomb) < MAX_MESSAGE_BYTES
    answer = post(app, "/v1/track", content=small_bomb, headers={"Content-Encoding": "gzip"})
    assert_error(answer, 413, "PayloadTooLarge", "Content-Encoding")
    assert_nothing_written(app)


@pytest.mark.parametrize("coding", ["br", "deflate", "gzip, br", "zstd"])
def test_unsupported_content_encoding_is_400(app: App, coding: str) -> None:
    data = gzip.compress(json.dumps(TRACK).encode())
    answer = post(app, "/v1/track", content=data, headers={"Content-Encoding": coding})
    body = assert_error(answer, 400, "BadEncoding", "Content-Encoding")
    assert repr(coding) in body["reason"]
    assert_nothing_written(app)


def test_gzip_body_is_accepted(app: App) -> None:
    data = gzip.compress(json.dumps({**TRACK, "userId": "u1"}).encode())
    answer = post(app, "/v1/track", content=data, headers={"Content-Encoding": "gzip"})
    assert answer.json() == {"success": True, "accepted": 1, "duplicates": 0}


@pytest.mark.parametrize(
    "content_type", ["application/xml", "application/x-www-form-urlencoded", "multipart/form-data"]
)
def test_wrong_content_type_is_415(app: App, content_type: str) -> None:
    answer = post(
        app, "/v1/track", content=json.dumps(TRACK).encode(), headers={"Content-Type": content_type}
    )
    assert_error(answer, 415, "UnsupportedMediaType", "Content-Type")
    assert_nothing_written(app)


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "text/plain"])
def test_json_and_text_plain_are_accepted(app: App, content_type: str) -> None:
    answer = post(
        app,
        "/v1/track",
        content=json.dumps({**TRACK, "userId": "u1"}).encode(),
        headers={"Content-Type": content_type},
    )
    assert answer.status_code == 200, answer.text


# --- write keys, methods, paths --------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ["/v1/track", "/v1/batch"])
def test_missing_write_key_is_401(app: App, endpoint: str) -> None:
    body = TRACK if endpoint == "/v1/track" else {"batch": [{**TRACK, "type": "track"}]}
    answer = post(app, endpoint, body, auth=None)
    assert_error(answer, 401, "Unauthorized", None)
    assert_nothing_written(app)


@pytest.mark.parametrize("endpoint", ["/v1/track", "/v1/batch"])
def test_unknown_write_key_in_header_is_401(app: App, endpoint: str) -> None:
    body = TRACK if endpoint == "/v1/track" else {"batch": [{**TRACK, "type": "track"}]}
    answer = post(app, endpoint, body, auth=("not-a-key", ""))
    body_json = assert_error(answer, 401, "Unauthorized", None)
    assert body_json["reason"] == "unknown write key"
    assert_nothing_written(app)


@pytest.mark.parametrize("endpoint", ["/v1/track", "/v1/batch"])
def test_unknown_write_key_in_body_is_401(app: App, endpoint: str) -> None:
    if endpoint == "/v1/track":
        body: dict[str, Any] = {**TRACK, "writeKey": "not-a-key"}
    else:
        body = {"batch": [{**TRACK, "type": "track"}], "writeKey": "not-a-key"}
    answer = post(app, endpoint, body, auth=None)
    assert assert_error(answer, 401, "Unauthorized", None)["reason"] == "unknown write key"
    assert_nothing_written(app)


def test_unknown_header_key_is_not_rescued_by_a_good_body_key(app: App) -> None:
    answer = post(app, "/v1/track", {**TRACK, "writeKey": WRITE_KEY}, auth=("not-a-key", ""))
    assert_error(answer, 401, "Unauthorized", None)
    assert_nothing_written(app)


def test_write_key_in_body_is_accepted(app: App) -> None:
    answer = post(
        app, "/v1/b", {"batch": [{**TRACK, "type": "track"}], "writeKey": WRITE_KEY}, auth=None
    )
    assert answer.json()["accepted"] == 1


@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/v1/track"), ("PUT", "/v1/batch"), ("DELETE", "/v1/identify")]
)
def test_wrong_method_is_405_json(app: App, method: str, path: str) -> None:
    answer = app.client.request(method, path, auth=(WRITE_KEY, ""))
    assert_error(answer, 405, "HTTPError", None)
    assert answer.headers["allow"] == "POST"
    assert_nothing_written(app)


def test_unknown_path_is_404_json(app: App) -> None:
    answer = post(app, "/v1/purchase", TRACK)
    assert_error(answer, 404, "HTTPError", None)
    assert_nothing_written(app)


# --- admin API -----------------------------------------------------------------------------


ADMIN_PATHS = ["/api/stats", "/api/profiles/u1", "/api/events?customer=u1"]


@pytest.mark.parametrize("path", ADMIN_PATHS)
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-key"},
        {"Authorization": "Bearer "},
        {"Authorization": "Basic dGVzdC1hZG1pbi1rZXk6"},  # the right key, the wrong scheme
        {"Authorization": WRITE_KEY},
    ],
    ids=["none", "wrong", "empty", "basic", "no-scheme"],
)
def test_admin_without_the_admin_key_is_401(app: App, path: str, headers: dict[str, str]) -> None:
    assert post(app, "/v1/track", {**TRACK, "userId": "u1"}).status_code == 200
    answer = app.client.get(path, headers=headers)
    assert_error(answer, 401, "Unauthorized", "Authorization")


def test_admin_health_needs_no_key(app: App) -> None:
    assert app.client.get("/api/health").json() == {"status": "ok", "pending": 0}


@pytest.mark.parametrize("cursor", ["abc", "-1", "1.5", " 1", "9" * 19, "١٢", "²"])
def test_events_bad_cursor_is_400(app: App, cursor: str) -> None:
    assert post(app, "/v1/track", {**TRACK, "userId": "u1"}).status_code == 200
    answer = app.client.get(
        "/api/events", params={"customer": "u1", "cursor": cursor}, headers=app.admin
    )
    assert_error(answer, 400, "InvalidInput", "cursor")


@pytest.mark.parametrize(
    ("path", "field"),
    [("/api/events?customer=nobody", "customer"), ("/api/profiles/nobody", "id")],
)
def test_unknown_customer_is_404(app: App, path: str, field: str) -> None:
    assert post(app, "/v1/track", {**TRACK, "userId": "u1"}).status_code == 200
    answer = app.client.get(path, headers=app.admin)
    assert_error(answer, 404, "NotFound", field)


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("customer=u1&limit=0", "limit"),
        ("customer=u1&limit=1001", "limit"),
        ("customer=u1&limit=-5", "limit"),
        ("customer=u1&limit=ten", "limit"),
        ("limit=10", "customer"),
    ],
)
def test_events_bad_query_is_422(app: App, query: str, field: str) -> None:
    assert post(app, "/v1/track", {**TRACK, "userId": "u1"}).status_code == 200
    answer = app.client.get(f"/api/events?{query}", headers=app.admin)
    assert_error(answer, 422, "InvalidInput", field)


# --- batches: judged one message at a time ---------------------------------------------------


def test_batch_keeps_good_messages_and_lists_bad_ones(app: App) -> None:
    """One bad message does not sink its batch: a 200 that stores the good ones and lists
    the bad one by index, field and reason, so the client (which would drop the whole
    batch on a 4xx) loses nothing that was valid."""
    batch = [
        {"type": "track", "userId": "u1", "event": "First", "messageId": "m1"},
        {"type": "track", "userId": BAD_USER, "messageId": "m2"},  # no event
        {"type": "identify", "userId": "u1", "traits": {"plan": "pro"}, "messageId": "m3"},
        # one byte over 32 KB, as it sits in the batch (json.dumps spaces it the same way)
        json.loads(
            padded({"type": "track", "userId": BAD_USER, "event": "e"}, MAX_MESSAGE_BYTES + 1)
        ),
    ]
    answer = post(app, "/v1/batch", {"batch": batch})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "success": True,
        "accepted": 2,
        "duplicates": 0,
        "rejected": [
            {
                "index": 1,
                "error": "InvalidMessage",
                "reason": "track needs a non-empty event name",
                "field": "batch[1].event",
            },
            {
                "index": 3,
                "error": "PayloadTooLarge",
                "reason": f"a message may be at most {MAX_MESSAGE_BYTES} bytes, "
                f"this one is {MAX_MESSAGE_BYTES + 1}",
                "field": "batch[3]",
            },
        ],
    }
    assert app.event_count() == 2
    assert [e["messageId"] for e in stored(app, "u1")] == ["m1", "m3"]
    assert_error(
        app.client.get(f"/api/profiles/{BAD_USER}", headers=app.admin), 404, "NotFound", "id"
    )


def test_rejections_are_counted_in_metrics(app: App) -> None:
    invalid = ("momently_events_rejected_total", {"reason": "InvalidMessage"})
    too_large = ("momently_events_rejected_total", {"reason": "PayloadTooLarge"})
    assert metric(app, invalid[0], **invalid[1]) == 0
    mixed = [
        {"type": "track", "userId": "u1", "event": "e"},
        {"type": "bogus", "userId": "u1"},
        json.loads(padded({"type": "track", "userId": "u1", "event": "e"}, MAX_MESSAGE_BYTES + 10)),
    ]
    assert post(app, "/v1/batch", {"batch": mixed}).status_code == 200
    all_bad = [{"type": "track", "userId": "u1"}, "x", {"type": "alias", "userId": "u1"}]
    assert post(app, "/v1/b", {"batch": all_bad}).status_code == 400
    assert post(app, "/v1/track", {"event": "e"}).status_code == 400
    assert post(app, "/v1/track", TRACK, auth=None).status_code == 401

    # 1 + 3 from the two batches, 1 from the single track
    assert metric(app, invalid[0], **invalid[1]) == 5
    assert metric(app, too_large[0], **too_large[1]) == 1
    unauthorized = metric(app, invalid[0], reason="Unauthorized")
    assert unauthorized == 1
    assert metric(app, "momently_events_accepted_total") == 1
    requests = "momently_ingest_requests_total"
    assert metric(app, requests, endpoint="/v1/batch", status="200") == 1
    assert metric(app, requests, endpoint="/v1/b", status="400") == 1
    assert metric(app, requests, endpoint="/v1/track", status="400") == 1
    assert metric(app, requests, endpoint="/v1/track", status="401") == 1


# --- good-path semantics -----------------------------------------------------------------------


def test_duplicate_message_id_is_stored_once(app: App) -> None:
    message = {"userId": "u1", "event": "Order Completed", "messageId": "order-1"}
    assert post(app, "/v1/track", message).json() == {
        "success": True,
        "accepted": 1,
        "duplicates": 0,
    }
    assert post(app, "/v1/track", message).json() == {
        "success": True,
        "accepted": 0,
        "duplicates": 1,
    }
    again = {
        "batch": [{**message, "type": "track"}, {**message, "type": "track", "messageId": "o2"}]
    }
    assert post(app, "/v1/batch", again).json() == {
        "success": True,
        "accepted": 1,
        "duplicates": 1,
        "rejected": [],
    }
    assert app.event_count() == 2
    assert [e["messageId"] for e in stored(app, "u1")] == ["order-1", "o2"]


def test_duplicates_within_one_batch_are_stored_once(app: App) -> None:
    message = {"type": "track", "userId": "u1", "event": "e", "messageId": "same"}
    answer = post(app, "/v1/batch", {"batch": [message, message, message]})
    assert answer.json() == {"success": True, "accepted": 1, "duplicates": 2, "rejected": []}
    assert app.event_count() == 1


def test_clock_skew_is_corrected_from_sent_at(app: App) -> None:
    """The client's clock is 3 years off, but it measured 5 s between event and send:
    timestamp = receivedAt - (sentAt - timestamp)."""
    message = {
        "userId": "u1",
        "event": "e",
        "timestamp": "2023-01-01T00:00:00.250Z",
        "sentAt": "2023-01-01T00:00:05.500Z",
    }
    assert post(app, "/v1/track", message).status_code == 200
    [event] = stored(app, "u1")
    assert ms(event["receivedAt"]) == START
    assert ms(event["timestamp"]) == START - 5_250
    assert ms(event["originalTimestamp"]) == ms("2023-01-01T00:00:00.250Z")
    assert ms(event["sentAt"]) == ms("2023-01-01T00:00:05.500Z")


def test_batch_sent_at_corrects_every_message(app: App) -> None:
    batch = {
        "sentAt": "2030-05-05T10:00:10Z",
        "batch": [
            {"type": "track", "userId": "u1", "event": "a", "timestamp": "2030-05-05T10:00:00Z"},
            {"type": "track", "userId": "u1", "event": "b", "timestamp": "2030-05-05T10:00:09Z"},
            # its own sentAt wins over the batch's
            {
                "type": "track",
                "userId": "u1",
                "event": "c",
                "timestamp": "2030-05-05T10:00:09Z",
                "sentAt": "2030-05-05T10:00:11Z",
            },
        ],
    }
    assert post(app, "/v1/batch", batch).json()["accepted"] == 3
    events = stored(app, "u1")
    assert [ms(e["timestamp"]) for e in events] == [START - 10_000, START - 1_000, START - 2_000]


def test_original_timestamp_is_corrected_like_timestamp(app: App) -> None:
    message = {
        "userId": "u1",
        "event": "e",
        "originalTimestamp": "2020-02-02T02:02:00Z",
        "sentAt": "2020-02-02T02:02:30Z",
    }
    assert post(app, "/v1/track", message).status_code == 200
    assert ms(stored(app, "u1")[0]["timestamp"]) == START - 30_000


def test_timestamp_without_sent_at_is_kept_as_given(app: App) -> None:
    message = {"userId": "u1", "event": "e", "timestamp": "2026-09-20T08:00:00.125+02:00"}
    assert post(app, "/v1/track", message).status_code == 200
    [event] = stored(app, "u1")
    assert ms(event["timestamp"]) == ms("2026-09-20T06:00:00.125Z")
    assert ms(event["receivedAt"]) == START


def test_no_timestamp_means_received_at(app: App) -> None:
    assert post(app, "/v1/track", {"userId": "u1", "event": "e"}).status_code == 200
    [event] = stored(app, "u1")
    assert ms(event["timestamp"]) == ms(event["receivedAt"]) == START
    assert "originalTimestamp" not in event
    assert "sentAt" not in event


def test_received_at_is_stamped_from_the_server_clock(app: App) -> None:
    lie = {"userId": "u1", "event": "a", "receivedAt": "2001-01-01T00:00:00Z"}
    assert post(app, "/v1/track", lie).status_code == 200
    app.clock.advance(61_500)
    assert post(app, "/v1/track", {"userId": "u1", "event": "b"}).status_code == 200
    app.clock.advance(1_000)
    batch = {"batch": [{"type": "page", "userId": "u1", "name": "Home"}]}
    assert post(app, "/v1/batch", batch).status_code == 200
    assert [ms(e["receivedAt"]) for e in stored(app, "u1")] == [
        START,
        START + 61_500,
        START + 62_500,
    ]


def test_context_ip_filled_from_the_connection_when_missing(app: App) -> None:
    assert post(app, "/v1/track", {"userId": "u1", "event": "e"}).status_code == 200
    given = {"userId": "u1", "event": "e", "context": {"ip": "203.0.113.7"}}
    assert post(app, "/v1/track", given).status_code == 200
    assert [e["context"] for e in stored(app, "u1")] == [
        {"ip": "testclient"},  # Starlette's TestClient connects as host "testclient"
        {"ip": "203.0.113.7"},
    ]


FULL_CONTEXT: dict[str, Any] = {
    "active": True,
    "app": {"name": "Shop", "version": "5.2.1", "build": "5210", "namespace": "com.shop"},
    "campaign": {
        "name": "autumn",
        "source": "newsletter",
        "medium": "email",
        "term": "boots",
        "content": "hero",
    },
    "device": {
        "id": "dev-1",
        "advertisingId": "ad-1",
        "adTrackingEnabled": False,
        "manufacturer": "Apple",
        "model": "iPhone16,2",
        "name": "maguro",
        "type": "ios",
        "token": "push-token",
    },
    "ip": "198.51.100.4",
    "library": {"name": "analytics-swift", "version": "1.5.0"},
    "locale": "de-DE",
    "location": {
        "city": "Berlin",
        "country": "Germany",
        "latitude": 52.52,
        "longitude": 13.405,
        "accuracy": 12.5,
        "speed": 0,
    },
    "network": {"bluetooth": False, "carrier": "T-Mobile", "cellular": True, "wifi": False},
    "os": {"name": "iOS", "version": "17.4"},
    "page": {
        "path": "/boots",
        "referrer": "",
        "search": "?q=1",
        "title": "Boots",
        "url": "https://shop.example/boots",
    },
    "referrer": {"id": "r1", "type": "dataxu"},
    "screen": {"width": 1179, "height": 2556, "density": 3},
    "groupId": "g1",
    "timezone": "Europe/Berlin",
    "traits": {"email": "ada@example.com"},
    "userAgent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X)",
    "custom": {"nested": {"deeper": [1, 2.5, "three", None, {"x": True}]}},
}


def test_whole_context_round_trips(app: App) -> None:
    message = {"userId": "u1", "event": "e", "context": FULL_CONTEXT}
    assert post(app, "/v1/track", message).status_code == 200
    [event] = stored(app, "u1")
    assert event["context"] == FULL_CONTEXT


def test_batch_context_and_integrations_are_folded_into_each_message(app: App) -> None:
    batch = {
        "context": {"library": {"name": "analytics-kotlin", "version": "1.16"}, "locale": "en-GB"},
        "integrations": {"All": False, "Mixpanel": True},
        "batch": [
            {"type": "track", "userId": "u1", "event": "a", "messageId": "m1"},
            {
                "type": "track",
                "userId": "u1",
                "event": "b",
                "messageId": "m2",
                "context": {"locale": "fr-FR", "ip": "192.0.2.1"},
                "integrations": {"Mixpanel": False},
            },
        ],
    }
    assert post(app, "/v1/batch", batch).json()["accepted"] == 2
    first, second = stored(app, "u1")
    assert first["context"] == {
        "library": {"name": "analytics-kotlin", "version": "1.16"},
        "locale": "en-GB",
        "ip": "testclient",
    }
    assert first["integrations"] == {"All": False, "Mixpanel": True}
    assert second["context"] == {
        "library": {"name": "analytics-kotlin", "version": "1.16"},
        "locale": "fr-FR",
        "ip": "192.0.2.1",
    }
    assert second["integrations"] == {"All": False, "Mixpanel": False}


def test_numeric_user_id_is_accepted_as_a_string(app: App) -> None:
    assert post(app, "/v1/identify", {"userId": 42, "traits": {"name": "Ada"}}).status_code == 200
    [event] = stored(app, "42")
    assert event["userId"] == "42"
    profile = app.client.get("/api/profiles/42", headers=app.admin).json()
    assert profile["userId"] == "42"
    assert profile["traits"] == {"name": "Ada"}


def test_rudderstack_null_anonymous_id_with_user_id_is_accepted(app: App) -> None:
    message = {"userId": "u1", "anonymousId": None, "event": "e", "properties": None}
    assert post(app, "/v1/track", message).json()["accepted"] == 1
    [event] = stored(app, "u1")
    assert event["userId"] == "u1"
    assert "anonymousId" not in event
    assert "properties" not in event  # null is no properties; empty ones are left out


# --- backpressure ------------------------------------------------------------------------------


class SlowDiskEngine(Engine):
    """An engine whose commits wait for ``release``: a disk that has stalled."""

    def __init__(self, store: MemoryStore) -> None:
        super().__init__(store)
        self.entered = threading.Event()
        self.release = threading.Event()

    def ingest_groups(self, groups: Sequence[Sequence[Event]]) -> list[IngestResult]:
        self.entered.set()
        if not self.release.wait(WAIT):
            raise TimeoutError("the test never released the engine")
        return super().ingest_groups(groups)


def event(message_id: str, user_id: str = "u1") -> Event:
    return Event(
        message_id=message_id,
        type="track",
        event="e",
        user_id=user_id,
        timestamp=from_ms(START),
        received_at=from_ms(START),
    )


def test_writer_refuses_past_max_pending() -> None:
    store = MemoryStore()
    engine = SlowDiskEngine(store)
    writer = Writer(engine, max_pending=2)
    try:
        first = writer.submit([event("m1")])
        assert engine.entered.wait(WAIT)  # the writer thread is stuck in a commit
        second = writer.submit([event("m2")])
        assert writer.pending == 2
        with pytest.raises(Overloaded) as refused:
            writer.submit([event("m3")])
        assert refused.value.retry_after == 1
        assert writer.pending == 2
    finally:
        engine.release.set()
    assert first.result(WAIT) == IngestResult(1, 0)
    assert second.result(WAIT) == IngestResult(1, 0)
    # room is freed before the answer: the next submission fits at once
    assert writer.pending == 0
    assert store.stats()["events"] == 2
    # a submission bigger than max_pending is still taken when nothing waits
    assert writer.submit([event(f"big{i}") for i in range(5)]).result(WAIT) == IngestResult(5, 0)
    writer.close()
    assert store.stats()["events"] == 7


def test_writer_survives_a_cancelled_waiter() -> None:
    """asyncio cancels the future of a cancelled request; the writer thread must live on."""
    store = MemoryStore()
    engine = SlowDiskEngine(store)
    writer = Writer(engine)
    try:
        running = writer.submit([event("m1")])
        assert engine.entered.wait(WAIT)
        queued = writer.submit([event("m2")])
        assert not running.cancel()  # taken by the writer: too late to cancel
        assert queued.cancel()
    finally:
        engine.release.set()
    assert running.result(WAIT) == IngestResult(1, 0)
    assert writer.submit([event("m3")]).result(WAIT) == IngestResult(1, 0)
    writer.close()
    # the cancelled submission's events were committed all the same; a retry dedupes
    assert store.stats()["events"] == 3


def test_http_answers_429_with_retry_after_when_overloaded(
    app_factory: Callable[..., App], monkeypatch: pytest.MonkeyPatch
) -> None:
    app = app_factory(max_pending_events=1)
    writer: Writer = cast(FastAPI, app.client.app).state.writer
    original = writer.engine.ingest_groups
    entered, release = threading.Event(), threading.Event()

    def stalled(groups: Sequence[Sequence[Event]]) -> list[IngestResult]:
        entered.set()
        if not release.wait(WAIT):
            raise TimeoutError("the test never released the engine")
        return original(groups)

    monkeypatch.setattr(writer.engine, "ingest_groups", stalled)
    try:
        first = writer.submit([event("m1")])
        assert entered.wait(WAIT)
        message = {"userId": "u2", "event": "e", "messageId": "m2"}
        answer = post(app, "/v1/track", message)
        assert answer.status_code == 429
        assert answer.headers["retry-after"] == "1"
        assert answer.json() == error_body("Overloaded", "overloaded, retry after 1s")
        batch = {"batch": [{**message, "type": "track"}]}
        assert post(app, "/v1/batch", batch).status_code == 429
    finally:
        release.set()
    assert first.result(WAIT) == IngestResult(1, 0)
    assert app.event_count() == 1  # only the event that was in the writer: m2 never got in
    assert_error(app.client.get("/api/profiles/u2", headers=app.admin), 404, "NotFound", "id")
    requests = "momently_ingest_requests_total"
    assert metric(app, requests, endpoint="/v1/track", status="429") == 1
    assert metric(app, requests, endpoint="/v1/batch", status="429") == 1
    # the client retries after the stall and gets in
    assert post(app, "/v1/track", message).json() == {
        "success": True,
        "accepted": 1,
        "duplicates": 0,
    }
    assert app.event_count() == 2


# --- the same refusals from an ingest node of distributed mode ---------------------------------

# An ingest node validates with the tracking API's own code before anything reaches the
# log; these tests run against one too (tests/distributed/e2e.py: no workers, so "nothing
# written" is nothing in the stream, and no profile in the partitions' stores). The rest
# read back what was stored, or the embedded server's clock, metrics and writer.
IN_BOTH_MODES = {
    "test_bad_single_message_is_400",
    "test_bad_batch_envelope_is_400",
    "test_batch_with_no_valid_message_is_400_listing_all",
    "test_single_message_at_32_kb_is_accepted",
    "test_single_message_over_32_kb_is_413",
    "test_single_message_far_over_32_kb_is_413",
    "test_batch_at_500_kb_is_accepted",
    "test_batch_over_500_kb_is_413",
    "test_content_length_claiming_too_much_is_413",
    "test_content_length_claiming_too_little_is_413",
    "test_content_length_not_a_number_is_400",
    "test_garbage_labelled_gzip_is_400",
    "test_garbage_after_gzip_magic_is_400",
    "test_truncated_gzip_is_400",
    "test_gzip_bomb_is_413_without_inflating_it",
    "test_gzip_bomb_on_single_endpoint_is_413",
    "test_unsupported_content_encoding_is_400",
    "test_gzip_body_is_accepted",
    "test_wrong_content_type_is_415",
    "test_json_and_text_plain_are_accepted",
    "test_missing_write_key_is_401",
    "test_unknown_write_key_in_header_is_401",
    "test_unknown_write_key_in_body_is_401",
    "test_unknown_header_key_is_not_rescued_by_a_good_body_key",
    "test_write_key_in_body_is_accepted",
    "test_wrong_method_is_405_json",
    "test_unknown_path_is_404_json",
    "test_admin_without_the_admin_key_is_401",
    "test_admin_health_needs_no_key",
    "test_events_bad_cursor_is_400",
    "test_unknown_customer_is_404",
    "test_events_bad_query_is_422",
}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.function.__name__ in IN_BOTH_MODES:
        metafunc.parametrize("app", MODES, indirect=True)


@pytest.fixture(scope="module")
def shared_node(
    nats_server: NatsServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[IngestNode]:
    """One ingest node for the module (a node per test cost ~0.7 s each)."""
    with ingest_node(nats_server, tmp_path_factory.mktemp("ingest")) as node:
        yield node


@pytest.fixture
def app(request: pytest.FixtureRequest, app_factory: Callable[..., App]) -> App:
    """The embedded engine (tests/conftest.py), or an ingest node (``IN_BOTH_MODES``)
    that counts only what this test wrote."""
    if getattr(request, "param", "embedded") == "embedded":
        return app_factory()
    node: IngestNode = request.getfixturevalue("shared_node")
    return cast(App, replace(node, baseline=node.messages()))
