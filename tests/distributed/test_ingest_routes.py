"""The ingest node serves what the embedded server serves: the same routes, and through
them the workers' tracking links, live feed, in-app messages and deliveries."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import nats as nats_client
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from starlette.routing import BaseRoute

from momently.clock import FakeClock
from momently.config import Settings
from momently.deliver.tracking import TokenSigner
from momently.distributed.admin import Partitions
from momently.distributed.command import worker_links
from momently.distributed.deliveries import merge_counters
from momently.distributed.deliveries import rpc_subject as counters_subject
from momently.distributed.gather import gather
from momently.distributed.log import LogSettings
from momently.distributed.models import rpc_subject
from momently.distributed.partition import partition_of
from momently.distributed.web import ingest_app
from momently.errors import ConfigError
from momently.moments.playbook import load_playbook
from momently.predict.population import MODELS
from momently.web.app import create_app
from momently.web.models_api import ModelInfo
from tests.distributed.e2e import DistributedServer, complaint_time, daytime_zone, distributed
from tests.nats_server import NatsServer
from tests.postgres import Cluster

# Routes the embedded server has and an ingest node does not, each with its reason:
# none (GET /api/models merges the partitions' models: momently.distributed.models).
NOT_ON_INGEST_NODES: set[tuple[str, str]] = set()
# Routes only distributed mode has: the process's liveness and readiness, and how far
# each partition's worker has got.
ONLY_ON_INGEST_NODES = {("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/api/partitions")}


def routes(found: Sequence[BaseRoute]) -> Iterator[tuple[str, str]]:
    """(method, path) of every route, those of included routers too."""
    for route in found:
        nested = getattr(route, "original_router", None)
        if nested is not None:
            yield from routes(nested.routes)
        elif isinstance(route, APIRoute):
            for method in sorted((route.methods or set()) - {"HEAD"}):
                yield method, route.path


def served(app: FastAPI) -> set[tuple[str, str]]:
    return set(routes(app.routes))


def test_an_ingest_node_serves_the_embedded_servers_routes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MOMENTLY_PRIVACY_SECRET", "p" * 32)
    monkeypatch.setenv("MOMENTLY_TRACKING_SECRET", "t" * 32)
    embedded = create_app(Settings(data_dir=tmp_path / "e", write_keys=("w",), admin_key="a"))
    log = LogSettings.from_url("nats://127.0.0.1:1?stream=R&partitions=4")  # never connected
    stores = f"sqlite:///{tmp_path}/p{{partition}}.db"
    node = ingest_app(
        log, ("w",), admin_key="a", reads=Partitions(log, stores, stores),
        playbook=load_playbook(None),
    )  # fmt: skip
    with TestClient(embedded):  # its lifespan closes the stores it opened
        ours, theirs = served(node), served(embedded)
    assert {("GET", "/dashboard"), ("GET", "/api/live"), ("GET", "/t/c/{token}")} <= theirs
    assert theirs - ours == NOT_ON_INGEST_NODES
    assert ours - theirs == ONLY_ON_INGEST_NODES


@pytest.fixture(scope="module")
def cluster(nats_server: NatsServer, postgres: Cluster) -> Iterator[DistributedServer]:
    """One ingest node and two workers for this module's tests (tests/distributed/e2e.py)."""
    with distributed(nats_server, postgres) as server:
        yield server


USERS = [f"ann-{n}" for n in range(6)]


def iso(at: datetime) -> str:
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def post(server: DistributedServer, batch: list[dict[str, Any]]) -> None:
    answer = httpx.post(
        server.url + "/v1/batch", json={"batch": batch}, auth=(server.write_key, ""), timeout=10
    )
    assert answer.status_code == 200, answer.text
    server.settle()


def sse(lines: Iterator[str], want: int) -> Iterator[dict[str, str]]:
    """Events (comments skipped) from an SSE line stream, until ``want`` have come."""
    current: dict[str, str] = {}
    for line in lines:
        if line == "" and "data" in current:
            yield current
            current = {}
            want -= 1
            if want == 0:
                return
        elif line == "":
            current = {}  # a block without data (the stream's retry: line)
        elif not line.startswith(":"):
            field, _, value = line.partition(": ")
            current[field] = value


