"""The live feed: a thread-safe broadcast hub with bounded queues, and its SSE route."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from momently.clock import FakeClock
from momently.decide.records import Candidate, Decision
from momently.errors import Unauthorized
from momently.moments.model import Moment
from momently.runtime.stage import Decided
from momently.web.live import LiveFeed, TokenMint, compact_decision, live_router
from tests.distributed.e2e import MODES, ingest_client
from tests.web.serve import serve

ADMIN = "live-admin-key"
BEARER = {"Authorization": f"Bearer {ADMIN}"}


def moment(n: int = 1, **changes: Any) -> Moment:
    fields: dict[str, Any] = {
        "moment_id": f"mo-{n}", "customer_id": "c1", "kind": "buy", "name": "buy-intent",
        "confidence": 0.9, "at_ms": 1_000, "expires_ms": 61_000, "trigger": f"m-{n}",
        "source": "intent", "context": {"places": ["store-7"]},
        "details": {"text": "buy toaster", "category": "toasters"},
    }  # fmt: skip
    fields.update(changes)
    return Moment(**fields)


def decision(n: int = 1) -> Decision:
    return Decision(
        decision_id=f"de-{n}", customer_id="c1", moment_id=f"mo-{n}", moment_name="buy-intent",
        moment_kind="buy", at_ms=1_000, action="send", offer="family-toaster", channel="push",
        reasons=["family-toaster scored 1.2 against silence 0"], bound=["cap: 3 of 3 per day"],
        candidates=[Candidate(offer="family-toaster", channel="push", score=1.2)],
        features={"fatigue": 0.1},
    )  # fmt: skip


def test_publish_from_threads_reaches_every_subscriber() -> None:
    feed = LiveFeed()

    async def run() -> list[list[str]]:
        subs = [feed.subscribe(), feed.subscribe()]
        threads = [
            threading.Thread(target=feed.publish, args=("moment", {"n": i})) for i in range(20)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        feed.close()
        seen: list[list[str]] = []
        for sub in subs:
            got: list[str] = []
            while True:
                batch = await sub.next(5)
                got.extend(e.data for e in batch.events)
                if batch.closed:
                    break
            seen.append(got)
        return seen

    first, second = asyncio.run(run())
    assert sorted(first) == sorted(json.dumps({"n": i}, separators=(",", ":")) for i in range(20))
    assert first == second  # one order for everybody: the feed's sequence


def test_a_waiting_subscriber_is_woken_by_a_publish_from_another_thread() -> None:
    feed = LiveFeed()

    async def run() -> tuple[list[str], float]:
        sub = feed.subscribe()
        loop = asyncio.get_running_loop()
        started = loop.time()
        threading.Thread(target=feed.publish, args=("decision", {"id": "de-1"})).start()
        batch = await sub.next(30)  # a wake-up, not the timeout, ends the wait
        return [e.kind for e in batch.events], loop.time() - started

    kinds, waited = asyncio.run(run())
    assert kinds == ["decision"]
    assert waited < 25


def test_a_slow_subscriber_loses_the_oldest_events_and_is_told_how_many() -> None:
    feed = LiveFeed(max_queue=3)

    async def run() -> tuple[list[int], int, int]:
        sub = feed.subscribe()
        for i in range(10):
            feed.publish("moment", {"n": i})
        batch = await sub.next(1)
        return [json.loads(e.data)["n"] for e in batch.events], batch.dropped, sub.dropped

    kept, dropped, total = asyncio.run(run())
    assert kept == [7, 8, 9]
    assert (dropped, total) == (7, 7)


def test_heartbeat_is_an_empty_batch() -> None:
    feed = LiveFeed()

    async def run() -> tuple[int, int, bool]:
        batch = await feed.subscribe().next(0.01)
        return len(batch.events), batch.dropped, batch.closed

    assert asyncio.run(run()) == (0, 0, False)


def test_close_ends_streams_and_refuses_new_events() -> None:
    feed = LiveFeed()

    async def run() -> tuple[bool, bool, int]:
        sub = feed.subscribe()
        waiting = asyncio.create_task(sub.next(None))  # would wait for ever
        await asyncio.sleep(0)
        threading.Thread(target=feed.close).start()
        ended = await asyncio.wait_for(waiting, 30)
        late = await feed.subscribe().next(None)
        return ended.closed, late.closed, feed.publish("moment", {})

    assert asyncio.run(run()) == (True, True, 0)
    assert feed.subscribers == 0


def test_reconnect_after_an_id_replays_what_the_feed_still_holds() -> None:
    feed = LiveFeed(replay=3)
    ids = []

    async def run(after: str | None) -> tuple[list[int], int]:
        sub = feed.subscribe(after)
        batch = await sub.next(0)
        sub.close()
        return [e.seq for e in batch.events], batch.dropped

    async def publish() -> None:
        for i in range(6):
            feed.publish("moment", {"n": i})
            ids.append(f"{feed.epoch}.{i + 1}")

    asyncio.run(publish())
    assert asyncio.run(run(ids[3])) == ([5, 6], 0)
    assert asyncio.run(run(ids[0])) == ([4, 5, 6], 2)  # 2 and 3 are gone
    assert asyncio.run(run("0badc0de.1")) == ([], 0)  # another run of the server
    assert asyncio.run(run(ids[-1])) == ([], 0)
    assert feed.subscribers == 0


@pytest.mark.parametrize("kind", ["", "Moment", "a\nb", "x" * 41, "ev ent"])
def test_event_kinds_are_safe_sse_names(kind: str) -> None:
    with pytest.raises(ValueError, match="event kind"):
        LiveFeed().publish(kind, {})


def test_adapters_publish_compact_json() -> None:
    feed = LiveFeed()
    long_text = "toast " * 100

    async def run() -> list[tuple[str, dict[str, Any]]]:
        sub = feed.subscribe()
        device = {"id": "phone-1", "type": "ios", "model": "iPhone 15", "token": "secret"}
        feed.on_moments([moment(1, context={"device": device}, details={"text": long_text})])
        feed.on_decisions(Decided([decision(2)], {"de-0": "purchase"}))
        batch = await sub.next(1)
        return [(e.kind, json.loads(e.data)) for e in batch.events]

    (k1, m), (k2, d), (k3, c) = asyncio.run(run())
    assert (k1, k2, k3) == ("moment", "decision", "cancelled")
    assert m["momentId"] == "mo-1" and m["kind"] == "buy"
    assert m["context"]["device"] == {"id": "phone-1", "type": "ios"}
    assert len(m["details"]["text"]) == 200
    assert d["decisionId"] == "de-2" and d["bound"] == ["cap: 3 of 3 per day"]
    assert "candidates" not in d and "features" not in d
    assert c == {"decisionId": "de-0", "reason": "purchase"}
    assert compact_decision({"decisionId": "de-9", "unknown": 1}) == {"decisionId": "de-9"}


def test_adapters_never_raise_into_the_stage(caplog: pytest.LogCaptureFixture) -> None:
    class Broken(LiveFeed):
        def publish(self, kind: str, payload: Any) -> int:
            raise RuntimeError("boom")

    feed = Broken()
    with caplog.at_level(logging.ERROR, logger="momently.web.live"):
        feed.on_moments([moment()])
        feed.on_decisions(Decided([decision()]))
    assert len(caplog.records) == 2


def test_rates_are_published_at_most_once_per_interval() -> None:
    now = [0.0]
    feed = LiveFeed(rate_interval_s=1.0, monotonic=lambda: now[0])

    async def run() -> list[dict[str, Any]]:
        sub = feed.subscribe()
        for size in (100, 200):
            now[0] += 0.25
            feed.on_commit(size, 0.004)
        now[0] += 0.5
        feed.on_commit(300, 0.002)  # one second is up
        now[0] += 0.1
        feed.on_commit(50, 0.001)  # starts the next second
        batch = await sub.next(0)
        return [json.loads(e.data) for e in batch.events if e.kind == "rate"]

    (rate,) = asyncio.run(run())
    assert rate == {
        "events": 600, "commits": 3, "seconds": 1.0, "perSecond": 600.0,
        "commitMsMean": pytest.approx(10 / 3, abs=1e-3), "commitMsMax": 4.0,
    }  # fmt: skip


def test_tokens_expire_and_cannot_be_forged() -> None:
    clock = FakeClock(1_000_000)
    mint = TokenMint(ADMIN, clock, ttl_s=60)
    token, expires = mint.mint()
    assert expires == 1_060_000
    mint.check(token)
    other = TokenMint("another-key", clock)
    with pytest.raises(Unauthorized):
        other.check(token)
    head, _, mac = token.partition(".")
    for bad in ("", "x", head, f"{head}.", f"{head}.{mac[:-2]}AA", f"{mac}.{head}", "é.é"):
        with pytest.raises(Unauthorized):
            mint.check(bad)
    clock.advance(60_000)
    with pytest.raises(Unauthorized, match="run out"):
        mint.check(token)


# -- the route -------------------------------------------------------------------------------


def app_with(feed: LiveFeed, admin_key: str | None = ADMIN, **kwargs: Any) -> FastAPI:
    app = FastAPI()
    app.include_router(live_router(feed, admin_key, **kwargs))
    return app


@pytest.fixture(params=MODES)
def client(request: pytest.FixtureRequest) -> Iterator[TestClient]:
    """The route as the embedded server includes it, or an ingest node of distributed
    mode (tests/distributed/e2e.py), whose /api/live is the same route."""
    with client_for(request.param, request, ADMIN) as test_client:
        yield test_client


def client_for(
    mode: str, request: pytest.FixtureRequest, admin_key: str | None
) -> AbstractContextManager[TestClient]:
    if mode == "distributed":
        return ingest_client(request.getfixturevalue("nats_server"), admin_key)
    return TestClient(app_with(LiveFeed(), admin_key))


@pytest.mark.parametrize(
    "url, headers",
    [
        ("/api/live", {}),
        (f"/api/live?key={ADMIN}", {}),  # the admin key never goes in a URL
        ("/api/live?token=nonsense", {}),
        ("/api/live", {"Authorization": "Bearer wrong"}),
        ("/api/live", {"Authorization": f"Basic {ADMIN}"}),
    ],
)
def test_stream_refused_without_the_admin_key_or_a_token(
    client: TestClient, url: str, headers: dict[str, str]
) -> None:
    answer = client.get(url, headers=headers)
    assert answer.status_code == 401
    assert answer.json()["error"] == "Unauthorized"


def test_token_needs_the_admin_key(client: TestClient) -> None:
    assert client.post("/api/live/token").status_code == 401
    assert client.post("/api/live/token", headers={"Authorization": "Bearer no"}).status_code == 401
    answer = client.post("/api/live/token", headers=BEARER)
    assert answer.status_code == 200
    body = answer.json()
    assert body["stream"] == f"/api/live?token={body['token']}"
    assert answer.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("mode", MODES)
def test_everything_refused_when_the_admin_api_is_off(
    request: pytest.FixtureRequest, mode: str
) -> None:
    with client_for(mode, request, None) as off:
        assert off.post("/api/live/token", headers=BEARER).status_code == 401
        assert off.get("/api/live", headers=BEARER).status_code == 401


def test_stream_frames_events_as_sse_and_resumes_after_an_id() -> None:
    class ClosingFeed(LiveFeed):
        """Closes as soon as a stream has subscribed: TestClient reads whole bodies."""

        def subscribe(self, after: str | None = None) -> Any:
            sub = super().subscribe(after)
            self.close()
            return sub

    feed = ClosingFeed()
    for i in range(3):
        feed.publish("moment", {"momentId": f"mo-{i}", "text": "line\nbreak"})
    with TestClient(app_with(feed)) as test_client:
        token = test_client.post("/api/live/token", headers=BEARER).json()["token"]
        answer = test_client.get(
            "/api/live", params={"token": token}, headers={"Last-Event-ID": f"{feed.epoch}.1"}
        )
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/event-stream")
    assert answer.text == (
        "retry: 3000\n: connected\n\n"
        f"id: {feed.epoch}.2\nevent: moment\n"
        'data: {"momentId":"mo-1","text":"line\\nbreak"}\n\n'
        f"id: {feed.epoch}.3\nevent: moment\n"
        'data: {"momentId":"mo-2","text":"line\\nbreak"}\n\n'
    )


def read_events(lines: Iterator[str], count: int) -> list[dict[str, str]]:
    """The next ``count`` events (comments skipped) from an SSE line stream."""
    events: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for line in lines:
        if line == "":
            if current:
                events.append(current)
                current = {}
                if len(events) == count:
                    return events
        elif not line.startswith(":"):
            field, _, value = line.partition(": ")
            current[field] = value
    return events


@pytest.mark.slow
@pytest.mark.integration
def test_live_stream_over_http_gets_events_from_a_thread_and_ends_on_close() -> None:
    feed = LiveFeed(max_queue=2)
    app = app_with(feed, heartbeat_s=0.05)
    with serve(app, lifespan="off") as url, httpx.Client(base_url=url, timeout=30) as http:
        token = http.post("/api/live/token", headers=BEARER).json()["token"]
        with http.stream("GET", "/api/live", params={"token": token}) as answer:
            assert answer.status_code == 200
            lines = answer.iter_lines()
            assert next(lines) == "retry: 3000"
            assert next(lines) == ": connected"
            assert next(lines) == ""
            assert next(lines) == ": ping"  # a heartbeat while nothing happens
            publisher = threading.Thread(
                target=lambda: [feed.publish("moment", {"n": i}) for i in range(3)]
            )
            publisher.start()
            publisher.join()
            got = read_events(lines, 1)
            # Either the stream took them one at a time, or the queue of 2 dropped one.
            if got[0]["event"] == "dropped":
                assert json.loads(got[0]["data"]) == {"dropped": 1, "total": 1}
                got = read_events(lines, 2)
            else:
                got += read_events(lines, 2)
            assert [json.loads(e["data"])["n"] for e in got][-2:] == [1, 2]
            feed.close()
            rest = list(lines)  # the stream ends: the iterator runs out
            assert all(
                line in ("", ": ping") or line.startswith(("id:", "event:", "data:"))
                for line in rest
            )
        assert feed.subscribers == 0


@pytest.mark.slow
@pytest.mark.integration
def test_stopping_the_server_ends_open_streams(caplog: pytest.LogCaptureFixture) -> None:
    """With the feed closed at shutdown, uvicorn never waits on a dashboard left open."""
    feed = LiveFeed()
    running = serve(app_with(feed), lifespan="off", closing=[feed.close])
    url = running.__enter__()
    stopped = False
    try:
        with (
            httpx.Client(base_url=url, timeout=30) as http,
            http.stream("GET", "/api/live", headers=BEARER) as answer,
        ):
            lines = answer.iter_lines()
            assert next(lines) == "retry: 3000"
            with caplog.at_level(logging.WARNING, logger="uvicorn.error"):
                running.__exit__(None, None, None)  # returns once the server has stopped
                stopped = True
            assert [line for line in lines if line.startswith("event:")] == []
    finally:
        if not stopped:
            running.__exit__(None, None, None)
    assert not [r for r in caplog.records if "graceful shutdown" in r.getMessage()]
    assert feed.closed and feed.subscribers == 0
