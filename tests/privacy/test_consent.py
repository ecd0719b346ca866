"""Consent per channel and purpose: an opt-out by event, by the admin API or by an
unsubscribe link holds before the next decision and calls off the send already
scheduled; a transactional message still goes; a send the stage has not yet
caught up with is refused at send time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from momently.moments.playbook import Playbook
from tests.conftest import START
from tests.deliver.servers import Recorder
from tests.deliver.test_webhook import SECRET as HOOK_SECRET
from tests.deliver.test_wiring import PUBLIC, Rig, RigFactory, offer, only, playbook

HOUR = 3_600_000


def email_book(tmp: Path, http: Recorder, purpose: str = "marketing") -> Playbook:
    """Apologies go by email only, through a webhook relay on loopback; quiet hours until
    16:00 (START is 14:13 UTC) make a marketing apology a scheduled send."""

    def change(decide: dict[str, Any]) -> None:
        decide["quiet_hours"] = {"start": "14:00", "end": "16:00"}
        decide["arbitration"] = {"exploration": 0, "fatigue_cost": 0, "decay": "none"}
        email = next(c for c in decide["channels"] if c["name"] == "email")
        email["providers"] = [
            {
                "type": "webhook",
                "url": http.url + "/mail",
                "secret_env": "RELAY_SECRET",
                "allow_private_targets": True,
            }  # loopback
        ]
        voucher = offer(decide, "sorry-voucher")
        voucher.update(value=200, cost=0, purpose=purpose)
        voucher["messages"] = {"email": voucher["messages"]["email"]}

    return playbook(tmp, change)


def scheduled(rig: Rig, user: str) -> dict[str, Any]:
    """A complaint answered by an apology planned for after the quiet hours."""
    rig.app_open(user, START - 60_000, email=f"{user}@example.com")
    rig.complain(user, START)
    rig.settle()
    decision = only(rig.decisions(user))
    assert (decision["action"], decision["channel"]) == ("schedule", "email"), decision
    entry = only(rig.deliveries(customer=user))
    assert entry["state"] == "pending" and entry["due_ms"] > START
    return entry


def nothing_goes_later(rig: Rig, http: Recorder, user: str) -> None:
    """Past the planned time, no send leaves; then a new complaint is answered by silence."""
    rig.clock.advance(24 * HOUR)
    assert rig.send_due().claimed == 0
    assert http.requests == []
    assert only(rig.deliveries(customer=user))["state"] == "cancelled"
    rig.complain(user, rig.clock.now_ms(), "still waiting, this is useless 😡")
    rig.settle()
    latest = rig.decisions(user)[0]
    assert latest["action"] == "silent", latest
    assert any(b.startswith("opt_out: opted out of marketing on email") for b in latest["bound"])
    assert len(rig.deliveries(customer=user)) == 1  # nothing new in the outbox


@pytest.fixture
def rig(rig_factory: RigFactory, http: Recorder, tmp_path: Path) -> Rig:
    return rig_factory(book=email_book(tmp_path, http), environ={"RELAY_SECRET": HOOK_SECRET})


def test_an_unsubscribed_event_cancels_the_scheduled_send(rig: Rig, http: Recorder) -> None:
    entry = scheduled(rig, "ann")
    rig.clock.advance(10 * 60_000)
    rig.track(
        "ann", "Unsubscribed", rig.clock.now_ms(),
        properties={"channel": "email", "purpose": "marketing"},
    )  # fmt: skip
    rig.settle()
    cancelled = only(rig.deliveries(customer="ann"))
    assert cancelled["state"] == "cancelled"
    assert cancelled["reason"] == "the customer opted out of marketing on email"
    assert rig.get(f"/api/decisions/{entry['decision_id']}")["status"] == "cancelled"
    consent = rig.get("/api/profiles/ann")["consent"]["email:marketing"]
    assert consent["granted"] is False and consent["source"] == "event:Unsubscribed"
    nothing_goes_later(rig, http, "ann")


def test_an_opt_out_of_another_channel_leaves_the_send_alone(rig: Rig, http: Recorder) -> None:
    scheduled(rig, "abe")
    rig.track("abe", "Unsubscribed", START + 60_000, properties={"channel": "sms"})
    rig.settle()
    assert only(rig.deliveries(customer="abe"))["state"] == "pending"
    rig.clock.advance(3 * HOUR)
    assert rig.send_due().sent == 1
    assert len(http.requests) == 1


def test_an_opt_out_through_the_api_cancels_before_the_answer(rig: Rig, http: Recorder) -> None:
    entry = scheduled(rig, "bea")
    with rig.app.state.stage.lock:  # the moment stage cannot step meanwhile
        answer = rig.client.post(
            "/api/customers/bea/consent",
            json={"granted": False, "channel": "email", "purpose": "marketing", "source": "crm"},
            headers=rig.admin,
        )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["cancelled"] == [entry["decision_id"]]  # in the outbox already, no stage step
    assert body["consent"]["email:marketing"]["granted"] is False
    assert body["consent"]["email:marketing"]["source"] == "crm:Unsubscribed"
    assert body["consent"]["email:marketing"]["at"] == START
    assert only(rig.deliveries(customer="bea"))["state"] == "cancelled"
    logged = only(rig.events("bea", "Unsubscribed"))
    assert logged["properties"] == {"channel": "email", "purpose": "marketing", "source": "crm"}
    rig.settle()
    nothing_goes_later(rig, http, "bea")


def test_the_consent_api_refuses_bad_input(rig: Rig) -> None:
    rig.app_open("bo", START - 60_000)
    for body, status in (
        ({"granted": False, "channel": "fax"}, 400),
        ({"granted": False, "purpose": "gossip"}, 422),
        ({"granted": "maybe"}, 422),
        ({"granted": False, "extra": 1}, 422),
    ):
        answer = rig.client.post("/api/customers/bo/consent", json=body, headers=rig.admin)
        assert answer.status_code == status, (body, answer.text)
        assert "error" in answer.json()
    assert rig.client.post("/api/customers/nobody/consent", json={"granted": True},
                           headers=rig.admin).status_code == 404  # fmt: skip
    assert rig.client.post("/api/customers/bo/consent", json={"granted": True}).status_code == 401
    assert rig.events("bo", "Unsubscribed") == [] == rig.events("bo", "Subscribed")


def test_an_unsubscribe_link_cancels_the_scheduled_send(rig: Rig, http: Recorder) -> None:
    entry = scheduled(rig, "cat")
    link = entry["message"]["unsubscribe_url"].removeprefix(PUBLIC)
    with rig.app.state.stage.lock:  # cancelled before the answer, without a stage step
        answer = rig.client.post(
            link,
            content="List-Unsubscribe=One-Click",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert answer.status_code == 200, answer.text
        cancelled = only(rig.deliveries(customer="cat"))
    assert cancelled["state"] == "cancelled", cancelled
    assert cancelled["reason"] == "the customer opted out of marketing on email"
    rig.settle()
    nothing_goes_later(rig, http, "cat")


def test_an_opt_out_holds_at_send_time_while_the_stage_lags(rig: Rig, http: Recorder) -> None:
    scheduled(rig, "dee")
    with rig.app.state.stage.lock:  # the stage lags: it has not read the opt-out
        rig.track("dee", "Unsubscribed", START + 60_000, properties={"channel": "email"})
        rig.clock.advance(3 * HOUR)  # and the send falls due
        tally = rig.send_due()
    assert (tally.claimed, tally.sent, tally.dead) == (1, 0, 1)
    assert http.requests == []
    entry = only(rig.deliveries(customer="dee"))
    assert entry["state"] == "dead"
    assert entry["reason"].startswith("email.webhook: consent at send time: opted out of")


def test_transactional_messages_still_go_after_a_marketing_opt_out(
    rig_factory: RigFactory, http: Recorder, tmp_path: Path
) -> None:
    rig = rig_factory(
        book=email_book(tmp_path, http, purpose="transactional"),
        environ={"RELAY_SECRET": HOOK_SECRET},
    )
    rig.app_open("eve", START - 60_000, email="eve@example.com")
    answer = rig.client.post(
        "/api/customers/eve/consent", json={"granted": False}, headers=rig.admin
    )  # marketing, on every channel
    assert answer.status_code == 200, answer.text
    assert answer.json()["consent"]["all:marketing"]["granted"] is False
    rig.complain("eve", START)
    rig.settle()
    decision = only(rig.decisions("eve"))
    # transactional: no quiet hours, no marketing consent needed
    assert (decision["action"], decision["channel"]) == ("send", "email"), decision
    assert rig.send_due().sent == 1
    assert len(http.requests) == 1
    assert only(rig.events("eve", "Message Sent"))["properties"]["offer"] == "sorry-voucher"


def test_an_opt_in_through_the_api_is_recorded_with_its_source(rig: Rig) -> None:
    rig.app_open("fay", START - 60_000)
    answer = rig.client.post(
        "/api/customers/fay/consent",
        json={"granted": True, "channel": "sms", "source": "signup-form"},
        headers=rig.admin,
    )
    assert answer.status_code == 200, answer.text
    shown = answer.json()["consent"]["sms:marketing"]
    assert shown == {"granted": True, "source": "signup-form:Subscribed", "at": START}
    assert only(rig.events("fay", "Subscribed"))["properties"]["channel"] == "sms"
