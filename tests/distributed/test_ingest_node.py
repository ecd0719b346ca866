"""``momently serve --log``: a stateless ingest node, acknowledging after JetStream does."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from momently.distributed.log import LogSettings, connect
from momently.distributed.web import ingest_app
from tests.conftest import WRITE_KEY

pytestmark = [pytest.mark.slow, pytest.mark.integration]
AUTH = {"Authorization": "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()}


def test_the_tracking_api_appends_to_the_log_and_dedupes(log_url: Callable[..., str]) -> None:
    settings = LogSettings.from_url(log_url(partitions=4))
    app = ingest_app(settings, [WRITE_KEY])
    batch = {
        "batch": [
            {"type": "track", "event": "Product Viewed", "userId": f"u{i}", "messageId": f"i{i}"}
            for i in range(20)
        ]
        + [{"type": "track", "userId": "u1"}]  # no event name: rejected, the rest stored
    }
    with TestClient(app) as client:
        assert client.get("/readyz").status_code == 200
        got = client.post("/v1/batch", json=batch, headers=AUTH)
        assert got.status_code == 200, got.text
        body = got.json()
        assert (body["accepted"], body["duplicates"], len(body["rejected"])) == (20, 0, 1)
        again = client.post("/v1/batch", json=batch, headers=AUTH).json()
        assert (again["accepted"], again["duplicates"]) == (0, 20)
        one = client.post(
            "/v1/track", json={"event": "Order Completed", "userId": "u3"}, headers=AUTH
        )
        assert one.status_code == 200 and one.json()["accepted"] == 1
        assert client.post("/v1/track", json={"event": "x"}, headers=AUTH).status_code == 400
        assert client.post("/v1/track", json={"event": "x", "userId": "u"}).status_code == 401
        metrics = client.get("/metrics").text
        assert "momently_events_accepted_total 21.0" in metrics

        async def stored() -> int:
            c = await connect(settings, "t")
            info = await c.jetstream().stream_info(settings.stream)
            await c.close()
            return int(info.state.messages)

        assert asyncio.run(stored()) == 21
