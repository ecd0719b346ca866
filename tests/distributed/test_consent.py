"""Consent in distributed mode, end to end: an opt-out through the ingest node's consent
API cancels the send a worker already scheduled in the shared outbox, before the
answer (as tests/privacy/test_consent.py shows for the embedded server), and the next
complaint is answered by silence."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from momently.clock import SystemClock
from momently.events import from_ms
from momently.moments.playbook import Playbook
from tests.deliver.test_wiring import offer, only, playbook
from tests.distributed.e2e import DistributedServer, distributed
from tests.nats_server import NatsServer, needs_nats
from tests.postgres import Cluster

pytestmark = [pytest.mark.slow, pytest.mark.integration, needs_nats]

HOUR = 3_600_000
ANGRY = "this is terrible, my order is late again!!"


def quiet_now(tmp: Path, now_ms: int) -> Playbook:
    """Apologies by email only, marketing, with quiet hours from an hour ago to two hours
    from now (UTC, the wall clock the processes run on): a send scheduled for later."""
    at = datetime.fromtimestamp(now_ms / 1000, UTC)

    def change(decide: dict[str, Any]) -> None:
        decide["quiet_hours"] = {
            "start": (at - timedelta(hours=1)).strftime("%H:%M"),
            "end": (at + timedelta(hours=2)).strftime("%H:%M"),
        }
        decide["arbitration"] = {"exploration": 0, "fatigue_cost": 0, "decay": "none"}
        email = next(c for c in decide["channels"] if c["name"] == "email")
        # Never reached: the send is cancelled hours before it is due.
        email["providers"] = [
            {"type": "smtp", "host": "127.0.0.1", "port": 9, "from": "hi@brand.example"}
        ]
        voucher = offer(decide, "sorry-voucher")
        voucher.update(value=200, cost=0, purpose="marketing")
        voucher["messages"] = {"email": voucher["messages"]["email"]}

    return playbook(tmp, change)


def track(server: DistributedServer, user: str, name: str, at: int, **fields: Any) -> None:
    answer = httpx.post(
        server.url + "/v1/track",
        json={"userId": user, "event": name, "timestamp": from_ms(at).isoformat(), **fields},
        auth=(server.write_key, ""),
        timeout=10,
    )
    assert answer.status_code == 200, answer.text


def get(server: DistributedServer, path: str, **params: Any) -> Any:
    answer = httpx.get(server.url + path, params=params, headers=server.admin, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_an_opt_out_through_the_ingest_node_cancels_the_scheduled_send(
    nats_server: NatsServer, postgres: Cluster, tmp_path: Path
) -> None:
    now = SystemClock().now_ms()
    device = {"device": {"id": "ann-phone", "type": "ios"}}
    with distributed(nats_server, postgres, playbook=quiet_now(tmp_path, now)) as server:
        user = f"ann-{server.port}"
        track(server, user, "Application Opened", now - 60_000,
              traits={"email": f"{user}@example.com"}, context=device)  # fmt: skip
        track(server, user, "Support Message", now, properties={"text": ANGRY}, context=device)
        server.settle()
        # The worker hands the decision to the outbox after its stage commits: polled.
        deadline = time.monotonic() + 30
        while not (entries := get(server, "/api/deliveries", customer=user)["deliveries"]):
            assert time.monotonic() < deadline, "her send never reached the outbox"
            time.sleep(0.05)
        entry = only(entries)
        assert (entry["state"], entry["channel"]) == ("pending", "email"), entry
        assert entry["due_ms"] > now + HOUR  # after the quiet hours

        answer = httpx.post(
            server.url + f"/api/customers/{user}/consent",
            json={"granted": False, "channel": "email", "purpose": "marketing", "source": "crm"},
            headers=server.admin,
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["cancelled"] == [entry["decision_id"]]  # in the shared outbox, at once
        cancelled = only(get(server, "/api/deliveries", customer=user)["deliveries"])
        assert cancelled["state"] == "cancelled"
        assert cancelled["reason"] == "the customer opted out of marketing on email"

        # The opt-out event reaches her partition, and the decision shows the cancel.
        server.settle()
        consent = get(server, f"/api/profiles/{user}")["consent"]["email:marketing"]
        assert consent["granted"] is False and consent["source"] == "crm:Unsubscribed"
        assert get(server, f"/api/decisions/{entry['decision_id']}")["status"] == "cancelled"

        # Her next complaint, a day later by event time (past the friction moment's
        # cooldown, which runs in event time), is answered by silence, bound by the opt-out.
        track(server, user, "Support Message", now + 25 * HOUR,
              properties={"text": "still waiting, this is useless"}, context=device)  # fmt: skip
        server.settle()
        latest = get(server, "/api/decisions", customer=user)["decisions"][0]
        assert latest["action"] == "silent", latest
        assert any(
            b.startswith("opt_out: opted out of marketing on email") for b in latest["bound"]
        )
        assert len(get(server, "/api/deliveries", customer=user)["deliveries"]) == 1
