"""The tracking POSTs answered around FastAPI's stack answer exactly as FastAPI does.

The same requests go to an app whose fast path is on and to one that has
middleware of its own (CORS), which sends everything through FastAPI; status,
body, content type, ``Retry-After`` and what was stored must match.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from momently.clock import FakeClock
from momently.config import Settings
from momently.store.sqlite import SqliteStore
from momently.web.app import create_app
from tests.conftest import ADMIN_KEY, START, WRITE_KEY, App

AUTH = (WRITE_KEY, "")
GOOD = {"type": "track", "userId": "u1", "event": "Viewed", "messageId": "m1"}

# (path, body, headers, whether to send the write key)
CASES: list[tuple[str, bytes, dict[str, str], bool]] = [
    ("/v1/batch", json.dumps({"batch": [GOOD, {"type": "track"}]}).encode(), {}, True),
    ("/v1/batch", json.dumps({"batch": [{"type": "nope", "userId": "u"}]}).encode(), {}, True),
    ("/v1/batch", b'{"batch": [', {}, True),
    ("/v1/batch", json.dumps({"batch": [GOOD]}).encode(), {}, False),
    ("/v1/import", json.dumps({"batch": [GOOD], "writeKey": "wrong"}).encode(), {}, False),
    (
        "/v1/b",
        gzip.compress(json.dumps({"batch": [GOOD], "writeKey": WRITE_KEY}).encode()),
        {},
        False,
    ),
    ("/v1/track", json.dumps(GOOD).encode(), {}, True),
    ("/v1/track", json.dumps({"type": "track", "userId": "u1"}).encode(), {}, True),
    ("/v1/alias", json.dumps({"userId": "u1"}).encode(), {}, True),
    ("/v1/identify", b"x" * 40_000, {}, True),
    ("/v1/track", json.dumps(GOOD).encode(), {"Content-Type": "application/xml"}, True),
    ("/v1/track", b"\x1f\x8bnot gzip", {"Content-Encoding": "gzip"}, True),
    ("/v1/group", json.dumps({"userId": "u1"}).encode(), {"Content-Encoding": "br"}, True),
]


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[App, App]]:
    """Two apps for the whole module (each case compares what it adds to both):
    one with the fast path, one whose CORS middleware turns it off."""
    apps: list[App] = []
    for cors in ((), ("https://shop.example",)):
        data_dir = tmp_path_factory.mktemp("app")
        settings = Settings(
            data_dir=data_dir, write_keys=(WRITE_KEY,), admin_key=ADMIN_KEY, cors_origins=cors
        )
        store = SqliteStore(data_dir / "momently.db", synchronous="NORMAL")
        clock = FakeClock(START)
        client = TestClient(create_app(settings, store=store, clock=clock))
        client.__enter__()
        apps.append(App(client, store, clock))
    yield apps[0], apps[1]
    for app in apps:
        app.client.__exit__(None, None, None)


def answer(app: App, path: str, body: bytes, headers: dict[str, str], keyed: bool) -> Any:
    sent = {"Content-Type": "application/json", **headers}
    if keyed:
        got = app.client.post(path, content=body, headers=sent, auth=AUTH)
    else:
        got = app.client.post(path, content=body, headers=sent)
    retry = got.headers.get("retry-after")
    return got.status_code, got.json(), got.headers["content-type"], retry


@pytest.mark.parametrize(("path", "body", "headers", "keyed"), CASES)
def test_fast_path_answers_as_fastapi_does(
    pair: tuple[App, App], path: str, body: bytes, headers: dict[str, str], keyed: bool
) -> None:
    fast, routed = pair
    before = fast.event_count(), routed.event_count()
    assert answer(fast, path, body, headers, keyed) == answer(routed, path, body, headers, keyed)
    assert fast.event_count() - before[0] == routed.event_count() - before[1]


def test_tracking_posts_skip_fastapi_and_everything_else_does_not(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object) -> None:
        raise AssertionError("routed through FastAPI")

    monkeypatch.setattr(FastAPI, "__call__", refuse)
    body = {"batch": [GOOD]}
    assert app.client.post("/v1/batch", json=body, auth=AUTH).json()["accepted"] == 1
    with pytest.raises(AssertionError, match="routed through FastAPI"):
        app.client.get("/v1/batch", auth=AUTH)  # a wrong method gets FastAPI's 405
    with pytest.raises(AssertionError, match="routed through FastAPI"):
        app.client.post("/v1/batch/", json=body, auth=AUTH)


def test_the_openapi_document_still_lists_the_tracking_posts(app: App) -> None:
    paths = app.client.get("/openapi.json").json()["paths"]
    for path in ("/v1/batch", "/v1/import", "/v1/b", "/v1/track", "/v1/alias"):
        assert "post" in paths[path]
        assert "429" in paths[path]["post"]["responses"]
