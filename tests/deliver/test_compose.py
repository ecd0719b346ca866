"""From a decision to a message in the outbox, or a recorded reason why not."""

from __future__ import annotations

import json
from typing import Any

import pytest

from momently.clock import FakeClock
from momently.decide.records import Decision
from momently.decide.spec import DecideSpec
from momently.deliver.compose import Composer, preview, submit
from momently.deliver.message import idempotency_key
from momently.deliver.outbox import Outbox
from momently.deliver.store_memory import MemoryOutboxStore
from momently.deliver.templates import Renderer
from momently.deliver.tracking import TokenSigner, TrackingLinks
from momently.moments.model import Moment
from momently.state.profile import Profile, Stamped

SUBSCRIPTION = {"endpoint": "https://push.example/x", "keys": {"p256dh": "p", "auth": "a"}}
SPEC = DecideSpec.model_validate(
    {
        "channels": [
            {"name": "email", "kind": "email"},
            {"name": "sms", "kind": "sms"},
            {"name": "webpush", "kind": "web_push"},
            {"name": "inapp", "kind": "in_app"},
            {"name": "hook", "kind": "webhook"},
            {"name": "push", "kind": "push"},
        ],
        "offers": [
            {
                "id": "toaster",
                "title": "Toaster",
                "messages": {
                    name: {
                        "title": "For {{ profile.first_name | default('you') }}",
                        "subject": "A toaster for {{ profile.household_size }}",
                        "body": "Hi {{ profile.first_name }}, see {{ links.url }}",
                        "url": "https://shop.example/{{ offer.id }}",
                    }
                    for name in ("email", "sms", "webpush", "inapp", "hook", "push")
                },
            },
            {"id": "broken", "messages": {"email": {"body": "{{ profile.nope }}"}}},
        ],
    }
)
MOMENT = Moment(
    moment_id="mo-1", customer_id="c1", kind="buy", name="cart-abandoned", confidence=0.8,
    at_ms=1, expires_ms=2, trigger="m-1", source="rules",
)  # fmt: skip


def profile(**changes: Any) -> Profile:
    fields: dict[str, Any] = {
        "customer_id": "c1",
        "created": (0, ""),
        "traits": {
            "firstName": Stamped("Ada", 0, "m"),
            "household_size": Stamped(5, 0, "m"),
            "web_push_subscription": Stamped(SUBSCRIPTION, 0, "m"),
        },
        "emails": ["ada@example.com"],
        "phones": ["+14155550100"],
    }
    fields.update(changes)
    return Profile(**fields)


def decision(channel: str, offer: str = "toaster", **changes: Any) -> Decision:
    fields: dict[str, Any] = {
        "decision_id": f"de-{channel}-{offer}", "customer_id": "c1", "moment_id": "mo-1",
        "moment_name": "cart-abandoned", "moment_kind": "buy", "at_ms": 1, "action": "send",
        "offer": offer, "channel": channel, "device": "d1", "expires_ms": 10**13,
    }  # fmt: skip
    fields.update(changes)
    return Decision(**fields)


@pytest.fixture
def composer(clock: FakeClock) -> Composer:
    links = TrackingLinks("https://t.example", TokenSigner(b"c" * 32, clock))
    return Composer(SPEC, Renderer(), links, unsubscribe_mailto="unsub@brand.example")


def test_email_has_everything(composer: Composer) -> None:
    msg = composer.compose(decision("email"), profile(), MOMENT)
    assert msg.key == idempotency_key("de-email-toaster", "email")
    assert (msg.kind, msg.to, msg.subject) == ("email", "ada@example.com", "A toaster for 5")
    assert msg.url is not None and msg.url.startswith("https://t.example/t/c/")
    assert msg.text == f"Hi Ada, see {msg.url}"
    assert msg.html is not None and "/t/o/" in msg.html  # the open pixel
    assert msg.unsubscribe_url is not None and msg.unsubscribe_url.startswith(
        "https://t.example/t/u/"
    )
    assert msg.unsubscribe_mailto is not None
    assert msg.unsubscribe_mailto.startswith("mailto:unsub@brand.example?subject=unsubscribe%20")
    assert msg.data == {
        "offer": "toaster", "moment_id": "mo-1", "moment_name": "cart-abandoned",
        "moment_kind": "buy",
    }  # fmt: skip


def test_addresses_per_channel(composer: Composer) -> None:
    assert composer.compose(decision("sms"), profile(), MOMENT).to == "+14155550100"
    assert json.loads(composer.compose(decision("webpush"), profile(), MOMENT).to) == SUBSCRIPTION
    inapp = composer.compose(decision("inapp"), profile(), MOMENT)
    assert (inapp.to, inapp.html) == ("d1", None)
    assert composer.compose(decision("hook"), profile(), MOMENT).to == "c1"


def test_failures_are_recorded_not_sent(composer: Composer, clock: FakeClock) -> None:
    store = MemoryOutboxStore()
    box = Outbox(store, clock, {})
    cases = {
        "de-sms-toaster": (decision("sms"), profile(phones=[]), "the customer has no sms address"),
        "de-push-toaster": (decision("push"), profile(), "the customer has no push address"),
        "de-email-broken": (
            decision("email", "broken"),
            profile(),
            "compose: email.body: 'dict object' has no attribute 'nope'",
        ),
        "de-email-gone": (decision("email", "gone"), profile(), "unknown offer gone"),
    }
    for decision_id, (d, p, reason) in cases.items():
        entry = submit(box, composer, d, p, MOMENT)
        assert entry is not None and entry.state == "dead" and entry.decision_id == decision_id
        assert reason in entry.reason
    assert store.counts()["pending"] == 0


def test_submit_enqueues_scheduled_and_skips_silence(composer: Composer, clock: FakeClock) -> None:
    box = Outbox(MemoryOutboxStore(), clock, {})
    later = clock.now_ms() + 3_600_000
    entry = submit(box, composer, decision("email", action="schedule", send_at_ms=later),
                   profile(), MOMENT)  # fmt: skip
    assert entry is not None and entry.state == "pending" and entry.due_ms == later
    assert entry.expires_ms == 10**13
    assert submit(box, composer, decision("sms", action="silent"), profile(), MOMENT) is None
    assert submit(box, composer, decision("sms", holdout="global"), profile(), MOMENT) is None


def test_preview() -> None:
    shown = preview(SPEC, Renderer(), offer_id="toaster", channel="email", profile=profile(),
                    moment=MOMENT)  # fmt: skip
    assert shown["ok"] and shown["subject"] == "A toaster for 5"
    assert shown["text"] == "Hi Ada, see https://shop.example/toaster"
    assert "https://preview.invalid/open.gif" in shown["html"]
    failed = preview(SPEC, Renderer(), offer_id="broken", channel="email", profile=profile(),
                     moment=None)  # fmt: skip
    assert failed == {"ok": False, "reason": "email.body: 'dict object' has no attribute 'nope'"}
    assert preview(SPEC, Renderer(), offer_id="nope", channel="email", profile=None,
                   moment=None)["reason"] == "unknown offer or channel: nope"  # fmt: skip
