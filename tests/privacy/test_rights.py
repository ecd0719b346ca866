"""Privacy rights end to end on SQLite in a data dir: export holds every kind of record;
erasure leaves none of the customer's identifiers or trait values in any file of the
data directory (database, WAL and shared-memory files, read as raw bytes); events that
name an erased identity are dropped at ingestion and counted; retention deletes only
the old events."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from momently.events import from_ms
from tests.conftest import START, WRITE_KEY
from tests.deliver.test_wiring import Rig, RigFactory

DAY = 86_400_000
TAG = "7f3a9c"
ERIN: dict[str, Any] = {
    "user": f"erin-{TAG}",
    "anon": f"anon-{TAG}",
    "device": f"dev-{TAG}",
    "email": f"erin.{TAG}@example.org",
    "phone": "+4915123987654",
    "first_name": f"Zebulonia{TAG}",
    "colour": f"ultramarine-{TAG}",
    "text": f"parcel {TAG} never arrived, nobody answers 😡",
}


def erin_lives(rig: Rig) -> str:
    """Erin arrives anonymous, identifies, complains with the app open, and gets an
    in-app apology that is sent and logged; returns her customer id."""
    device = {"id": ERIN["device"], "type": "ios", "token": f"tok-{TAG}"}
    first = {
        "anonymousId": ERIN["anon"], "event": "Application Opened",
        "timestamp": from_ms(START - 120_000).isoformat(), "context": {"device": device},
    }  # fmt: skip
    assert rig.client.post("/v1/track", json=first, auth=(WRITE_KEY, "")).status_code == 200
    identify = {
        "type": "identify", "anonymousId": ERIN["anon"], "userId": ERIN["user"],
        "timestamp": from_ms(START - 60_000).isoformat(),
        "traits": {"email": ERIN["email"], "phone": ERIN["phone"],
                   "first_name": ERIN["first_name"], "favourite_colour": ERIN["colour"]},
        "context": {"device": device},
    }  # fmt: skip
    assert rig.client.post("/v1/identify", json=identify, auth=(WRITE_KEY, "")).status_code == 200
    rig.complain(ERIN["user"], START, ERIN["text"])
    rig.track(ERIN["user"], "Product Viewed", START + 1_000, properties={"product_id": TAG})
    rig.settle()
    assert rig.send_due().sent == 1
    rig.settle()  # the Message Sent event reaches the stage
    return str(rig.get(f"/api/profiles/{ERIN['user']}")["customerId"])


def someone_else(rig: Rig) -> None:
    rig.app_open("olga-control", START - 60_000, email="olga.control@example.net")
    rig.complain("olga-control", START + 5_000)
    rig.settle()


def test_export_holds_every_kind_of_record(rig_factory: RigFactory) -> None:
    rig = rig_factory()
    customer = erin_lives(rig)
    someone_else(rig)
    answer = rig.client.get(f"/api/privacy/export/{ERIN['email']}", headers=rig.admin)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["customerId"] == customer
    assert body["profile"]["traits"]["favourite_colour"] == ERIN["colour"]
    kinds = {(i["kind"], i["value"]) for i in body["identities"]}
    assert kinds == {
        ("user_id", ERIN["user"]), ("anonymous_id", ERIN["anon"]),
        ("device_id", ERIN["device"]), ("email", ERIN["email"]), ("phone", ERIN["phone"]),
        ("device_id", f"{ERIN['user']}-phone"),  # the rig's complaints come from it
    }  # fmt: skip
    names = [e.get("event") or e["type"] for e in body["events"]]
    assert names[:3] == ["Application Opened", "identify", "Support Message"]
    assert "Message Sent" in names
    assert {m["customerId"] for m in body["moments"]} == {customer}
    assert any(m["kind"] == "friction" for m in body["moments"])
    assert [d["action"] for d in body["decisions"] if d["offer"] == "sorry-voucher"] == ["send"]
    assert [d["state"] for d in body["deliveries"]] == ["sent"]
    assert body["state"][customer]  # the moment detector's and the models' state
    assert "predict" in body["state"][customer]
    assert "consent" in body and body["exportedAt"] == START
    text = answer.text
    assert "olga" not in text  # only hers
    assert rig.client.get("/api/privacy/export/nobody", headers=rig.admin).status_code == 404
    assert rig.client.get(f"/api/privacy/export/{ERIN['email']}").status_code == 401


def scan(data_dir: Path, needles: list[str]) -> dict[str, list[str]]:
    """Which needles appear in which file of the data directory, as raw bytes."""
    found: dict[str, list[str]] = {}
    files = sorted(p for p in data_dir.rglob("*") if p.is_file())
    assert any(p.name.endswith("-wal") for p in files)  # the WAL files are scanned too
    for path in files:
        raw = path.read_bytes()
        hits = [n for n in needles if n.encode() in raw]
        if hits:
            found[path.name] = hits
    return found


def test_delete_leaves_no_trace_in_any_file(rig_factory: RigFactory) -> None:
    rig = rig_factory()
    customer = erin_lives(rig)
    someone_else(rig)
    needles = [customer, *(v for k, v in ERIN.items() if k != "text"), TAG]
    before = scan(rig.data_dir, needles)
    assert {"momently.db", "moments.db", "outbox.db"} <= {
        name.removesuffix("-wal") for name in before
    }, before  # the scan does find her while she is there

    answer = rig.client.post("/api/privacy/delete", json={"id": ERIN["phone"]}, headers=rig.admin)
    assert answer.status_code == 200, answer.text
    done = answer.json()
    assert done["customers"] == 1 and done["identities"] == 6
    assert done["events"] >= 5 and done["momentRows"] >= 3 and done["deliveries"] == 1

    assert scan(rig.data_dir, needles) == {}
    assert scan(rig.data_dir, ["olga.control@example.net"])  # others are untouched
    assert rig.client.get(f"/api/profiles/{ERIN['user']}", headers=rig.admin).status_code == 404
    assert rig.get("/api/decisions", customer="olga-control")["decisions"]
    for path in ("/api/privacy/delete",):
        gone = rig.client.post(path, json={"id": ERIN["user"]}, headers=rig.admin)
        assert gone.status_code == 404  # erased already
    assert rig.client.post("/api/privacy/delete", json={}, headers=rig.admin).status_code == 422
    assert rig.client.post("/api/privacy/delete", json={"id": "x"}).status_code == 401

    # the engine goes on: new events are taken, their seqs after every erased one
    rig.track("olga-control", "Product Viewed", START + 60_000, properties={"product_id": "p"})
    rig.settle()
    assert rig.events("olga-control", "Product Viewed")
    rig.clock.advance(2 * DAY)
    rig.settle()  # timers fire; nothing of hers comes back
    assert scan(rig.data_dir, needles) == {}


def test_events_of_an_erased_identity_are_dropped_and_counted(rig_factory: RigFactory) -> None:
    rig = rig_factory()
    erin_lives(rig)
    assert rig.client.post(
        "/api/privacy/delete", json={"id": ERIN["user"]}, headers=rig.admin
    ).status_code == 200  # fmt: skip
    events = rig.store.stats()["events"]
    replays = [
        {"userId": ERIN["user"], "event": "Product Viewed"},
        {"anonymousId": ERIN["anon"], "event": "Product Viewed"},
        {"anonymousId": "new-phone", "event": "Signed Up", "context": {"traits": {
            "email": ERIN["email"].upper()}}},
        {"anonymousId": "new-tablet", "event": "Opened", "context": {"device": {
            "id": ERIN["device"]}}},
        {"type": "alias", "userId": "brand-new-id", "previousId": ERIN["user"]},
    ]  # fmt: skip
    for body in replays:
        path = "/v1/alias" if body.get("type") == "alias" else "/v1/track"
        answer = rig.client.post(path, json=body, auth=(WRITE_KEY, ""))
        assert answer.status_code == 200, answer.text
        assert answer.json()["accepted"] == 0
    batch = {
        "batch": [
            {"type": "track", **replays[0]},
            {"type": "track", "userId": "fresh", "event": "Product Viewed"},
        ]
    }
    answer = rig.client.post("/v1/batch", json=batch, auth=(WRITE_KEY, ""))
    assert answer.status_code == 200 and answer.json()["accepted"] == 1
    assert rig.store.stats()["events"] == events + 1  # only the stranger's
    stats = rig.get("/api/privacy/stats")
    assert stats["suppressedEvents"] == len(replays) + 1
    assert stats["suppressedIdentities"] == 6 and stats["erasures"] == 1
    metrics = rig.client.get("/metrics", headers=rig.admin).text
    assert f"momently_privacy_suppressed_events_total {len(replays) + 1}.0" in metrics
    assert rig.client.get(f"/api/profiles/{ERIN['user']}", headers=rig.admin).status_code == 404


def test_suppression_survives_a_restart(rig_factory: RigFactory, tmp_path: Path) -> None:
    data = tmp_path / "kept"
    rig = rig_factory(data_dir=data)
    erin_lives(rig)
    rig.client.post("/api/privacy/delete", json={"id": ERIN["email"]}, headers=rig.admin)
    rig.close()
    again = rig_factory(data_dir=data)
    answer = again.client.post(
        "/v1/track", json={"userId": ERIN["user"], "event": "Back"}, auth=(WRITE_KEY, "")
    )
    assert answer.json()["accepted"] == 0
    assert again.get("/api/privacy/stats")["suppressedEvents"] == 1
    assert ERIN["user"].encode() not in (data / "momently.db").read_bytes()


def test_retention_deletes_only_old_events(rig_factory: RigFactory, tmp_path: Path) -> None:
    rig = rig_factory(retention_days=30)
    for age in (90, 31, 29, 1):
        rig.track("ola", "Product Viewed", START - age * DAY, properties={"age": age})
    rig.settle()
    privacy = rig.app.state.privacy
    assert privacy.tick() == 2  # due at start
    assert [e["properties"]["age"] for e in rig.events("ola", "Product Viewed")] == [29, 1]
    assert rig.get("/api/profiles/ola")["counts"]["track"] == 4  # state is kept
    rig.clock.advance(30 * 60_000)
    assert privacy.tick() == 0  # not due: once an hour
    rig.clock.advance(2 * DAY)
    rig.track("ola", "Product Viewed", START - 60 * DAY, properties={"age": 62})  # late
    rig.settle()
    assert privacy.tick() == 2  # the late one, and "29 days" has turned 31
    assert [e["properties"]["age"] for e in rig.events("ola", "Product Viewed")] == [1]
    assert rig.get("/api/privacy/stats")["expiredEvents"] == 4
