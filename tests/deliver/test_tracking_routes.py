"""Tracking routes: a valid hit emits one Segment event; a forged one is refused."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from momently.clock import FakeClock
from momently.deliver.tracking import TokenSigner, TrackingLinks
from momently.deliver.tracking_routes import PIXEL, tracking_router


class Sink:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.fail = False

    def __call__(self, event: dict[str, Any]) -> None:
        if self.fail:
            raise RuntimeError("log is down")
        self.events.append(event)


@pytest.fixture
def setup(clock: FakeClock) -> tuple[TestClient, TrackingLinks, Sink]:
    signer = TokenSigner(b"r" * 32, clock, ttl_ms=60_000)
    sink = Sink()
    app = FastAPI()
    app.include_router(
        tracking_router(signer, sink, clock, identity=lambda c: {"userId": f"user-of-{c}"})
    )
    client = TestClient(app, base_url="https://t.example", follow_redirects=False)
    return client, TrackingLinks("https://t.example", signer), sink


def path(url: str) -> str:
    return url.removeprefix("https://t.example")


def test_click_redirects_and_emits(setup: tuple[TestClient, TrackingLinks, Sink]) -> None:
    client, links, sink = setup
    link = links.click("de-1", "c1", "email", "https://shop.example/p/1?x=1")
    with client:
        for _ in range(2):
            answer = client.get(path(link))
            assert answer.status_code == 302
            assert answer.headers["location"] == "https://shop.example/p/1?x=1"
    first, second = sink.events
    assert first == second  # same messageId: ingestion keeps one
    assert first["type"] == "track" and first["event"] == "Message Clicked"
    assert first["userId"] == "user-of-c1"
    assert first["properties"] == {
        "decision_id": "de-1", "channel": "email", "url": "https://shop.example/p/1?x=1",
    }  # fmt: skip
    assert first["context"] == {"momently": {"customerId": "c1"}}
    assert first["timestamp"] == "2026-09-21T14:13:20Z"
    assert first["messageId"].startswith("trk-")


def test_expired_click_still_redirects_without_event(
    setup: tuple[TestClient, TrackingLinks, Sink], clock: FakeClock
) -> None:
    client, links, sink = setup
    link = links.click("de-1", "c1", "email", "https://shop.example/")
    clock.advance(60_000)
    assert client.get(path(link)).status_code == 302
    assert sink.events == []


def test_forged_click_is_refused(setup: tuple[TestClient, TrackingLinks, Sink]) -> None:
    client, links, sink = setup
    link = links.click("de-1", "c1", "email", "https://shop.example/")
    answer = client.get(path(link)[:-3] + "abc")
    assert answer.status_code == 400
    assert answer.json()["error"] == "TokenError" and "signature" in answer.json()["reason"]
    wrong_kind = links.unsubscribe("de-1", "c1", "email").rsplit("/", 1)[1]
    assert client.get(f"/t/c/{wrong_kind}").status_code == 400
    assert sink.events == []


def test_open_pixel(setup: tuple[TestClient, TrackingLinks, Sink], clock: FakeClock) -> None:
    client, links, sink = setup
    pixel = links.open_pixel("de-1", "c1", "email")
    answer = client.get(path(pixel))
    assert answer.status_code == 200 and answer.content == PIXEL
    assert answer.headers["content-type"] == "image/gif"
    assert answer.headers["cache-control"] == "no-store, private"
    assert [e["event"] for e in sink.events] == ["Email Opened"]
    clock.advance(60_000)
    assert client.get(path(pixel)).content == PIXEL  # expired: still an image, no event
    assert client.get("/t/o/garbage.gif").content == PIXEL
    sink.fail = True
    assert client.get(path(links.open_pixel("de-2", "c1", "email"))).content == PIXEL
    assert len(sink.events) == 1


def test_one_click_unsubscribe(
    setup: tuple[TestClient, TrackingLinks, Sink], clock: FakeClock
) -> None:
    client, links, sink = setup
    link = path(links.unsubscribe("de-1", "c1", "email"))
    page = client.get(link)
    assert page.status_code == 200 and "<form method='post'>" in page.text
    assert sink.events == []  # a GET (a link scanner) never unsubscribes
    clock.advance(10 * 60_000)  # long after: unsubscribe links keep working
    done = client.post(
        link,
        content=b"List-Unsubscribe=One-Click",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert done.status_code == 200 and "unsubscribed" in done.text
    (event,) = sink.events
    assert event["event"] == "Unsubscribed" and event["properties"]["decision_id"] == "de-1"
    assert client.post("/t/u/a.b").status_code == 400


def test_unsubscribe_not_recorded_is_503(setup: tuple[TestClient, TrackingLinks, Sink]) -> None:
    client, links, sink = setup
    sink.fail = True
    answer = client.post(path(links.unsubscribe("de-1", "c1", "email")))
    assert answer.status_code == 503 and answer.headers["retry-after"] == "5"