def test_workers_messages_links_live_feed_and_in_app_reach_the_ingest_node(
    cluster: DistributedServer,
) -> None:
    with httpx.Client(base_url=cluster.url, headers=cluster.admin, timeout=30) as admin:
        check_the_ingest_node(cluster, admin)


def device(user: str) -> dict[str, Any]:
    """Her phone, where it is daytime: no quiet hours make her send a later one."""
    phone = {"id": f"{user}-phone", "type": "ios", "token": f"tok-{user}"}
    return {"device": phone, "timezone": daytime_zone()}


def check_the_ingest_node(server: DistributedServer, admin: httpx.Client) -> None:
    now = complaint_time()
    # The dashboard's live feed, open before the customers complain: the workers'
    # moments and decisions about it arrive through NATS.
    with admin.stream("GET", "/api/live") as live:
        assert live.status_code == 200
        lines = live.iter_lines()
        assert next(lines) == "retry: 3000"
        post(server, [
            message
            for n, user in enumerate(USERS)
            for message in (
                {"type": "track", "userId": user, "event": "Application Opened",
                 "messageId": f"{user}-open", "timestamp": iso(now - timedelta(minutes=2)),
                 "context": device(user)},
                {"type": "track", "userId": user, "event": "Support Message",
                 "messageId": f"{user}-complaint", "timestamp": iso(now - timedelta(seconds=n)),
                 "context": device(user),
                 "properties": {"text": "this is terrible, my order is late again!!"}},
            )
        ])  # fmt: skip
        moments: dict[str, dict[str, Any]] = {}  # by the complaint's messageId
        decisions: dict[str, dict[str, Any]] = {}  # by moment id
        for event in sse(lines, 10 * len(USERS)):
            body = json.loads(event["data"])
            if event["event"] == "moment" and body["kind"] == "friction":
                moments[body["trigger"]] = body
            elif event["event"] == "decision" and body["momentKind"] == "friction":
                decisions[body["momentId"]] = body
            wanted = [moments.get(f"{u}-complaint", {}).get("momentId") for u in USERS]
            if all(m in decisions for m in wanted):
                break
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    for user in USERS:
        moment = seen["moment", user] = moments[f"{user}-complaint"]
        seen["decision", user] = decisions[moment["momentId"]]
        assert moment["customerId"] == admin.get(f"/api/profiles/{user}").json()["customerId"]
    # A send held out (for the lift measurement) is decided but never sent.
    sends = [u for u in USERS if seen["decision", u]["action"] == "send"]
    assert sends, f"no friction decision was a send: {seen}"
    user = sends[0]
    decision = seen["decision", user]
    assert decision["channel"] == "in_app", decision

    # The send, in the workers' shared outbox, read through the node's /api/deliveries.
    deadline = time.monotonic() + 60
    while True:  # the sender works on its own thread: polled, with a deadline
        found = admin.get("/api/deliveries", params={"customer": user}).json()["deliveries"]
        if found and found[0]["state"] == "sent":
            break
        assert time.monotonic() < deadline, found
        time.sleep(0.05)
    (entry,) = found
    assert entry["decision_id"] == decision["decisionId"]
    stats = admin.get("/api/deliveries/stats").json()
    assert stats["outbox"]["sent"] >= 1
    # The embedded previews and lift, over every partition's stores.
    shown = admin.post(
        "/api/templates/preview",
        json={"offer": "sorry-voucher", "channel": "in_app", "customer": user},
    )
    assert shown.status_code == 200 and shown.json()["ok"] is True, shown.text

    # The in-app message reached the node's mailbox for her device: a stream opened now
    # gets it, as the embedded server's does.
    token = admin.post("/api/inapp/token", json={"customer": user, "device": f"{user}-phone"})
    assert token.status_code == 200, token.text
    with httpx.stream("GET", server.url + token.json()["stream"], timeout=30) as inapp:
        assert inapp.status_code == 200
        (message,) = list(sse(inapp.iter_lines(), 1))
    assert message["id"] == entry["key"]
    assert json.loads(message["data"])["decision_id"] == decision["decisionId"]

    # The worker signed the message's unsubscribe link with the key the node checks, and
    # pointed it at the node: one click there puts her opt-out in her partition.
    link = entry["message"]["unsubscribe_url"]
    assert link.startswith(server.url + "/t/u/"), link
    assert httpx.get(link, timeout=10).status_code == 200  # the confirmation page
    forged = httpx.post(link[:-4] + "AAAA", data={"List-Unsubscribe": "One-Click"}, timeout=10)
    assert forged.status_code in (400, 401, 403), forged.text
    done = httpx.post(link, data={"List-Unsubscribe": "One-Click"}, timeout=10)
    assert done.status_code == 200, done.text
    server.settle()
    events = admin.get("/api/events", params={"customer": user}).json()["events"]
    (unsubscribed,) = [e for e in events if e.get("event") == "Unsubscribed"]
    assert unsubscribed["properties"]["decision_id"] == decision["decisionId"]
    assert unsubscribed["userId"] == user

    # Her predictions, from the models of her partition's owner.
    scores = admin.get(f"/api/customers/{user}/predictions")
    assert scores.status_code == 200, scores.text
    assert scores.json()["customerId"] == entry["customer_id"]
    assert 0 <= scores.json()["propensity"] <= 1
    assert admin.get("/api/customers/nobody/predictions").json()["field"] == "id"

    # Lift reads the decisions and the conversions of every partition.
    assert len({partition_of(f"u:{u}", server.partitions) for u in USERS[:3]}) > 1
    post(server, [
        {"type": "track", "userId": u, "event": "Order Completed", "messageId": f"{u}-order",
         "timestamp": iso(datetime.now(UTC)), "properties": {"revenue": 20}}
        for u in USERS[:3]
    ])  # fmt: skip
    lift = admin.get("/api/lift")
    assert lift.status_code == 200, lift.text
    report = lift.json()
    assert report["conversions"] == 3, report
    acted = [u for u in USERS if seen["decision", u]["action"] in ("send", "schedule")]
    assert report["decisions"] == len(acted), report  # held out ones too


