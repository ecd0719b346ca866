"""The ingest node's admin reads: refusals in the embedded mode's shapes, and progress."""

from __future__ import annotations

import httpx
import pytest

from tests.distributed.e2e import DistributedServer

pytestmark = pytest.mark.integration


def test_refusals_and_partition_progress(distributed_server: DistributedServer) -> None:
    server = distributed_server
    batch = [
        {"type": "track", "userId": f"u{n}", "event": "Product Viewed", "messageId": f"m{n}"}
        for n in range(20)
    ]
    sent = httpx.post(
        server.url + "/v1/batch", json={"batch": batch}, auth=(server.write_key, ""), timeout=10
    )
    assert sent.status_code == 200, sent.text
    server.settle()
    progress = httpx.get(server.url + "/api/partitions", headers=server.admin, timeout=10).json()
    rows = progress["partitions"]
    assert progress["settled"] and len(rows) == server.partitions
    assert all(r["lag"] == 0 and r["position"] == r["stream"] for r in rows)
    assert sum(1 for r in rows if r["stream"] > 0) > 1, "the customers spread over partitions"
    stats = httpx.get(server.url + "/api/stats", headers=server.admin, timeout=10).json()
    assert stats == {"events": 20, "customers": 20, "identities": 20}

    def get(path: str, **params: str | int) -> httpx.Response:
        return httpx.get(server.url + path, headers=server.admin, params=params, timeout=10)

    refused = [
        (httpx.get(server.url + "/api/profiles/u1", timeout=10), 401, None),
        (get("/api/profiles/nobody"), 404, "id"),
        (get("/api/events", customer="u1", cursor="x1"), 400, "cursor"),
        (get("/api/events", customer="nobody"), 404, "customer"),
        (get("/api/events", customer="u1", limit=0), 422, None),
        (get("/api/moments", kind="nonsense"), 400, "kind"),
        (get("/api/moments", cursor="12~de-1"), 400, "cursor"),
        (get("/api/decisions", action="nonsense"), 400, "action"),
        (get("/api/decisions/de-nothing"), 404, "decision_id"),
    ]
    for answer, status, field in refused:
        assert answer.status_code == status, answer.text
        assert "error" in answer.json()
        if field is not None:
            assert answer.json()["field"] == field
    profile = get("/api/profiles/u1").json()
    assert profile["userId"] == "u1" and profile["counts"] == {"track": 1}

    # The playbook and journey reads, over every partition.
    journeys = get("/api/journeys").json()
    assert journeys and all(j["stages"] for j in journeys)
    report = get(f"/api/journeys/{journeys[0]['name']}")
    assert report.status_code == 200, report.text
    assert get("/api/journeys/no-such-journey").json()["field"] == "name"
    assert get("/api/customers/u1/journeys").json() == []
    assert get("/api/customers/nobody/journeys").status_code == 404
    assert get("/api/playbook").json()["journeys"]
    assert get("/api/playbook/schema").status_code == 200
    moment_stats = get("/api/moments/stats").json()
    assert moment_stats["worldEvents"] == 0 and "checkpoint" not in moment_stats
