from __future__ import annotations

import httpx

from tests.conftest import WRITE_KEY, App, Server


def test_track_then_profile(app: App) -> None:
    answer = app.client.post(
        "/v1/track",
        auth=(WRITE_KEY, ""),
        json={"userId": "u1", "event": "Product Viewed", "messageId": "m1"},
    )
    assert answer.status_code == 200
    assert answer.json() == {"success": True, "accepted": 1, "duplicates": 0}
    profile = app.client.get("/api/profiles/u1", headers=app.admin).json()
    assert profile["userId"] == "u1"
    assert profile["counts"] == {"track": 1}


def test_real_server_health(server: Server) -> None:
    assert httpx.get(server.url + "/api/health").json()["status"] == "ok"
