"""The moments admin API: moments, journeys, world events and the playbook, over HTTP."""

from __future__ import annotations

from typing import Any

from momently.events import from_ms
from momently.runtime.stage import StageRunner
from tests.conftest import WRITE_KEY, App
from tests.moments.factories import T0

AUTH = (WRITE_KEY, "")


def settle(app: App) -> None:
    """Let the moment stage process everything in the log, deterministically, now."""
    runner: StageRunner = app.client.app.state.stage  # type: ignore[attr-defined]
    with runner.lock:
        runner.stage.catch_up()
        runner.stage.tick()


def post(app: App, body: dict[str, Any]) -> None:
    answer = app.client.post("/v1/track", json=body, auth=AUTH)
    assert answer.status_code == 200, answer.text


def iso(ms: int) -> str:
    return from_ms(ms).isoformat()


def test_moments_are_listed_and_filtered(app: App) -> None:
    post(
        app,
        {
            "userId": "ann",
            "event": "Products Searched",
            "properties": {"query": "buy toaster"},
            "timestamp": iso(T0),
        },
    )
    post(
        app,
        {
            "userId": "bob",
            "event": "Support Message",
            "properties": {"text": "my order never came and nobody answers 😡"},
            "timestamp": iso(T0 + 1000),
        },
    )
    settle(app)
    everything = app.client.get("/api/moments", headers=app.admin).json()
    kinds = sorted(m["kind"] for m in everything["moments"])
    assert "buy" in kinds and "friction" in kinds
    only_bob = app.client.get("/api/moments?customer=bob&kind=friction", headers=app.admin).json()
    assert [m["name"] for m in only_bob["moments"]] == ["friction.sentiment"]
    moment = only_bob["moments"][0]
    assert {
        "momentId",
        "customerId",
        "confidence",
        "atMs",
        "expiresMs",
        "trigger",
        "context",
    } <= set(moment)


def test_moments_page_with_a_cursor(app: App) -> None:
    for i in range(5):
        post(
            app,
            {
                "userId": f"u{i}",
                "event": "Order Completed",
                "properties": {"fulfilment": "collect"},
                "timestamp": iso(T0 + i * 1000),
            },
        )
    settle(app)
    first = app.client.get("/api/moments?name=click-and-collect&limit=3", headers=app.admin).json()
    assert len(first["moments"]) == 3 and first["next"]
    rest = app.client.get(
        f"/api/moments?name=click-and-collect&limit=3&cursor={first['next']}", headers=app.admin
    ).json()
    assert len(rest["moments"]) == 2 and rest["next"] is None
    seen = [m["momentId"] for m in first["moments"] + rest["moments"]]
    assert len(set(seen)) == 5


def test_bad_moment_queries_get_clear_errors(app: App) -> None:
    for query, field in (
        ("kind=joy", "kind"),
        ("cursor=xyz", "cursor"),
        ("customer=nobody", "customer"),
    ):
        answer = app.client.get(f"/api/moments?{query}", headers=app.admin)
        assert answer.status_code in (400, 404), answer.text
        assert answer.json()["field"] == field
    assert app.client.get("/api/moments").status_code == 401


def test_world_event_fans_out_once(app: App) -> None:
    post(
        app,
        {
            "userId": "cat",
            "event": "Location Updated",
            "timestamp": iso(app.clock.now_ms()),
            "context": {"location": {"latitude": 51.5154, "longitude": -0.1410, "accuracy": 5}},
        },
    )
    settle(app)
    body = {
        "id": "hot-now-1",
        "name": "hot-now",
        "near": {"place": "store-12", "radius_m": 300},
        "properties": {"message": "Hot doughnuts now"},
    }
    first = app.client.post("/api/world-events", json=body, headers=app.admin)
    assert first.json() == {"id": "hot-now-1", "recipients": 1, "duplicate": False}
    again = app.client.post("/api/world-events", json=body, headers=app.admin)
    assert again.json()["duplicate"] is True
    moments = app.client.get("/api/moments?name=world.hot-now", headers=app.admin).json()["moments"]
    assert len(moments) == 1 and moments[0]["details"]["message"] == "Hot doughnuts now"


def test_a_world_event_reaches_customers_the_stage_has_not_read_yet(app: App) -> None:
    runner: StageRunner = app.client.app.state.stage  # type: ignore[attr-defined]
    runner._busy = lambda: True  # ingestion never pauses: the stage keeps giving way
    runner._max_defer = 3_600.0
    post(
        app,
        {
            "userId": "dan",
            "event": "Location Updated",
            "timestamp": iso(app.clock.now_ms()),
            "context": {"location": {"latitude": 51.5154, "longitude": -0.1410, "accuracy": 5}},
        },
    )
    body = {"id": "hot-now-2", "name": "hot-now", "near": {"place": "store-12", "radius_m": 300}}
    answer = app.client.post("/api/world-events", json=body, headers=app.admin)
    assert answer.json() == {"id": "hot-now-2", "recipients": 1, "duplicate": False}
    runner._busy = None


def test_bad_world_events_are_refused_and_change_nothing(app: App) -> None:
    bad: list[tuple[dict[str, Any], int]] = [
        ({"id": "w", "name": "x"}, 422),  # no audience
        ({"id": "w", "name": "x", "near": {"place": "store-99"}}, 400),
        ({"id": "w", "name": "x", "near": {"lat": 91, "lon": 0}}, 422),
        ({"id": "w", "name": "x", "near": {"lat": 51, "lon": 0, "radius_m": 1e9}}, 422),
        ({"name": "x", "topics": ["t"]}, 422),
    ]
    for body, status in bad:
        answer = app.client.post("/api/world-events", json=body, headers=app.admin)
        assert answer.status_code == status, (body, answer.text)
        assert "reason" in answer.json()
    stats = app.client.get("/api/moments/stats", headers=app.admin).json()
    assert stats["worldEvents"] == 0 and stats["moments"] == 0


def test_journey_funnel_and_customer_journeys(app: App) -> None:
    for i, name in enumerate(["Clear Braces Options", "Clear Braces Cost", "Clear Braces Reviews"]):
        answer = app.client.post(
            "/v1/page",
            json={"userId": "dee", "name": name, "timestamp": iso(T0 + i * 86_400_000)},
            auth=AUTH,
        )
        assert answer.status_code == 200
    answer = app.client.post(
        "/v1/page",
        json={"userId": "eve", "name": "Clear Braces Options", "timestamp": iso(T0)},
        auth=AUTH,
    )
    assert answer.status_code == 200
    settle(app)
    report = app.client.get("/api/journeys/clear-braces", headers=app.admin).json()
    stages = {s["name"]: s for s in report["stages"]}
    assert report["customers"] == 2
    assert stages["learn"]["reached"] == 2 and stages["cost"]["reached"] == 1
    assert stages["reviews"]["medianMs"] == 86_400_000
    runs = app.client.get("/api/customers/dee/journeys", headers=app.admin).json()
    assert [(r["journey"], r["stage"]) for r in runs] == [("clear-braces", "reviews")]
    assert app.client.get("/api/journeys/nope", headers=app.admin).status_code == 404


def test_playbook_and_schema_are_published(app: App) -> None:
    playbook = app.client.get("/api/playbook", headers=app.admin).json()
    assert len(playbook["moments"]) >= 30
    schema = app.client.get("/api/playbook/schema", headers=app.admin).json()
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert "moments" in schema["properties"]
