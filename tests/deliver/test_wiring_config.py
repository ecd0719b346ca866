"""Delivery's configuration and admin API: providers from the playbook with their secrets
from the environment, the tracking secret, channels with no provider, previews, in-app
stream tokens, lift and metrics."""

from __future__ import annotations

import stat
import textwrap
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml

from momently.clock import FakeClock
from momently.config import Settings
from momently.decide.records import Decision
from momently.decide.spec import ChannelSpec, DecideSpec
from momently.deliver.channels.inapp import InAppHub
from momently.errors import ConfigError
from momently.moments.loader import PlaybookError
from momently.moments.playbook import load_playbook
from momently.runtime.delivery import SECRET_FILE, build_routes, tracking_secret
from momently.web.app import create_app
from tests.conftest import START, WRITE_KEY
from tests.deliver.test_webhook import SECRET as HOOK_SECRET
from tests.deliver.test_wiring import (
    PUBLIC,
    RigFactory,
    offer,
    only,
    playbook,
    rig_factory_fixture,  # noqa: F401 - the rig_factory fixture
)

SMTP = {"type": "smtp", "host": "127.0.0.1", "port": 2525, "from": "Brand <hi@brand.example>"}


def channels(*specs: dict[str, Any]) -> DecideSpec:
    return DecideSpec.model_validate({"channels": list(specs)})


# -- providers from the playbook -----------------------------------------------------------------


def test_routes_follow_the_playbook_in_failover_order() -> None:
    clock = FakeClock(START)
    spec = channels(
        {"name": "inbox", "kind": "in_app"},
        {"name": "email", "kind": "email", "providers": [
            {**SMTP, "username": "u", "password_env": "SMTP_PASSWORD",
             "rate": {"per_second": 5, "burst": 10}},
            {"type": "webhook", "url": "https://relay.brand.example/mail",
             "secret_env": "RELAY_SECRET"},
        ]},
        {"name": "sms", "kind": "sms", "providers": [
            {"type": "sms", "account_sid": "AC1", "auth_token_env": "SMS_TOKEN",
             "from": "+15550001111", "base_url": "http://127.0.0.1:9", "at_most_once": True},
        ]},
        {"name": "push", "kind": "push"},
    )  # fmt: skip
    environ = {"SMTP_PASSWORD": "pw", "RELAY_SECRET": HOOK_SECRET, "SMS_TOKEN": "tok"}
    routes = build_routes(spec, environ, clock, InAppHub(clock))
    try:
        names = {c: [p.name for p in ps] for c, ps in routes.routes.items()}
        assert names == {
            "inbox": ["inbox.hub"],
            "email": ["email.smtp", "email.webhook"],
            "sms": ["sms.sms"],
        }
        assert "push" not in routes.routes  # its sends are recorded dead
        assert routes.limits["email.smtp"].per_second == 5
        assert routes.limits["email.smtp"].burst == 10
        assert routes.at_most_once == {"sms"}
    finally:
        routes.close()


def test_a_missing_secret_fails_at_start_naming_the_variable(tmp_path: Path) -> None:
    spec = channels({"name": "email", "kind": "email", "providers": [
        {**SMTP, "username": "u", "password_env": "SMTP_PASSWORD"}]})  # fmt: skip
    clock = FakeClock(START)
    with pytest.raises(ConfigError, match="email.smtp: environment variable SMTP_PASSWORD"):
        build_routes(spec, {}, clock, InAppHub(clock))
    bad = channels({"name": "hook", "kind": "webhook", "providers": [
        {"type": "webhook", "url": "https://x.example", "secret_env": "HOOK"}]})  # fmt: skip
    with pytest.raises(ConfigError, match="hook.webhook: a webhook secret"):
        build_routes(bad, {"HOOK": "not-a-whsec"}, clock, InAppHub(clock))

    def with_webhook(decide: dict[str, Any]) -> None:
        decide["channels"].append({"name": "hook", "kind": "webhook", "providers": [
            {"type": "webhook", "url": "https://x.example", "secret_env": "HOOK"}]})  # fmt: skip

    book = playbook(tmp_path, with_webhook)
    settings = Settings(data_dir=tmp_path / "never", write_keys=(WRITE_KEY,))
    with pytest.raises(ConfigError, match="HOOK is not set"):
        create_app(settings, playbook=book, environ={})
    assert not (tmp_path / "never").exists()  # nothing was opened or written


