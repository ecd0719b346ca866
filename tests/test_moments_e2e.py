"""From events to moments, decisions and sends through a real server, in both modes.

Customers open the app and complain over HTTP; the admin API then shows each one's
friction moment and the decision about it, lists every moment newest first a page
at a time, and once the outbox has acted on a send the customer's history holds
its outcome (``Message Sent`` or ``Message Failed``). Run against the embedded
``momently serve`` and against distributed mode (``tests/distributed/e2e.py``),
with the same assertions.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.distributed.e2e import (
    MODES,
    AnyServer,
    DistributedServer,
    complaint_time,
    daytime_zone,
    distributed_server,  # noqa: F401 (fixture)
    settle,
)

pytestmark = pytest.mark.integration
CUSTOMERS = [f"shopper-{n}" for n in range(6)]
OUTCOMES = {"Message Sent", "Message Failed"}


@pytest.fixture(params=MODES)
def server(request: pytest.FixtureRequest) -> AnyServer:
    if request.param == "embedded":
        made: AnyServer = request.getfixturevalue("server_factory")()
    else:
        made = request.getfixturevalue("distributed_server")
    return made


def get(server: AnyServer, path: str, **params: str | int) -> dict[str, Any]:
    settle(server)
    answer = httpx.get(server.url + path, headers=server.admin, params=params, timeout=10)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def iso(at: datetime) -> str:
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def test_complaints_become_moments_decisions_and_logged_sends(server: AnyServer) -> None:
    now = complaint_time()
    batch = []
    for n, user in enumerate(CUSTOMERS):
        device = {
            "device": {"id": f"{user}-phone", "type": "ios", "token": f"tok-{n}"},
            "timezone": daytime_zone(),  # quiet hours would make every send a later one
        }
        batch += [
            {"type": "track", "userId": user, "event": "Application Opened",
             "messageId": f"{user}-open", "timestamp": iso(now - timedelta(minutes=2)),
             "context": device},
            {"type": "track", "userId": user, "event": "Support Message",
             "messageId": f"{user}-complaint", "timestamp": iso(now - timedelta(seconds=n)),
             "properties": {"text": "this is terrible, my order is late again!!"},
             "context": device},
        ]  # fmt: skip
    answer = httpx.post(
        server.url + "/v1/batch", json={"batch": batch}, auth=(server.write_key, ""), timeout=10
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["accepted"] == len(batch)

    decided: dict[str, dict[str, Any]] = {}
    moment_ids: set[str] = set()
    for user in CUSTOMERS:
        moments = get(server, "/api/moments", customer=user)["moments"]
        friction = [m for m in moments if m["kind"] == "friction"]
        assert friction, f"{user}: {moments}"
        moment_ids |= {m["momentId"] for m in moments}
        decisions = get(server, "/api/decisions", customer=user)["decisions"]
        assert {d["momentId"] for d in decisions} <= {m["momentId"] for m in moments}
        (decision,) = [d for d in decisions if d["momentKind"] == "friction"]
        assert decision["customerId"] == get(server, f"/api/profiles/{user}")["customerId"]
        one = get(server, f"/api/decisions/{decision['decisionId']}")
        assert one["decisionId"] == decision["decisionId"]
        decided[user] = decision

    # Every moment, newest first, two a page: each once, in order.
    paged: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, str | int] = {"limit": 2}
        if cursor is not None:
            params["cursor"] = cursor
        page = get(server, "/api/moments", **params)
        paged += page["moments"]
        cursor = page["next"]
        if cursor is None:
            break
    assert {m["momentId"] for m in paged} == moment_ids
    assert len(paged) == len(moment_ids)
    order = [(m["atMs"], m["momentId"]) for m in paged]
    assert order == sorted(order, reverse=True)

    # What the outbox did with each send comes back into the customer's history (a
    # send held out, for the lift measurement, is decided but never sent).
    sends = {
        user: d for user, d in decided.items() if d["action"] == "send" and d["status"] == "decided"
    }
    assert sends, f"no friction decision was a send: {decided}"
    deadline = time.monotonic() + 60
    for user, decision in sends.items():
        while True:  # the sender works on its own thread: polled, with a deadline
            events = get(server, "/api/events", customer=user)["events"]
            outcomes = [e for e in events if e.get("event") in OUTCOMES]
            if outcomes:
                break
            assert time.monotonic() < deadline, f"{user}: no outcome in {events}"
            time.sleep(0.05)
        (outcome,) = outcomes
        assert outcome["properties"]["decision_id"] == decision["decisionId"]
        assert outcome["userId"] == user


def test_a_world_event_reaches_the_customers_near_it_once(server: AnyServer) -> None:
    now = iso(datetime.now(UTC))
    near = {"location": {"latitude": 51.5154, "longitude": -0.1410, "accuracy": 5}}
    far = {"location": {"latitude": 48.8566, "longitude": 2.3522, "accuracy": 5}}
    batch = [
        {"type": "track", "userId": user, "event": "Location Updated", "messageId": f"{user}-loc",
         "timestamp": now, "context": where}
        for user, where in (("cat", near), ("dan", near), ("eve", far))
    ]  # fmt: skip
    answer = httpx.post(
        server.url + "/v1/batch", json={"batch": batch}, auth=(server.write_key, ""), timeout=10
    )
    assert answer.status_code == 200, answer.text
    settle(server)  # the world event comes after the locations, in every partition

    body = {
        "id": "hot-now-1",
        "name": "hot-now",
        "near": {"place": "store-12", "radius_m": 300},
        "properties": {"message": "Hot doughnuts now"},
    }
    url = server.url + "/api/world-events"
    first = httpx.post(url, json=body, headers=server.admin, timeout=10)
    again = httpx.post(url, json=body, headers=server.admin, timeout=10)
    unknown = httpx.post(
        url, json={**body, "near": {"place": "store-99"}}, headers=server.admin, timeout=10
    )
    assert unknown.status_code == 400 and unknown.json()["field"] == "near.place"
    if isinstance(server, DistributedServer):
        # Published to every partition; the workers count the recipients afterwards.
        assert first.status_code == 202, first.text
        assert first.json() == {"id": "hot-now-1", "partitions": server.partitions,
                                "duplicate": False}  # fmt: skip
    else:
        assert first.status_code == 200, first.text
        assert first.json() == {"id": "hot-now-1", "recipients": 2, "duplicate": False}
    assert again.json()["duplicate"] is True

    moments = get(server, "/api/moments", name="world.hot-now")["moments"]
    profiles = {get(server, f"/api/profiles/{u}")["customerId"]: u for u in ("cat", "dan")}
    assert sorted(profiles[m["customerId"]] for m in moments) == ["cat", "dan"]
    assert all(m["details"]["message"] == "Hot doughnuts now" for m in moments)
