"""Decisions in the running stage: made with the moments, stored with them, replayed the same.

Events go through the real engine into the SQLite log; the stage detects
moments, asks the online models, decides, and commits moments, state and
decisions in one transaction. The clock is moved by hand.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from momently.clock import FakeClock
from momently.decide.records import DecisionQuery
from momently.engine import Engine
from momently.events import Event, from_ms
from momently.moments.detector import MomentDetector
from momently.moments.playbook import load_playbook
from momently.runtime.stage import MomentStage
from momently.store.moments_sqlite import SqliteMomentStore
from momently.store.sqlite import SqliteStore
from tests.conftest import START, WRITE_KEY, App
from tests.moments.factories import HOUR, MINUTE, T0, track
from tests.moments.test_moments_api import settle

NOON = T0 + 12 * HOUR  # Monday 12:00 UTC (London, winter)


@pytest.fixture(scope="module")
def detector() -> MomentDetector:
    return MomentDetector(load_playbook())


class Rig:
    def __init__(self, path: Path, detector: MomentDetector) -> None:
        self.path = path
        self.detector = detector
        self.store = SqliteStore(path / "momently.db", synchronous="NORMAL")
        self.clock = FakeClock(T0)
        self.engine = Engine(self.store)
        self.stage = self._stage()

    def _stage(self) -> MomentStage:
        moments = SqliteMomentStore(self.path / "moments.db", synchronous="NORMAL")
        return MomentStage(self.store, moments, self.detector, self.clock)

    def send(self, *events: Event) -> None:
        self.engine.ingest(list(events))
        self.clock.set(max(self.clock.now_ms(), *(e.timestamp_ms for e in events)))
        self.stage.catch_up()

    def at(self, now: int) -> None:
        self.clock.set(now)
        self.stage.tick()

    def restart(self) -> None:
        self.stage.moments.close()
        self.stage = self._stage()

    def close(self) -> None:
        self.stage.moments.close()
        self.store.close()


@pytest.fixture
def rig(tmp_path: Path, detector: MomentDetector) -> Iterator[Rig]:
    r = Rig(tmp_path, detector)
    yield r
    r.close()


def shopper(at: int, user: str = "u1") -> Event:
    """An identify that gives the customer an address, a push token and a household."""
    return track(
        "Application Opened",
        at,
        user=user,
        device="phone-1",
        traits={"email": f"{user}@example.com", "household_size": 5},
        context={"device": {"id": "phone-1", "type": "ios", "token": "tok-1"}},
    )


def test_a_cart_abandoned_when_time_runs_out_is_decided_with_its_reasons(rig: Rig) -> None:
    rig.send(shopper(NOON - HOUR))
    rig.send(track("Product Added", NOON, properties={"product_id": "sku-1", "price": 30}))
    # not before its hour has run out
    assert all(
        d.moment_name != "cart-abandoned" for d in rig.stage.moments.decisions(DecisionQuery())
    )
    rig.at(NOON + HOUR + MINUTE)  # the absence runs out: cart-abandoned
    found = [
        d for d in rig.stage.moments.decisions(DecisionQuery()) if d.moment_name == "cart-abandoned"
    ]
    assert len(found) == 1
    decision = found[0]
    assert decision.action in ("send", "schedule", "silent")
    assert decision.reasons
    offers = {c.offer for c in decision.candidates}
    assert "cart-reminder" in offers and "(silence)" in offers
    if decision.action != "silent":
        assert decision.offer == "cart-reminder" and 0 < decision.probability <= 1
        assert decision.channel in ("push", "email", "in_app")
    assert rig.stage.moments.decision(decision.decision_id) == decision


def test_decisions_survive_a_restart_and_a_replay_writes_no_second_one(rig: Rig) -> None:
    rig.send(shopper(NOON - HOUR))
    rig.send(track("Products Searched", NOON, properties={"query": "best 4 slot toaster"}))
    before = rig.stage.moments.decisions(DecisionQuery(limit=1000))
    assert before, "a know moment about toasters is decided"
    rig.restart()
    rig.stage.position = 0  # replay the whole log over the stored state
    rig.stage.catch_up()
    after = rig.stage.moments.decisions(DecisionQuery(limit=1000))
    assert [d.decision_id for d in after] == [d.decision_id for d in before]


def test_a_purchase_cancels_a_planned_send(rig: Rig) -> None:
    late = T0 + 23 * HOUR  # inside the example's quiet hours (21:30-08:00 London)
    rig.send(shopper(late - 2 * HOUR))
    rig.send(track("Product Added", late - HOUR, properties={"product_id": "sku-1"}))
    rig.at(late + MINUTE)  # cart-abandoned, which lasts 24 h: worth a send in the morning
    planned = [
        d for d in rig.stage.moments.decisions(DecisionQuery(limit=100)) if d.action == "schedule"
    ]
    assert planned, "a send in quiet hours is planned for the morning"
    assert all(d.send_at_ms is not None and d.send_at_ms >= T0 + 32 * HOUR for d in planned)
    rig.send(track("Order Completed", late + 30 * MINUTE, properties={"revenue": 40}))
    for d in planned:
        stored = rig.stage.moments.decision(d.decision_id)
        assert stored is not None and stored.status == "cancelled"
        assert any("bought already" in r for r in stored.reasons)


def test_the_decisions_api(app: App) -> None:
    """Over HTTP: a friction post gets a decision, listed, filtered and explained."""
    body = {
        "userId": "bob",
        "event": "Support Message",
        "properties": {"text": "my order never came and nobody answers 😡"},
        "traits": {"email": "bob@example.com"},
        "timestamp": from_ms(START).isoformat(),
    }
    answer = app.client.post("/v1/track", json=body, auth=(WRITE_KEY, ""))
    assert answer.status_code == 200, answer.text
    settle(app)
    assert app.client.get("/api/decisions").status_code == 401
    page = app.client.get("/api/decisions?customer=bob", headers=app.admin).json()
    assert page["decisions"], page
    first = page["decisions"][0]
    assert {"decisionId", "momentId", "action", "reasons", "candidates", "probability"} <= set(
        first
    )
    one = app.client.get(f"/api/decisions/{first['decisionId']}", headers=app.admin)
    assert one.status_code == 200 and one.json() == first
    silent = app.client.get("/api/decisions?action=silent&customer=bob", headers=app.admin).json()
    assert all(d["action"] == "silent" for d in silent["decisions"])
    assert app.client.get("/api/decisions?action=shout", headers=app.admin).status_code == 400
    assert app.client.get("/api/decisions/de-nope", headers=app.admin).status_code == 404
    assert app.client.get("/api/decisions?cursor=zzz", headers=app.admin).status_code == 400
    stats = app.client.get("/api/moments/stats", headers=app.admin).json()
    assert stats["decisions.send"] + stats["decisions.schedule"] + stats["decisions.silent"] >= 1


def test_times_and_cursors_beyond_what_the_stores_hold_are_refused(app: App) -> None:
    """A time past SQLite's 64-bit integers is a clear 4xx, never a 500."""
    huge = "99999999999999999999999"
    for path in (
        f"/api/decisions?since={huge}",
        f"/api/moments?until={huge}",
        f"/api/lift?since={huge}",
        f"/api/journeys/toaster?since={huge}",
    ):
        assert app.client.get(path, headers=app.admin).status_code == 422, path
    for path in (
        "/api/decisions?cursor=9999999999999999999~de-x",
        "/api/moments?cursor=-9999999999999999999~mo-x",
    ):
        answer = app.client.get(path, headers=app.admin)
        assert answer.status_code == 400 and answer.json()["field"] == "cursor", path
