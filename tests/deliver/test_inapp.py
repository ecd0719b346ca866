"""In-app: the hub, and the SSE route over a real HTTP connection."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import httpx
import msgspec
import pytest
from fastapi import FastAPI

from momently.clock import FakeClock
from momently.deliver.channels.inapp import InAppChannel, InAppEvent, InAppHub
from momently.deliver.errors import PermanentSendError
from momently.deliver.inapp_routes import inapp_router, inapp_token
from momently.deliver.message import OutboundMessage
from momently.deliver.tracking import TokenSigner
from tests.deliver.fakes import message
from tests.deliver.live import live_server

SECRET = b"i" * 32


def note(decision: str, device: str = "d1", text: str = "hello") -> OutboundMessage:
    return msgspec.structs.replace(
        message(decision, "inapp"), kind="in_app", to=device, title="Hi", text=text,
        url="https://shop.example/",
    )  # fmt: skip


async def take(stream: object, n: int) -> list[str]:
    got = []
    async for event in stream:  # type: ignore[attr-defined]
        assert isinstance(event, InAppEvent)
        got.append(json.loads(event.data)["body"])
        if len(got) == n:
            break
    return got


def test_mailbox_backlog_then_live_and_dedupe(clock: FakeClock) -> None:
    hub = InAppHub(clock)
    channel = InAppChannel(hub, clock)
    assert channel.send(note("de-1", text="one")).detail == "queued"
    assert channel.send(note("de-1", text="one again")).detail == "queued"  # same key: ignored

    async def run() -> list[str]:
        stream = hub.stream(("c1", "d1"))
        first = await take(stream, 1)
        assert hub.listeners(("c1", "d1")) == 1
        assert channel.send(note("de-2", text="two")).detail == "live"
        second = await take(stream, 1)
        await stream.aclose()  # type: ignore[attr-defined]
        assert hub.listeners(("c1", "d1")) == 0
        return first + second

    assert asyncio.run(run()) == ["one", "two"]


def test_last_event_id_skips_what_was_seen(clock: FakeClock) -> None:
    hub = InAppHub(clock)
    channel = InAppChannel(hub, clock)
    for i in range(3):
        channel.send(note(f"de-{i}", text=str(i)))

    async def run() -> list[str]:
        stream = hub.stream(("c1", "d1"), last_id=note("de-0").key)
        got = await take(stream, 2)
        await stream.aclose()  # type: ignore[attr-defined]
        return got

    assert asyncio.run(run()) == ["1", "2"]


def test_mailbox_keeps_recent_and_few(clock: FakeClock) -> None:
    hub = InAppHub(clock, keep_ms=1_000, max_per_device=2)
    channel = InAppChannel(hub, clock)
    channel.send(note("de-old", text="old"))
    clock.advance(1_000)
    for i in range(3):
        channel.send(note(f"de-{i}", text=str(i)))
    hub.close()

    async def run() -> list[str]:
        return [json.loads(e.data)["body"] async for e in hub.stream(("c1", "d1")) if e]

    assert asyncio.run(run()) == ["1", "2"]


def test_needs_a_device(clock: FakeClock) -> None:
    with pytest.raises(PermanentSendError, match="device"):
        InAppChannel(InAppHub(clock), clock).send(note("de-1", device=""))


@pytest.fixture
def served(clock: FakeClock) -> Iterator[tuple[str, InAppHub, TokenSigner]]:
    hub = InAppHub(clock)
    signer = TokenSigner(SECRET, clock)
    app = FastAPI()
    app.include_router(inapp_router(hub, signer, heartbeat_s=0.2))
    with live_server(app) as url:
        try:
            yield url, hub, signer
        finally:
            hub.close()


@pytest.mark.slow
@pytest.mark.integration
def test_sse_over_http(served: tuple[str, InAppHub, TokenSigner], clock: FakeClock) -> None:
    url, hub, signer = served
    channel = InAppChannel(hub, clock)
    channel.send(note("de-1", text="queued before connect"))
    token = inapp_token(signer, "c1", "d1", ttl_ms=60_000)
    params = {"customer": "c1", "device": "d1", "token": token}
    with httpx.Client(timeout=10) as client:
        refused = client.get(url + "/api/inapp/stream", params={**params, "device": "d2"})
        assert refused.status_code == 400 and "another customer" in refused.json()["reason"]
        assert (
            client.get(url + "/api/inapp/stream", params={**params, "token": "x.y"}).status_code
            == 400
        )
        with client.stream("GET", url + "/api/inapp/stream", params=params) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            lines = response.iter_lines()
            events: list[dict[str, object]] = []
            pings = 0
            for line in lines:
                if line == ": ping":
                    pings += 1
                    if pings == 1:  # connected and idle: now send live
                        channel.send(note("de-2", text="live"))
                if line.startswith("id: "):
                    assert line[4:] in (note("de-1").key, note("de-2").key)
                if line.startswith("data: "):
                    events.append(json.loads(line[6:]))
                    if len(events) == 2:
                        break
        assert [e["body"] for e in events] == ["queued before connect", "live"]
        assert events[0]["title"] == "Hi" and events[0]["url"] == "https://shop.example/"
        js = client.get(url + "/api/inapp/inapp.js")
        assert js.status_code == 200 and "EventSource" in js.text
        assert js.headers["content-type"].startswith("application/javascript")
