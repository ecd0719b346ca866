"""The engine on PostgreSQL: ``--store postgresql://…`` puts the log, the moment store and
the outbox in one database, and the whole path — ingest, profile, moment, decision,
outbox, send — works as it does on SQLite, and survives a restart."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from momently.clock import FakeClock
from momently.config import Settings
from momently.events import from_ms
from momently.runtime.stage import StageRunner
from momently.store.postgres import PostgresMomentStore, PostgresOutboxStore, PostgresStore
from momently.web.app import create_app
from tests.conftest import ADMIN_KEY, START, WRITE_KEY
from tests.postgres import Cluster

pytestmark = pytest.mark.slow
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
DEVICE = {"device": {"id": "ann-phone", "type": "ios"}}


def test_settings_put_every_store_in_the_one_database(tmp_path: Path) -> None:
    url = "postgresql://momently@db.internal/momently?schema=brand"
    settings = Settings(data_dir=tmp_path, store=url)
    assert settings.store_url == settings.moment_store_url == settings.outbox_store_url == url
    local = Settings(data_dir=tmp_path)
    assert (
        local.outbox_store_url == f"sqlite:///{(tmp_path / 'outbox.db').resolve()}?synchronous=FULL"
    )
    assert Settings(data_dir=tmp_path, store="memory://").outbox_store_url == "memory://"


@pytest.fixture(name="engine")
def engine_fixture(postgres: Cluster, tmp_path: Path) -> Iterator[Any]:
    url = postgres.url(tmp_path)
    clients: list[TestClient] = []

    def start() -> TestClient:
        settings = Settings(
            data_dir=tmp_path / "data", store=url, write_keys=(WRITE_KEY,), admin_key=ADMIN_KEY
        )
        client = TestClient(create_app(settings, clock=FakeClock(START), environ={}))
        client.__enter__()
        clients.append(client)
        return client

    yield start
    for client in clients:
        client.__exit__(None, None, None)


def _track(client: TestClient, event: str, at: int, **parts: Any) -> None:
    body = {"userId": "ann", "event": event, "timestamp": from_ms(at).isoformat(), **parts}
    answer = client.post("/v1/track", json=body, auth=(WRITE_KEY, ""))
    assert answer.status_code == 200, answer.text


def test_a_complaint_becomes_a_send_in_the_postgres_outbox(engine: Any, tmp_path: Path) -> None:
    client = engine()
    app: Any = client.app
    assert isinstance(app.state.store, PostgresStore)
    assert isinstance(app.state.moment_store, PostgresMomentStore)
    assert isinstance(app.state.delivery.outbox.store, PostgresOutboxStore)
    _track(client, "Application Opened", START - 60_000, context=DEVICE)
    _track(
        client, "Support Message", START,
        properties={"text": "my order never came and nobody answers 😡"}, context=DEVICE,
    )  # fmt: skip
    runner: StageRunner = app.state.stage
    with runner.lock:
        runner.stage.catch_up()
    profile = client.get("/api/profiles/ann", headers=ADMIN).json()
    assert profile["counts"]["track"] >= 2  # and a "Message Sent" once the worker has sent
    decisions = client.get("/api/decisions", params={"customer": "ann"}, headers=ADMIN).json()
    (decision,) = decisions["decisions"]
    assert decision["momentKind"] == "friction" and decision["action"] in ("send", "silent")
    if decision["action"] == "send":
        deliveries = client.get("/api/deliveries", params={"customer": "ann"}, headers=ADMIN)
        assert [d["decision_id"] for d in deliveries.json()["deliveries"]] == [
            decision["decisionId"]
        ]
    local = {p.name for p in (tmp_path / "data").glob("*.db")}
    assert not local & {"momently.db", "moments.db", "outbox.db"}, local

    # a restart on the same database: the log, the decision and the checkpoint are there
    client.__exit__(None, None, None)
    again = engine()
    events = again.get("/api/events", params={"customer": "ann"}, headers=ADMIN).json()
    names = [e["event"] for e in events["events"]]
    assert names[:2] == ["Application Opened", "Support Message"]
    assert set(names[2:]) <= {"Message Sent"}  # the outbox worker sent it, and logged that
    after = again.get("/api/decisions", params={"customer": "ann"}, headers=ADMIN).json()
    assert [d["decisionId"] for d in after["decisions"]] == [decision["decisionId"]]
