"""A real ``momently serve`` under a steady load, for the soak and the crash cycle.

Shared by ``benchmarks/bench_soak.py`` (30 minutes, many kill -9 cycles) and the
bounded pytest version (``tests/test_crash_cycles.py``). Everything runs on
loopback:

* the server is ``python -m momently.cli serve`` on a free port, with a playbook
  (the example one, holdouts and exploration off) whose apology offer goes out
  through a signed webhook to a recording HTTP server in this process (the *sink*);
* the load is open-loop: batches of ``batch`` events at ``rate`` events a second,
  on a schedule that does not wait for slow answers (so latency is not hidden);
  most events are product views over a fixed population, and one batch in
  ``complain_every`` carries a new customer who opens the app and complains
  (a friction moment, a decision, one webhook send);
* the :class:`Ledger` keeps which messageIds the server acknowledged (200) and
  which batches got no answer (the server died under them);
* :func:`check` reads the event log (read-only) and the sink afterwards: every
  acknowledged messageId stored exactly once, every unanswered batch whole or
  absent, and no customer sent the apology twice.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import httpx
import yaml

from momently.decide.spec import WebhookProvider
from momently.events import decode_event
from tests.conftest import ADMIN_KEY, WRITE_KEY
from tests.deliver.servers import Recorder
from tests.ports import free_port

HOOK_SECRET = "whsec_" + "a2trazY0a2trazY0a2trazY0a2trazY0a2trazY0a2s="  # base64 of 32 bytes
ANGRY = "my order never came and nobody answers, this is a disgrace"
POPULATION = 5_000  # customers who view products, over and over


def soak_playbook(directory: Path, sink_url: str) -> Path:
    """The example playbook, every customer treated, the apology sent to the sink."""
    data = yaml.safe_load(
        resources.files("momently.playbooks").joinpath("example.yaml").read_text("utf-8")
    )
    decide = data["decide"]
    decide["holdout"] = 0
    decide["quiet_hours"] = None  # the soak may run at any hour
    decide["arbitration"]["exploration"] = 0
    sink: dict[str, Any] = {
        "name": "sink", "type": "webhook", "url": sink_url + "/hook",
        "secret_env": "SOAK_HOOK_SECRET", "timeout_s": 10,
    }  # fmt: skip
    if "allow_private_targets" in WebhookProvider.model_fields:
        sink["allow_private_targets"] = True  # the sink is on loopback (see deliver.ssrf)
    decide["channels"].append({"name": "hook", "kind": "webhook", "providers": [sink]})
    for offer in decide["offers"]:
        offer.pop("holdout", None)
        if offer["id"] == "sorry-voucher":
            offer.update(value=200, cost=0)
            # the text is the customer's userId, so the sink can tell who got what
            offer["messages"] = {"hook": {"title": "Sorry", "body": "{{ profile.user_id }}"}}
    path = directory / "soak-playbook.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), "utf-8")
    return path


@dataclass
class Serve:
    """One ``momently serve`` process; :meth:`restart` after :meth:`kill` reuses the data."""

    data_dir: Path
    playbook: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, timeout_s: float = 300) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MOMENTLY_")}
        env["SOAK_HOOK_SECRET"] = HOOK_SECRET
        log = (self.data_dir.parent / f"{self.data_dir.name}-serve.log").open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "momently.cli", "serve", "--host", "127.0.0.1",
             "--port", str(self.port), "--data-dir", str(self.data_dir),
             "--write-key", WRITE_KEY, "--admin-key", ADMIN_KEY,
             "--playbook", str(self.playbook)],
            env=env, stdout=log, stderr=log,
        )  # fmt: skip
        log.close()
        self.starts += 1
        deadline = time.monotonic() + timeout_s
        while True:  # readiness, not timing: poll health until the server answers
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"momently serve exited with {self.process.returncode}: {self.log_tail()}"
                )
            try:
                if httpx.get(self.url + "/api/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"not ready in {timeout_s:.0f} s: {self.log_tail()}")
            time.sleep(0.05)

    def log_tail(self) -> str:
        path = self.data_dir.parent / f"{self.data_dir.name}-serve.log"
        return path.read_text("utf-8", "replace")[-2000:] if path.exists() else ""

    def kill(self) -> None:
        """SIGKILL: no shutdown hook runs, as in a crash."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.kill()

    def rss_bytes(self) -> int:
        """Resident memory of the server process, from /proc."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def cpu_seconds(self) -> float:
        """CPU time the server process has used (user + system, all its threads)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def admin(self, path: str, **params: Any) -> Any:
        answer = httpx.get(
            self.url + path,
            params=params,
            headers={"Authorization": f"Bearer {ADMIN_KEY}"},
            timeout=30,
        )
        answer.raise_for_status()
        return answer.json()


