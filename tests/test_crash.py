"""Crash safety: ``kill -9`` under load loses no acknowledged event and tears none.

A real ``momently serve`` takes batches from a few client threads; once enough
batches have been acknowledged (a count, not a sleep) it is killed with
SIGKILL, restarted on the same data directory, and the log is read back:

* every messageId the server answered 200 for is stored exactly once;
* a batch that got no answer is stored whole or not at all (one group commit);
* every stored record decodes, and SQLite finds the file intact.

The cycle runs a few times on the same data directory.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from momently.events import decode_event
from tests.conftest import WRITE_KEY, Server

CLIENTS = 3
BATCH = 20
KILL_AFTER = (15, 40, 25)  # acknowledged batches before each cycle's kill
DEADLINE_S = 180  # a safety net per cycle on a loaded machine, not a speed test


@dataclass
class Ledger:
    """What the clients sent, and what the server acknowledged, per batch."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    acked: list[list[str]] = field(default_factory=list)
    unacked: list[list[str]] = field(default_factory=list)
    enough: threading.Event = field(default_factory=threading.Event)
    errors: list[BaseException] = field(default_factory=list)
    target: int = 0

    def settle(self, ids: list[str], ok: bool) -> None:
        with self.lock:
            (self.acked if ok else self.unacked).append(ids)
            if len(self.acked) >= self.target:
                self.enough.set()


def batch_body(cycle: int, client: int, number: int) -> tuple[list[str], dict[str, object]]:
    ids = [f"c{cycle}-t{client}-b{number}-m{i}" for i in range(BATCH)]
    messages = [
        {
            "type": "track",
            "event": "Product Viewed",
            "messageId": message_id,
            "userId": f"crash-user-{client}-{number % 4}",
            "anonymousId": f"crash-anon-{client}-{number % 4}",
            "timestamp": "2026-09-21T13:33:20.000Z",
            "properties": {"product_id": f"sku-{i}", "price": 9.5, "n": i},
            "context": {"device": {"id": f"dev-{client}", "model": "Pixel 8"}},
        }
        for i, message_id in enumerate(ids)
    ]
    return ids, {"batch": messages, "sentAt": "2026-09-21T13:33:21.000Z"}


def client_loop(server: Server, cycle: int, client: int, ledger: Ledger, stop: float) -> None:
    """Post batches until the connection breaks (the kill) or the deadline passes."""
    try:
        with httpx.Client(base_url=server.url, auth=(WRITE_KEY, ""), timeout=20) as http:
            number = 0
            while time.monotonic() < stop:
                ids, body = batch_body(cycle, client, number)
                number += 1
                try:
                    answer = http.post("/v1/batch", json=body)
                except httpx.TransportError:
                    ledger.settle(ids, ok=False)  # sent, or half sent, when the server died
                    return
                ok = answer.status_code == 200 and answer.json()["accepted"] == BATCH
                ledger.settle(ids, ok=ok)
                if not ok:
                    raise AssertionError(f"unexpected answer {answer.status_code}: {answer.text}")
    except BaseException as error:  # noqa: BLE001 - reported by the test thread
        with ledger.lock:
            ledger.errors.append(error)
        ledger.enough.set()


def stored(db: Path) -> Counter[str]:
    """Every messageId in the log, read through a read-only connection beside the server."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        ids: Counter[str] = Counter()
        for message_id, payload in conn.execute("SELECT message_id, payload FROM events"):
            event = decode_event(payload)  # a torn record would not decode
            assert event.message_id == message_id
            ids[message_id] += 1
        return ids
    finally:
        conn.close()


def check_log(db: Path, ledger: Ledger) -> Counter[str]:
    ids = stored(db)
    duplicated = [m for m, n in ids.items() if n != 1]
    assert not duplicated, f"stored more than once: {duplicated[:5]}"
    lost = [m for batch in ledger.acked for m in batch if m not in ids]
    assert not lost, f"acknowledged but lost after kill -9: {lost[:5]}"
    for batch in ledger.unacked:
        present = sum(m in ids for m in batch)
        assert present in (0, len(batch)), f"batch torn: {present} of {len(batch)} stored"
    return ids


@pytest.mark.slow
@pytest.mark.integration
def test_kill_9_under_load_loses_no_acknowledged_event(
    server_factory: Callable[..., Server], tmp_path: Path
) -> None:
    data_dir = tmp_path / "crash"
    db = data_dir / "momently.db"
    ledger = Ledger()
    server = server_factory(data_dir=data_dir)
    for cycle, kill_after in enumerate(KILL_AFTER):
        stop = time.monotonic() + DEADLINE_S  # from when this cycle's server is ready
        ledger.target = len(ledger.acked) + kill_after
        ledger.enough.clear()
        clients = [
            threading.Thread(target=client_loop, args=(server, cycle, c, ledger, stop))
            for c in range(CLIENTS)
        ]
        for thread in clients:
            thread.start()
        reached = ledger.enough.wait(max(0.0, stop - time.monotonic()))
        server.kill()  # mid-load: the clients are still posting
        for thread in clients:
            thread.join(timeout=30)
        assert not any(thread.is_alive() for thread in clients)
        assert not ledger.errors, ledger.errors
        assert reached, f"cycle {cycle}: only {len(ledger.acked)} batches acknowledged in time"

        server = server_factory(data_dir=data_dir)
        ids = check_log(db, ledger)
        stats = httpx.get(server.url + "/api/stats", headers=server.admin).json()
        assert stats["events"] == len(ids)

    # The restarted server still dedupes: an acknowledged batch sent again adds nothing,
    # and a batch lost in the crash can simply be retried.
    with httpx.Client(base_url=server.url, auth=(WRITE_KEY, ""), timeout=20) as http:
        for batch in [*ledger.acked[:3], *ledger.unacked]:
            cycle, client, number = (int(part[1:]) for part in batch[0].split("-")[:3])
            sent, body = batch_body(cycle, client, number)
            assert sent == batch
            answer = http.post("/v1/batch", json=body).json()
            if batch in ledger.acked:
                assert answer["duplicates"] == BATCH
            else:
                assert answer["accepted"] + answer["duplicates"] == BATCH
        ledger.acked.extend(ledger.unacked)
        ledger.unacked.clear()
        ids = check_log(db, ledger)
        assert len(ids) == sum(len(batch) for batch in ledger.acked)

        # the admin API serves each customer's events from the recovered log
        user = "crash-user-0-0"
        expected = {m for m in ids if m.split("-")[1] == "t0" and int(m.split("-")[2][1:]) % 4 == 0}
        served: list[str] = []
        cursor = None
        while True:
            page = httpx.get(
                server.url + "/api/events",
                params={"customer": user, "limit": 1000, **({"cursor": cursor} if cursor else {})},
                headers=server.admin,
            ).json()
            assert all(e["userId"] == user for e in page["events"])
            served += [e["messageId"] for e in page["events"]]
            if (cursor := page["next"]) is None:
                break
        assert sorted(served) == sorted(expected)