def test_a_workers_tracking_links_need_the_shared_key() -> None:
    clock = FakeClock(1_790_000_000_000)
    assert worker_links(None, {}, clock) is None  # no --public-url: no links
    with pytest.raises(ConfigError, match="MOMENTLY_TRACKING_SECRET"):
        worker_links("https://t.example.com", {}, clock)  # a key of its own: useless
    key = "k" * 32
    with pytest.raises(ConfigError, match="http"):
        worker_links("ftp://t.example.com", {"MOMENTLY_TRACKING_SECRET": key}, clock)
    links = worker_links("https://t.example.com/", {"MOMENTLY_TRACKING_SECRET": key}, clock)
    url = links.unsubscribe("de-1", "c1", "email")
    assert url.startswith("https://t.example.com/t/u/")
    claims = TokenSigner(key.encode(), clock).verify(url.rsplit("/", 1)[1], kind="unsubscribe")
    assert (claims.decision_id, claims.customer_id) == ("de-1", "c1")  # a node's key checks it


def partition_sums(nats: NatsServer, server: DistributedServer) -> dict[str, tuple[int, float]]:
    """Each model's updates and labels summed over the partitions, asked of the two
    workers directly (as the node asks them)."""

    async def ask() -> dict[str, tuple[int, float]]:
        client = await nats_client.connect(f"nats://{nats.address}")
        try:
            found = await gather(client, rpc_subject(server.stream), server.partitions, 10.0)
        finally:
            await client.close()
        assert not found.missing, found.missing
        assert len(found.answers) == 2  # each worker, for its half
        sums: dict[str, tuple[int, float]] = {}
        for body in found.answers:
            for p in body["partitions"]:
                for model in body["models"][str(p)]:
                    updates, labels = sums.get(model["name"], (0, 0.0))
                    sums[model["name"]] = (
                        updates + model["updates"],
                        labels + model["tracker"]["n"],
                    )
        return sums

    return asyncio.run(ask())