@dataclass
class Ledger:
    """What was sent, what the server acknowledged, and how long each answer took."""

    acked: list[list[str]] = field(default_factory=list)
    unacked: list[list[str]] = field(default_factory=list)
    complainers: list[str] = field(default_factory=list)  # acknowledged ones
    latencies: list[tuple[float, float]] = field(default_factory=list)  # (monotonic, seconds)
    statuses: Counter[int] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)  # unexpected answers

    @property
    def acked_events(self) -> int:
        return sum(len(batch) for batch in self.acked)


def iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}Z"


def make_batch(
    tag: str,
    number: int,
    size: int,
    complain: bool,
    population: int = POPULATION,
    at_ms: int | None = None,
) -> tuple[list[str], str | None, bytes]:
    """``size`` events; with ``complain``, the first two are a new customer's app open and
    complaint. Timestamps are now (the server decides on its own clock), or ``at_ms`` for
    the product views, a time in the past, sent now (``sentAt``)."""
    now = int(time.time() * 1000)
    viewed = now if at_ms is None else at_ms
    messages: list[dict[str, Any]] = []
    complainer = None
    if complain:
        complainer = f"soak-{tag}-{number}"
        device = {"device": {"id": f"{complainer}-phone", "type": "ios"}}
        messages.append(
            {"type": "track", "event": "Application Opened", "userId": complainer,
             "timestamp": iso(now - 60_000), "context": device}
        )  # fmt: skip
        messages.append(
            {"type": "track", "event": "Support Message", "userId": complainer,
             "timestamp": iso(now), "properties": {"text": ANGRY}, "context": device}
        )  # fmt: skip
    while len(messages) < size:
        i = len(messages)
        user = f"pop-{(number * size + i) % population}"
        messages.append(
            {"type": "track", "event": "Product Viewed", "userId": user, "timestamp": iso(viewed),
             "properties": {"product_id": f"sku-{i % 40}", "price": 9.5 + i % 7},
             "context": {"device": {"id": f"{user}-phone", "model": "Pixel 8"}}}
        )  # fmt: skip
    ids = [f"{tag}-b{number}-m{i}" for i in range(len(messages))]
    for message, message_id in zip(messages, ids, strict=True):
        message["messageId"] = message_id
    body = json.dumps({"batch": messages, "sentAt": iso(now)}).encode()
    return ids, complainer, body


@dataclass
class Load:
    """Open-loop load: a batch every ``batch / rate`` seconds, however slow the answers."""

    url: str
    rate: float = 2_000.0
    batch: int = 50
    complain_every: int = 40
    tag: str = "s"
    population: int = POPULATION
    max_in_flight: int = 64
    ledger: Ledger = field(default_factory=Ledger)
    sent_batches: int = 0

    async def _post(self, client: httpx.AsyncClient, number: int, sem: asyncio.Semaphore) -> None:
        ids, complainer, body = make_batch(
            self.tag,
            number,
            self.batch,
            complain=number % self.complain_every == 0,
            population=self.population,
        )
        async with sem:
            started = time.monotonic()
            try:
                answer = await client.post(
                    self.url + "/v1/batch",
                    content=body,
                    headers={"content-type": "application/json"},
                    auth=(WRITE_KEY, ""),
                )
            except httpx.TransportError:
                self.ledger.unacked.append(ids)  # sent, half sent or not at all: the server died
                return
            took = time.monotonic() - started
        self.ledger.statuses[answer.status_code] += 1
        if answer.status_code == 200 and answer.json().get("accepted") == len(ids):
            self.ledger.acked.append(ids)
            self.ledger.latencies.append((started, took))
            if complainer is not None:
                self.ledger.complainers.append(complainer)
        else:
            self.ledger.unacked.append(ids)
            if answer.status_code != 429 and len(self.ledger.errors) < 20:
                self.ledger.errors.append(f"{answer.status_code}: {answer.text[:200]}")

    async def run(self, until: float, stop: asyncio.Event | None = None) -> None:
        """Send until monotonic ``until`` (or ``stop``), then wait for the answers."""
        interval = self.batch / self.rate
        sem = asyncio.Semaphore(self.max_in_flight)
        limits = httpx.Limits(max_connections=self.max_in_flight, max_keepalive_connections=16)
        async with httpx.AsyncClient(timeout=30, limits=limits) as client:
            tasks: set[asyncio.Task[None]] = set()
            start = time.monotonic()
            while time.monotonic() < until and not (stop is not None and stop.is_set()):
                task = asyncio.create_task(self._post(client, self.sent_batches, sem))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                self.sent_batches += 1
                due = start + self.sent_batches * interval
                await asyncio.sleep(max(0.0, due - time.monotonic()))
            if tasks:
                await asyncio.gather(*tasks)


