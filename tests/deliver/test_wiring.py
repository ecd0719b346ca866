"""Delivery wired into the engine, end to end in-process: decisions become outbox entries,
go out through the playbook's providers (the in-app hub, a signed webhook on loopback),
and come back into the log; unsubscribes, purchases and restarts do what they promise.

The stage and the outbox are driven by hand (``settle``, ``send_due``) on a fake
clock; one test lets the worker thread run and waits for its result.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi import FastAPI
from fastapi.testclient import TestClient

from momently.clock import FakeClock
from momently.config import Settings
from momently.deliver.channels.inapp import InAppHub
from momently.deliver.outbox import Tally
from momently.events import from_ms
from momently.moments.playbook import Playbook, load_playbook
from momently.runtime.delivery import Delivery
from momently.runtime.stage import StageRunner
from momently.types import Store
from momently.web.app import create_app
from tests.conftest import ADMIN_KEY, START, WRITE_KEY
from tests.deliver.servers import Recorder
from tests.deliver.test_webhook import SECRET as HOOK_SECRET
from tests.deliver.test_webhook import verify
from tests.ports import free_port

PUBLIC = "https://m.brand.example"
ANGRY = "my order never came and nobody answers 😡"


def playbook(tmp: Path, change: Callable[[dict[str, Any]], None] | None = None) -> Playbook:
    """The example playbook with no holdouts (so every customer is treated), then ``change``."""
    data = yaml.safe_load(
        resources.files("momently.playbooks").joinpath("example.yaml").read_text("utf-8")
    )
    data["decide"]["holdout"] = 0
    for offer in data["decide"]["offers"]:
        offer.pop("holdout", None)
    if change is not None:
        change(data["decide"])
    path = tmp / f"playbook-{len(list(tmp.glob('playbook-*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), "utf-8")
    return load_playbook(path)


def offer(decide: dict[str, Any], offer_id: str) -> dict[str, Any]:
    found: dict[str, Any] = next(o for o in decide["offers"] if o["id"] == offer_id)
    return found


@dataclass
class Rig:
    """One engine: its HTTP client, its clock, and the parts the tests look into."""

    client: TestClient
    clock: FakeClock
    data_dir: Path
    admin: Mapping[str, str]

    @property
    def app(self) -> FastAPI:
        app: FastAPI = self.client.app  # type: ignore[assignment]
        return app

    @property
    def delivery(self) -> Delivery:
        delivery: Delivery = self.app.state.delivery
        return delivery

    @property
    def hub(self) -> InAppHub:
        hub: InAppHub = self.app.state.hub
        return hub

    @property
    def store(self) -> Store:
        store: Store = self.app.state.store
        return store

    def track(self, user: str, event: str, at: int, **parts: Any) -> None:
        body = {"userId": user, "event": event, "timestamp": from_ms(at).isoformat(), **parts}
        answer = self.client.post("/v1/track", json=body, auth=(WRITE_KEY, ""))
        assert answer.status_code == 200, answer.text

    def app_open(self, user: str, at: int, **traits: Any) -> None:
        """The customer's app comes to the foreground on their phone."""
        self.track(
            user, "Application Opened", at, traits=traits,
            context={"device": {"id": f"{user}-phone", "type": "ios"}},
        )  # fmt: skip

    def complain(self, user: str, at: int, text: str = ANGRY) -> None:
        self.track(
            user, "Support Message", at, properties={"text": text},
            context={"device": {"id": f"{user}-phone", "type": "ios"}},
        )  # fmt: skip

    def settle(self) -> None:
        """The moment stage processes the log and fires due timers, now, in this thread."""
        runner: StageRunner = self.app.state.stage
        with runner.lock:
            runner.stage.catch_up()
            runner.stage.tick()

    def flush(self) -> None:
        """Wait until everything queued for the log (outcome events) is committed."""
        self.app.state.writer.submit([]).result(30)

    def send_due(self) -> Tally:
        """One outbox pass, in this thread; then the outcome events are in the log."""
        tally = self.delivery.outbox.run_once()
        self.flush()
        return tally

    def get(self, path: str, **params: Any) -> Any:
        answer = self.client.get(path, params=params, headers=self.admin)
        assert answer.status_code == 200, answer.text
        return answer.json()

    def decisions(self, user: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.get("/api/decisions", customer=user)["decisions"]
        return found

    def deliveries(self, **params: Any) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.get("/api/deliveries", **params)["deliveries"]
        return found

    def events(self, user: str, name: str | None = None) -> list[dict[str, Any]]:
        found = self.get("/api/events", customer=user, limit=1000)["events"]
        return [e for e in found if name is None or e.get("event") == name]

    def close(self) -> None:
        self.client.__exit__(None, None, None)


RigFactory = Callable[..., Rig]


@pytest.fixture(name="rig_factory")
def rig_factory_fixture(tmp_path: Path) -> Iterator[RigFactory]:
    """Makes engines on SQLite in a data dir; the same dir again is a restart."""
    open_rigs: list[Rig] = []

    def make(
        *,
        book: Playbook | None = None,
        environ: Mapping[str, str] | None = None,
        data_dir: Path | None = None,
        worker: bool = False,
        clock: FakeClock | None = None,
    ) -> Rig:
        settings = Settings(
            data_dir=data_dir or tmp_path / f"app{len(open_rigs)}",
            write_keys=(WRITE_KEY,),
            admin_key=ADMIN_KEY,
            synchronous="NORMAL",
            public_url=PUBLIC,
        )
        clock = clock or FakeClock(START)
        app = create_app(
            settings, clock=clock, playbook=book, environ=environ or {},
            delivery_worker=worker,
        )  # fmt: skip
        client = TestClient(app)
        client.__enter__()
        rig = Rig(client, clock, settings.data_dir, {"Authorization": f"Bearer {ADMIN_KEY}"})
        open_rigs.append(rig)
        return rig

    yield make
    for rig in open_rigs:
        rig.close()


def first_message(hub: InAppHub, customer: str, device: str) -> dict[str, Any]:
    """What a subscriber of the device's in-app stream receives first."""

    async def take() -> dict[str, Any]:
        stream = hub.stream((customer, device))
        try:
            async for event in stream:
                assert event is not None
                body: dict[str, Any] = json.loads(event.data)
                return body
        finally:
            await stream.aclose()  # type: ignore[attr-defined]  # an async generator
        raise AssertionError("the stream ended without a message")

    return asyncio.run(take())


def only(items: list[dict[str, Any]]) -> dict[str, Any]:
    assert len(items) == 1, items
    return items[0]


# -- the in-app path ---------------------------------------------------------------------------


def test_friction_with_the_app_open_reaches_the_in_app_stream(rig_factory: RigFactory) -> None:
    rig = rig_factory()
    rig.app_open("ann", START - 60_000)
    rig.complain("ann", START)
    rig.settle()
    decision = only(rig.decisions("ann"))
    assert decision["momentKind"] == "friction"
    assert (decision["action"], decision["channel"]) == ("send", "in_app")
    assert decision["offer"] == "sorry-voucher" and decision["device"] == "ann-phone"

    entry = only(rig.deliveries(decision=decision["decisionId"]))
    assert entry["state"] == "pending" and entry["channel"] == "in_app"
    assert entry["message"]["text"].startswith("Sorry about that")
    assert entry["message"]["unsubscribe_url"].startswith(PUBLIC + "/t/u/")

    tally = rig.send_due()
    assert (tally.claimed, tally.sent) == (1, 1)
    shown = first_message(rig.hub, decision["customerId"], "ann-phone")
    assert shown["decision_id"] == decision["decisionId"]
    assert shown["body"] == "Sorry about that. Here is 5 off your next order."
    assert shown["data"]["offer"] == "sorry-voucher"
    sent = only(rig.deliveries(customer="ann"))
    assert sent["state"] == "sent" and sent["provider"] == "in_app.hub"

    logged = only(rig.events("ann", "Message Sent"))
    assert logged["properties"] == {
        "decision_id": decision["decisionId"],
        "channel": "in_app",
        "kind": "in_app",
        "offer": "sorry-voucher",
        "attempts": 0,
        "provider": "in_app.hub",
        "provider_message_id": entry["key"],
    }
    assert logged["userId"] == "ann" and logged["source"] == "momently:delivery"
    # a second pass sends nothing, and the outcome is logged once
    assert rig.send_due().claimed == 0
    stored = rig.delivery.outbox.store.get(entry["key"])
    assert stored is not None
    rig.delivery._heard(stored)  # the listener hears it twice
    rig.flush()
    assert len(rig.events("ann", "Message Sent")) == 1
    rig.settle()  # the outcome event reaches the stage: no moment, no decision of its own
    assert len(rig.decisions("ann")) == 1
    assert rig.get("/api/moments", customer="ann")["moments"][0]["name"] == "friction.sentiment"


def test_the_worker_thread_sends_without_being_driven(rig_factory: RigFactory) -> None:
    """The lifespan runs the outbox worker; wait (for readiness, not a time) for its send."""
    rig = rig_factory(worker=True)
    rig.app_open("bob", START - 60_000)
    rig.complain("bob", START)
    rig.settle()  # on_decisions enqueues and wakes the worker
    deadline = time.monotonic() + 30
    while not rig.deliveries(customer="bob", status="sent"):
        assert time.monotonic() < deadline, rig.deliveries(customer="bob")
        time.sleep(0.02)
    while not rig.events("bob", "Message Sent"):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert rig.get("/api/deliveries/stats")["worker"]["passes"] >= 1


# -- unsubscribe -----------------------------------------------------------------------------


def test_an_unsubscribe_click_silences_the_next_decision(rig_factory: RigFactory) -> None:
    rig = rig_factory()
    rig.app_open("cat", START - 60_000)
    rig.complain("cat", START)
    rig.settle()
    entry = only(rig.deliveries(customer="cat"))
    rig.send_due()
    link = entry["message"]["unsubscribe_url"].removeprefix(PUBLIC)

    page = rig.client.get(link)  # a link scanner's GET changes nothing
    assert page.status_code == 200 and "<form method='post'>" in page.text
    assert rig.events("cat", "Unsubscribed") == []
    answer = rig.client.post(
        link,
        content="List-Unsubscribe=One-Click",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert answer.status_code == 200, answer.text

    # committed before the answer: in the log, and the consent is in the profile already
    unsubscribed = only(rig.events("cat", "Unsubscribed"))
    assert unsubscribed["properties"]["decision_id"] == entry["decision_id"]
    assert unsubscribed["properties"]["channel"] == "in_app"
    consent = rig.get("/api/profiles/cat")["consent"]
    assert consent["in_app:marketing"]["granted"] is False
    assert rig.client.post(link).status_code == 200  # again: the same event, deduped
    assert len(rig.events("cat", "Unsubscribed")) == 1

    rig.app_open("cat", START + 3 * 3_600_000)
    rig.complain("cat", START + 3 * 3_600_000 + 1_000, "still nothing, this is a joke 😡")
    rig.settle()
    latest = rig.decisions("cat")[0]
    assert latest["decisionId"] != entry["decision_id"]
    assert latest["action"] == "silent"
    assert "opt_out: opted out of marketing on in_app (event:Unsubscribed)" in latest["bound"]
    assert len(rig.deliveries(customer="cat")) == 1  # nothing new in the outbox


# -- a signed webhook, with failover ------------------------------------------------------------


def hook_playbook(tmp: Path, primary: str, backup: str) -> Playbook:
    def change(decide: dict[str, Any]) -> None:
        decide["channels"].append(
            {
                "name": "hook",
                "kind": "webhook",
                "providers": [
                    {"name": "primary", "type": "webhook", "url": primary,
                     "secret_env": "HOOK_SECRET", "timeout_s": 5, "allow_private_targets": True},
                    {"name": "backup", "type": "webhook", "url": backup,
                     "secret_env": "HOOK_SECRET", "rate": {"per_second": 50, "burst": 5},
                     "allow_private_targets": True},
                ],
            }
        )  # fmt: skip
        voucher = offer(decide, "sorry-voucher")
        voucher.update(value=200, cost=0)  # worth a send on a channel the models know nothing of
        voucher["messages"] = {
            "hook": {"title": "Sorry", "body": "Sorry, {{ profile.user_id }}: 5 off."}
        }

    return playbook(tmp, change)


def test_a_webhook_channel_posts_a_signed_message_failing_over(
    rig_factory: RigFactory, http: Recorder, tmp_path: Path
) -> None:
    down = f"http://127.0.0.1:{free_port()}/hooks"  # nothing listens: the connect fails
    rig = rig_factory(
        book=hook_playbook(tmp_path, down, http.url + "/hooks"),
        environ={"HOOK_SECRET": HOOK_SECRET},
    )
    rig.app_open("dan", START - 60_000)
    rig.complain("dan", START)
    rig.settle()
    decision = only(rig.decisions("dan"))
    assert (decision["action"], decision["channel"]) == ("send", "hook"), (
        decision["reasons"],
        decision["candidates"],
        decision["bound"],
    )
    tally = rig.send_due()
    assert tally.sent == 1, tally
    (request,) = http.requests
    assert request.path == "/hooks" and verify(request)
    body = json.loads(request.body)
    assert body["data"]["decision_id"] == decision["decisionId"]
    assert body["data"]["text"] == "Sorry, dan: 5 off."
    entry = only(rig.deliveries(customer="dan"))
    assert request.headers["webhook-id"] == entry["key"]
    assert (entry["state"], entry["provider"]) == ("sent", "backup")
    assert only(rig.events("dan", "Message Sent"))["properties"]["provider"] == "backup"


# -- a planned send and a purchase ---------------------------------------------------------------


def test_a_scheduled_send_cancelled_by_a_purchase_never_leaves(
    rig_factory: RigFactory, http: Recorder, tmp_path: Path
) -> None:
    """Quiet hours until 16:00 plan the apology for later; the customer buys first."""

    def change(decide: dict[str, Any]) -> None:
        decide["quiet_hours"] = {"start": "14:00", "end": "16:00"}  # START is 14:13 UTC
        decide["arbitration"] = {"exploration": 0, "fatigue_cost": 0, "decay": "none"}
        email = next(c for c in decide["channels"] if c["name"] == "email")
        email["providers"] = [
            {
                "type": "webhook",
                "url": http.url + "/mail",
                "secret_env": "RELAY_SECRET",
                "allow_private_targets": True,
            }
        ]
        voucher = offer(decide, "sorry-voucher")
        voucher.update(value=200, cost=0)
        voucher["messages"] = {"email": voucher["messages"]["email"]}

    rig = rig_factory(book=playbook(tmp_path, change), environ={"RELAY_SECRET": HOOK_SECRET})
    rig.app_open("eve", START - 60_000, email="eve@example.com")
    rig.complain("eve", START)
    rig.settle()
    decision = only(rig.decisions("eve"))
    assert (decision["action"], decision["channel"]) == ("schedule", "email"), decision
    entry = only(rig.deliveries(customer="eve"))
    assert entry["state"] == "pending" and entry["due_ms"] == decision["sendAtMs"] > START
    assert rig.send_due().claimed == 0  # not due yet

    rig.clock.advance(30 * 60_000)
    rig.track("eve", "Order Completed", rig.clock.now_ms(), properties={"revenue": 42.0})
    rig.settle()
    cancelled = only(rig.deliveries(customer="eve"))
    assert cancelled["state"] == "cancelled"
    assert cancelled["reason"] == "the customer bought already"
    assert rig.get(f"/api/decisions/{decision['decisionId']}")["status"] == "cancelled"

    rig.clock.advance(24 * 3_600_000)
    assert rig.send_due().claimed == 0
    assert http.requests == []
    assert only(rig.deliveries(customer="eve"))["state"] == "cancelled"
    assert rig.events("eve", "Message Sent") == rig.events("eve", "Message Failed") == []


# -- a crash between the stage's commit and the enqueue -------------------------------------------


def test_reconcile_after_a_crash_submits_the_lost_send_exactly_once(
    rig_factory: RigFactory, tmp_path: Path
) -> None:
    data_dir = tmp_path / "crashy"
    first = rig_factory(data_dir=data_dir)
    first.app_open("fay", START - 60_000)
    first.complain("fay", START)
    first.settle()
    decision = only(first.decisions("fay"))
    assert decision["action"] == "send"
    first.close()
    for suffix in ("", "-wal", "-shm"):  # decisions committed, the outbox never heard
        (data_dir / f"outbox.db{suffix}").unlink(missing_ok=True)

    second = rig_factory(data_dir=data_dir)  # the lifespan reconciles at start
    entry = only(second.deliveries(decision=decision["decisionId"]))
    assert entry["state"] == "pending"
    assert second.delivery.counts["reconciled"] == 1
    assert second.delivery.reconcile() == 0  # and never again
    assert second.send_due().sent == 1
    second.close()

    third = rig_factory(data_dir=data_dir)
    assert third.delivery.counts["reconciled"] == 0
    assert [e["state"] for e in third.deliveries(customer="fay")] == ["sent"]
    assert len(third.events("fay", "Message Sent")) == 1