@pytest.mark.parametrize(
    ("channel", "problem"),
    [
        ({"name": "p", "kind": "push", "providers": [
            {"type": "webhook", "url": "https://x.example", "secret_env": "S"}]},
         "a webhook provider cannot send push"),
        ({"name": "e", "kind": "email", "providers": [
            {"type": "sms", "account_sid": "A", "auth_token_env": "T", "from": "+1"}]},
         "a sms provider cannot send email"),
        ({"name": "e", "kind": "email", "providers": [{**SMTP, "password": "hunter2"}]},
         "password"),
        ({"name": "e", "kind": "email", "providers": [{**SMTP, "password_env": "X"}]},
         "give both username and password_env"),
        ({"name": "e", "kind": "email", "providers": [{**SMTP, "implicit_tls": True}]},
         "starttls or implicit_tls"),
        ({"name": "s", "kind": "sms", "providers": [
            {"type": "sms", "account_sid": "A", "auth_token_env": "T"}]},
         "exactly one of from and messaging_service_sid"),
        ({"name": "e", "kind": "email",
          "providers": [{**SMTP, "name": "a"}, {**SMTP, "name": "a"}]},
         "provider name used more than once"),
        ({"name": "e", "kind": "email", "providers": [{**SMTP, "type": "carrier-pigeon"}]},
         "type"),
    ],
)  # fmt: skip
def test_bad_providers_fail_at_load(channel: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        ChannelSpec.model_validate(channel)


def test_provider_examples_in_yaml_load_with_their_line(tmp_path: Path) -> None:
    text = (
        "decide:\n  channels:\n    - name: email\n      kind: email\n      providers:\n"
        "        - {type: smtp, host: smtp.example, from: a@b.example, port: 99999}\n"
    )
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(PlaybookError, match=r"bad.yaml:6"):
        load_playbook(path)


# -- the tracking secret --------------------------------------------------------------------------


def test_the_tracking_secret_is_made_once_private_and_kept(
    rig_factory: RigFactory, tmp_path: Path
) -> None:
    data_dir = tmp_path / "keep"
    first = rig_factory(data_dir=data_dir)
    path = data_dir / SECRET_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    first.app_open("gus", START - 60_000)
    first.complain("gus", START)
    first.settle()
    link = only(first.deliveries(customer="gus"))["message"]["unsubscribe_url"]
    first.close()
    again = rig_factory(data_dir=data_dir)  # the same key: old links still work
    assert again.client.get(link.removeprefix(PUBLIC)).status_code == 200
    assert tracking_secret({}, data_dir) == path.read_text().strip().encode()


def test_the_tracking_secret_from_the_environment(tmp_path: Path) -> None:
    given = "s" * 40
    assert tracking_secret({"MOMENTLY_TRACKING_SECRET": given}, tmp_path) == given.encode()
    assert not (tmp_path / SECRET_FILE).exists()
    with pytest.raises(ConfigError, match="at least 32 bytes"):
        tracking_secret({"MOMENTLY_TRACKING_SECRET": "short"}, tmp_path)
    memory = tracking_secret({}, None)
    assert len(memory) == 32 and memory != tracking_secret({}, None)
    (tmp_path / SECRET_FILE).write_text("oops\n")
    with pytest.raises(ConfigError, match="no usable tracking secret"):
        tracking_secret({}, tmp_path)


def test_a_memory_engine_writes_nothing_to_disk(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    settings = Settings(data_dir=tmp_path / "none", store="memory://", write_keys=(WRITE_KEY,))
    with TestClient(create_app(settings, clock=FakeClock(START), delivery_worker=False)):
        pass
    assert not (tmp_path / "none").exists()


# -- a channel without a provider -----------------------------------------------------------------


def test_a_send_on_a_channel_without_a_provider_is_dead_and_logged(
    rig_factory: RigFactory,
) -> None:
    rig = rig_factory()
    rig.app_open("hal", START - 60_000)
    customer = rig.get("/api/profiles/hal")["customerId"]
    decision = Decision(
        decision_id="de-push-1", customer_id=customer, moment_id="mo-x", moment_name="x",
        moment_kind="buy", at_ms=START, action="send", offer="cart-reminder", channel="push",
    )  # fmt: skip
    entry = rig.delivery.submit(decision)
    assert entry is not None and entry.state == "dead"
    assert entry.reason == "no provider configured for channel push"
    rig.flush()
    failed = only(rig.events("hal", "Message Failed"))
    assert failed["properties"]["reason"] == "no provider configured for channel push"
    assert failed["properties"]["offer"] is None  # the decision is not in the moment store
    stats = rig.get("/api/deliveries/stats")
    assert stats["outbox"]["dead"] == 1 and stats["counts"]["unroutable"] == 1
    metrics = rig.client.get("/metrics", headers=rig.admin).text
    assert 'momently_outbox_entries{state="dead"} 1.0' in metrics
    assert 'momently_delivery_total{what="unroutable"} 1.0' in metrics
    # held-out and silent decisions never reach the outbox
    held = Decision(
        decision_id="de-held", customer_id=customer, moment_id="mo-y", moment_name="y",
        moment_kind="buy", at_ms=START, action="send", offer="cart-reminder", channel="push",
        holdout="global", status="held_out",
    )  # fmt: skip
    assert rig.delivery.submit(held) is None


# -- the admin API -------------------------------------------------------------------------------


def test_deliveries_api_filters_and_refuses(rig_factory: RigFactory) -> None:
    rig = rig_factory()
    for user in ("ivy", "jon"):
        rig.app_open(user, START - 60_000)
        rig.complain(user, START)
    rig.settle()
    assert len(rig.deliveries()) == 2
    assert [e["state"] for e in rig.deliveries(customer="ivy")] == ["pending"]
    assert rig.deliveries(status="sent") == []
    rig.send_due()
    page = rig.get("/api/deliveries", status="sent", limit=1)
    assert len(page["deliveries"]) == 1 and page["counts"]["sent"] == 2
    assert rig.client.get("/api/deliveries").status_code == 401
    bad = rig.client.get("/api/deliveries?status=lost", headers=rig.admin)
    assert bad.status_code == 400 and bad.json()["field"] == "status"
    unknown = rig.client.get("/api/deliveries?customer=nobody", headers=rig.admin)
    assert unknown.status_code == 404 and unknown.json()["field"] == "customer"


def test_template_preview(rig_factory: RigFactory) -> None:
    rig = rig_factory()
    rig.app_open("kim", START - 60_000, first_name="Kim")

    def preview(**body: Any) -> dict[str, Any]:
        answer = rig.client.post("/api/templates/preview", json=body, headers=rig.admin)
        assert answer.status_code == 200, answer.text
        result: dict[str, Any] = answer.json()
        return result

    made_up = preview(offer="family-toaster", channel="email", traits={"first_name": "Ann"})
    assert made_up["ok"] and made_up["subject"] == "Four slots, one go"
    assert made_up["text"].startswith("Hi Ann,") and "<p>Hi Ann," in made_up["html"]
    known = preview(offer="family-toaster", channel="push", customer="kim")
    assert known["title"] == "Breakfast for five, sorted" and "Kim" in known["text"]
    shaped = preview(
        offer="store-nearby", channel="push", moment={"kind": "go", "context": {"place": "Soho"}}
    )
    assert shaped["text"] == "Two minutes away at Soho."
    assert preview(offer="nope", channel="push") == {
        "ok": False, "reason": "unknown offer or channel: nope"}  # fmt: skip
    sorry = preview(offer="sorry-voucher", channel="sms")
    assert sorry["ok"] is True and "STOP" in sorry["text"]
    refused = rig.client.post(
        "/api/templates/preview", json={"offer": "x", "channel": "y", "extra": 1},
        headers=rig.admin,
    )  # fmt: skip
    assert refused.status_code == 422
    assert rig.client.post("/api/templates/preview", json={}).status_code == 401


def test_in_app_stream_needs_a_token_for_its_customer_and_device(rig_factory: RigFactory) -> None:
    rig = rig_factory()
    rig.app_open("lea", START - 60_000)
    answer = rig.client.post(
        "/api/inapp/token", json={"customer": "lea", "device": "lea-phone"}, headers=rig.admin
    )
    assert answer.status_code == 200, answer.text
    given = answer.json()
    customer = rig.get("/api/profiles/lea")["customerId"]
    assert given["customerId"] == customer and given["stream"].startswith("/api/inapp/stream?")
    nobody = rig.client.get(f"/api/inapp/stream?customer={customer}&device=lea-phone")
    assert nobody.status_code == 400
    other = rig.client.get(
        f"/api/inapp/stream?customer={customer}&device=other&token={given['token']}"
    )
    assert other.status_code == 400 and "another customer or device" in other.json()["reason"]
    assert rig.client.get("/api/inapp/inapp.js").status_code == 200


def test_lift_over_the_api(rig_factory: RigFactory, tmp_path: Path) -> None:
    """Half the customers held out; conversions of both arms attributed and compared."""

    def half_held(decide: dict[str, Any]) -> None:
        offer(decide, "sorry-voucher")["holdout"] = 0.5

    rig = rig_factory(book=playbook(tmp_path, half_held))
    users = [f"u{i}" for i in range(24)]
    for user in users:
        rig.app_open(user, START - 60_000)
        rig.complain(user, START)
    rig.settle()
    decisions = {u: only(rig.decisions(u)) for u in users}
    held = [u for u, d in decisions.items() if d.get("holdout")]
    treated = [u for u, d in decisions.items() if not d.get("holdout")]
    assert held and treated
    buyers = held[:1] + treated[:3]
    for user in buyers:
        rig.track(user, "Order Completed", START + 3_600_000, properties={"revenue": 30})
    rig.track(users[0], "Order Completed", START + 100 * 3_600_000, properties={"revenue": 9})
    report = rig.get("/api/lift")
    assert report["windowMs"] == 72 * 3_600_000
    assert report["decisions"] == 24 and report["attributed"] == 4
    assert report["unattributed"] == 1
    voucher = next(
        s for s in report["segments"] if (s["dimension"], s["value"]) == ("offer", "sorry-voucher")
    )
    assert voucher["treated"]["customers"] == len(treated)
    assert voucher["heldOut"]["customers"] == len(held)
    assert voucher["treated"]["converted"] == 3 and voucher["heldOut"]["converted"] == 1
    assert voucher["treated"]["revenue"] == 90.0
    diff = voucher["rateDiff"]
    assert diff["low"] <= diff["value"] <= diff["high"]
    assert voucher["revenuePerCustomerDiff"]["value"] == pytest.approx(
        90 / len(treated) - 30 / len(held)
    )
    short = rig.get("/api/lift", window_h=0.5)
    assert short["attributed"] == 0
    assert rig.client.get("/api/lift?window_h=0", headers=rig.admin).status_code == 422


def test_the_example_playbook_ships_without_external_providers() -> None:
    example = load_playbook()
    for channel in example.decide.channels:
        assert channel.providers == (), channel.name
    assert [c.name for c in example.decide.channels if c.kind == "in_app"] == ["in_app"]


def test_the_commented_provider_examples_in_the_example_playbook_are_valid() -> None:
    text = resources.files("momently.playbooks").joinpath("example.yaml").read_text("utf-8")
    start = text.index("  #   - name: email")
    block = text[start : text.index("\n  channels:\n", start)]
    listed = yaml.safe_load(textwrap.dedent("\n".join(line[4:] for line in block.splitlines())))
    spec = DecideSpec.model_validate({"channels": listed})
    assert {p.type for c in spec.channels for p in c.providers} == {
        "smtp", "webhook", "sms", "web_push"}  # fmt: skip