def p99(values: list[float]) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]


def settle(server: Serve, timeout_s: float = 300) -> dict[str, Any]:
    """Wait (polling, not sleeping for a time) until the moment stage has read the whole log
    and the outbox has nothing pending: every decision made, every send done."""
    deadline = time.monotonic() + timeout_s
    quiet = 0
    last: tuple[int, int] | None = None
    while True:
        stats = server.admin("/api/deliveries/stats")
        events = server.admin("/api/stats")["events"]
        metrics = httpx.get(
            server.url + "/metrics", headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=30
        ).text
        position = next(
            int(float(line.split()[-1]))
            for line in metrics.splitlines()
            if line.startswith("momently_moment_stage_position ")
        )
        busy = stats["outbox"].get("pending", 0) + stats["outbox"].get("claimed", 0)
        now = (events, position)
        quiet = quiet + 1 if (position >= events and not busy and now == last) else 0
        if quiet >= 3:  # three looks in a row with nothing left and nothing new
            result: dict[str, Any] = stats
            return result
        last = now
        if time.monotonic() > deadline:
            raise AssertionError(f"not settled in {timeout_s:.0f} s: {stats}, {now}")
        time.sleep(0.2)


@dataclass
class Checked:
    stored: int
    acked: int
    unacked_batches: int
    unacked_stored: int
    complainers: int
    sends: int  # webhook requests the sink received
    sent_keys: int  # distinct idempotency keys among them
    resent_same_key: int  # a send repeated with its key after a crash (the receiver dedupes)
    customers_sent_twice: int  # customers who got two different messages: must be 0
    customers_unsent: int  # acknowledged complainers the sink never heard of
    torn_sends: int = 0  # requests cut mid-body by a kill


def stored_ids(db: Path) -> Counter[str]:
    """Every messageId in the log, read through a read-only connection."""
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


def check(data_dir: Path, ledger: Ledger, sink: Recorder) -> Checked:
    """Nothing acknowledged lost, nothing stored twice, no batch torn, no message sent twice."""
    ids = stored_ids(data_dir / "momently.db")
    duplicated = [m for m, n in ids.items() if n != 1]
    assert not duplicated, f"stored more than once: {duplicated[:5]}"
    lost = [m for batch in ledger.acked for m in batch if m not in ids]
    assert not lost, f"acknowledged but lost: {len(lost)}, e.g. {lost[:5]}"
    unacked_stored = 0
    for batch in ledger.unacked:
        present = sum(m in ids for m in batch)
        assert present in (0, len(batch)), f"batch torn: {present} of {len(batch)} stored"
        unacked_stored += present
    with sink.lock:
        received = list(sink.requests)
    # A send the kill cut mid-body reached the sink torn (its signature would fail at a
    # real receiver); the outbox resends it with its key after the restart.
    requests = [r for r in received if _parses(r.body)]
    keys: Counter[str] = Counter(r.headers["webhook-id"] for r in requests)
    per_customer: dict[str, set[str]] = {}
    for request in requests:
        customer = str(json.loads(request.body)["data"]["text"]).strip()
        per_customer.setdefault(customer, set()).add(request.headers["webhook-id"])
    twice = {c: k for c, k in per_customer.items() if len(k) > 1}
    assert not twice, f"customers sent two different messages: {list(twice.items())[:3]}"
    unsent = [c for c in ledger.complainers if c not in per_customer]
    return Checked(
        stored=len(ids),
        acked=sum(len(batch) for batch in ledger.acked),
        unacked_batches=len(ledger.unacked),
        unacked_stored=unacked_stored,
        complainers=len(ledger.complainers),
        sends=len(requests),
        sent_keys=len(keys),
        resent_same_key=len(requests) - len(keys),
        customers_sent_twice=len(twice),
        customers_unsent=len(unsent),
        torn_sends=len(received) - len(requests),
    )


def _parses(body: bytes) -> bool:
    try:
        json.loads(body)["data"]["text"]
    except (ValueError, KeyError, TypeError):
        return False
    return True
