"""Keys against a real ``momently serve``: made and revoked by ``momently keys`` in another
process while the server runs, and the serve flags for CORS and rate limits."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import ADMIN_KEY, WRITE_KEY, start_server

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def keys(data_dir: Path, *args: str) -> list[str]:
    """``momently keys …`` in its own process, as an operator runs it."""
    done = subprocess.run(
        [sys.executable, "-m", "momently.cli", "keys", *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.splitlines()


def test_keys_made_and_revoked_while_the_server_runs(tmp_path: Path) -> None:
    server = start_server(
        tmp_path / "data", None, "--cors-origin", "https://shop.example", "--rate-limit", "1000"
    )
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            line, write = keys(server.data_dir, "create", "--kind", "write", "--source", "web")
            _, reader = keys(server.data_dir, "create", "--scope", "read")
            event = {"userId": "u1", "event": "Product Viewed", "messageId": "srv-1"}
            assert client.post("/v1/track", json=event, auth=(write, "")).status_code == 200
            bearer = {"Authorization": f"Bearer {reader}"}
            found = client.get("/api/events", params={"customer": "u1"}, headers=bearer)
            assert [e["source"] for e in found.json()["events"]] == ["web"]
            assert client.get("/metrics", headers=bearer).status_code == 200
            world = {"name": "x", "kind": "store", "place": "nowhere"}
            assert client.post("/api/world-events", json=world, headers=bearer).status_code == 403
            keys(server.data_dir, "revoke", line.split()[0])
            again = {**event, "messageId": "srv-2"}
            assert client.post("/v1/track", json=again, auth=(write, "")).status_code == 401
            assert client.post("/v1/track", json=again, auth=(WRITE_KEY, "")).status_code == 200
            admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
            assert client.get("/api/stats", headers=admin).json()["events"] == 2
            preflight = client.options(
                "/v1/batch",
                headers={
                    "Origin": "https://shop.example",
                    "Access-Control-Request-Method": "POST",
                    "Access-Control-Request-Headers": "authorization,content-type",
                },
            )
            assert preflight.headers["access-control-allow-origin"] == "https://shop.example"
            assert write not in " ".join(keys(server.data_dir, "list"))
    finally:
        server.process.terminate()
        server.process.wait(timeout=30)
        if server.process.stderr:
            server.process.stderr.close()