def test_the_ingest_nodes_models_are_the_sums_of_the_partitions(
    cluster: DistributedServer, nats_server: NatsServer
) -> None:
    now = datetime.now(UTC)
    users = [f"browser-{n}" for n in range(6)]
    assert len({partition_of(f"u:{u}", cluster.partitions) for u in users}) > 2
    post(cluster, [
        {"type": "track", "userId": u, "event": name, "messageId": f"{u}-{step}",
         "timestamp": iso(now - timedelta(minutes=30 - step)),
         "properties": {"category": "toasters"}}
        for u in users
        for step, name in enumerate(["Product Viewed", "Product Added", "Checkout Started"] * 3)
    ])  # fmt: skip
    before = partition_sums(nats_server, cluster)
    with httpx.Client(base_url=cluster.url, headers=cluster.admin, timeout=30) as admin:
        answer = admin.get("/api/models")
    after = partition_sums(nats_server, cluster)
    assert answer.status_code == 200, answer.text
    assert answer.headers["X-Momently-Partitions-Answered"] == f"{cluster.partitions}/9"
    assert "X-Momently-Partitions-Missing" not in answer.headers
    models = answer.json()
    assert [m["name"] for m in models] == list(MODELS)  # the embedded list (test_models.py)
    for model in models:
        ModelInfo.model_validate(model)
        name = model["name"]
        # Counts only grow (a worker's stage may tick between two asks): the node's
        # merge lies between the sums asked just before and just after it.
        assert before[name][0] <= model["updates"] <= after[name][0], (name, before, after)
        labels = model["metrics"]["labels"]
        assert before[name][1] <= labels <= after[name][1], (name, before, after)
    touchpoints = {m["name"]: m for m in models}["next_touchpoint"]
    assert touchpoints["updates"] >= 6 * 9  # every browser's nine events, learned
    assert touchpoints["metrics"]["labels"] >= 6 * 2  # one transition in four scored


def worker_counters(nats: NatsServer, server: DistributedServer) -> tuple[dict[str, Any], int]:
    """The two workers' counters, asked of them directly (as the node asks), added; and
    how many answered."""

    async def ask() -> tuple[dict[str, Any], int]:
        client = await nats_client.connect(f"nats://{nats.address}")
        try:
            found = await gather(client, counters_subject(server.stream), server.partitions, 10.0)
        finally:
            await client.close()
        assert not found.missing, found.missing
        return merge_counters(found.answers), len(found.answers)

    return asyncio.run(ask())


def test_the_ingest_nodes_delivery_stats_add_the_workers_counters(
    cluster: DistributedServer, nats_server: NatsServer
) -> None:
    now = complaint_time()
    users = [f"grumbler-{n}" for n in range(6)]
    post(cluster, [
        message
        for n, user in enumerate(users)
        for message in (
            {"type": "track", "userId": user, "event": "Application Opened",
             "messageId": f"{user}-open", "timestamp": iso(now - timedelta(minutes=2)),
             "context": device(user)},
            {"type": "track", "userId": user, "event": "Support Message",
             "messageId": f"{user}-complaint", "timestamp": iso(now - timedelta(seconds=n)),
             "context": device(user),
             "properties": {"text": "this is terrible, my order is late again!!"}},
        )
    ])  # fmt: skip
    deadline = time.monotonic() + 90
    with httpx.Client(base_url=cluster.url, headers=cluster.admin, timeout=30) as admin:
        while True:  # until a send is out and no sender is mid-send: polled, with a deadline
            before, _ = worker_counters(nats_server, cluster)
            answer = admin.get("/api/deliveries/stats")
            after, answered = worker_counters(nats_server, cluster)
            assert answer.status_code == 200, answer.text
            assert answer.headers["X-Momently-Workers-Answered"] == str(answered) == "2"
            assert answer.headers["X-Momently-Partitions-Answered"] == f"{cluster.partitions}/9"
            assert "X-Momently-Partitions-Missing" not in answer.headers
            body = answer.json()
            # Counters only grow: the node's sums lie between those asked just before
            # and just after it, whatever the senders did meanwhile.
            for name in set(before["counts"]) | set(after["counts"]) | set(body["counts"]):
                found = body["counts"].get(name, 0)
                assert before["counts"].get(name, 0) <= found <= after["counts"].get(name, 0)
            for name in ("passes", "errors"):
                assert before["worker"][name] <= body["worker"][name] <= after["worker"][name]
            sent = body["outbox"]["sent"]
            if sent >= 1 and before == after and body["counts"].get("outcome.sent") == sent:
                break  # every send in the shared outbox counted once, by its sender
            assert time.monotonic() < deadline, (body, before, after)
            time.sleep(0.1)
    assert body["counts"]["submitted"] >= 1
    assert body["worker"]["passes"] >= 2  # the senders have run
