"""``GET /api/models`` and a customer's predictions, over HTTP."""

from __future__ import annotations

from typing import Any

from momently.events import from_ms
from momently.predict.population import MODELS
from momently.predict.settings import MINUTE
from momently.runtime.stage import StageRunner
from tests.conftest import START, WRITE_KEY, App

AUTH = (WRITE_KEY, "")


def settle(app: App) -> None:
    """Let the moment stage process everything in the log, now."""
    runner: StageRunner = app.client.app.state.stage  # type: ignore[attr-defined]
    with runner.lock:
        runner.stage.catch_up()
        runner.stage.tick()


def track(app: App, user: str, name: str, at: int, **properties: Any) -> None:
    body: dict[str, Any] = {
        "userId": user,
        "event": name,
        "timestamp": from_ms(at).isoformat(),
        "properties": properties,
        "context": {"device": {"id": f"{user}-phone", "type": "ios"}},
    }
    answer = app.client.post("/v1/track", json=body, auth=AUTH)
    assert answer.status_code == 200, answer.text


def test_models_need_the_admin_key(app: App) -> None:
    assert app.client.get("/api/models").status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert app.client.get("/api/models", headers=wrong).status_code == 401
    assert app.client.get("/api/customers/x/predictions").status_code == 401


def test_models_show_versions_updates_and_live_metrics(app: App) -> None:
    fresh = app.client.get("/api/models", headers=app.admin)
    assert fresh.status_code == 200
    assert [m["name"] for m in fresh.json()] == list(MODELS)
    assert all(m["updates"] == 0 for m in fresh.json())
    at = START - 60 * MINUTE
    for step, name in enumerate(["Product Viewed", "Product Added", "Checkout Started"] * 3):
        track(app, "ann", name, at + step * MINUTE, category="toasters")
    settle(app)
    models = {m["name"]: m for m in app.client.get("/api/models", headers=app.admin).json()}
    touchpoints = models["next_touchpoint"]
    assert touchpoints["updates"] == 9
    assert touchpoints["version"].startswith("next_touchpoint/v1.")
    assert touchpoints["metrics"]["labels"] == 2.0  # one transition in four is scored
    assert 0.0 <= touchpoints["metrics"]["hitAt3"] <= 1.0
    assert "hitAt3" in touchpoints["baseline"]
    assert models["propensity"]["kind"] == "StandardScaler | clip | LogisticRegression"
    assert models["propensity"]["metrics"] == {"labels": 0.0}  # no label is due yet


def test_a_customers_predictions(app: App) -> None:
    at = START - 30 * MINUTE
    track(app, "bob", "Product Viewed", at, category="shoes")
    track(app, "bob", "Product Added", at + MINUTE, category="shoes")
    settle(app)
    answer = app.client.get("/api/customers/bob/predictions", headers=app.admin)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["at"] == app.clock.now_ms()
    assert 0.0 < body["propensity"] < 1.0
    assert len(body["receptivity"]["weekly"]) == 168
    assert set(body["channels"]) == {"push", "email", "sms", "in_app", "web_push"}
    assert body["activeDevice"] is None  # thirty minutes ago is not "now"
    assert list(body["devices"]) == ["bob-phone"]
    assert body["nextCategories"][0]["token"] == "shoes"
    earlier = app.client.get(
        f"/api/customers/bob/predictions?at={at + 2 * MINUTE}", headers=app.admin
    ).json()
    assert earlier["activeDevice"] == "bob-phone"
    missing = app.client.get("/api/customers/nobody/predictions", headers=app.admin)
    assert missing.status_code == 404
