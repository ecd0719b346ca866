"""Moment to send: how long from a customer's signal to the message leaving, end to end.

A real ``momently serve`` subprocess (SQLite, default durable settings) runs the
example playbook with one change: the apology for friction goes out on a signed
webhook to a loopback HTTP server in this process (holdouts and quiet hours off,
so every complaint is a "send now" decision). For each customer, one at a time:

1. ``Application Opened`` (a minute ago), so the customer is reachable now;
2. the complaint, ``Support Message`` "my order never came …", posted to
   ``/v1/track`` — the clock starts when the request leaves;
3. the clock stops when the webhook request naming that customer arrives.

In between: the durable ingest (group commit, fsync), the moment stage (detect
the friction, predict, decide), the outbox write (fsync), the outbox worker's
claim, rendering, Standard Webhooks signing and the HTTP POST. The baseline in
the same run is the ingest acknowledgement alone (request → 200), so the ratio
says what the rest of the pipeline costs on top of a durable write.

Run ``python benchmarks/bench_moment_to_send.py [--quick]``.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any

import httpx
import yaml

from bench_ingest import free_port

WRITE_KEY = "bench-write-key"
ADMIN_KEY = "bench-admin-key"
HOOK_SECRET = "whsec_" + base64.b64encode(b"m" * 32).decode()
COMPLAINT = "my order never came and nobody answers 😡"


class Arrivals:
    """The webhook sink: when each customer's message arrived (``perf_counter``)."""

    def __init__(self) -> None:
        self.at: dict[str, float] = {}
        self.cond = threading.Condition()

    def heard(self, body: bytes) -> None:
        now = time.perf_counter()
        text = json.loads(body)["data"]["text"]
        customer = text.removeprefix("Sorry, ").split(":", 1)[0]
        with self.cond:
            self.at.setdefault(customer, now)
            self.cond.notify_all()

    def wait(self, customer: str, timeout_s: float) -> float | None:
        with self.cond:
            self.cond.wait_for(lambda: customer in self.at, timeout_s)
            return self.at.get(customer)


def _handler(arrivals: Arrivals) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            arrivals.heard(body)
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@contextlib.contextmanager
def sink(arrivals: Arrivals) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(arrivals))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hooks"
    finally:
        server.shutdown()
        server.server_close()


def playbook(path: Path, hook_url: str) -> Path:
    """The example playbook, the apology routed to the webhook and nothing held back."""
    text = resources.files("momently.playbooks").joinpath("example.yaml").read_text("utf-8")
    data: dict[str, Any] = yaml.safe_load(text)
    decide = data["decide"]
    decide["holdout"] = 0
    decide.pop("quiet_hours", None)
    decide["channels"].append(
        {
            "name": "hook",
            "kind": "webhook",
            "providers": [
                {
                    "name": "sink",
                    "type": "webhook",
                    "url": hook_url,
                    "secret_env": "HOOK_SECRET",
                    "timeout_s": 5,
                    "allow_private_targets": True,  # the sink listens on loopback
                }
            ],
        }
    )
    for offer in decide["offers"]:
        offer.pop("holdout", None)
        if offer["id"] == "sorry-voucher":
            offer.update(value=200, cost=0)
            offer["messages"] = {
                "hook": {"title": "Sorry", "body": "Sorry, {{ profile.user_id }}: 5 off."}
            }
    path.write_text(yaml.safe_dump(data, allow_unicode=True), "utf-8")
    return path


@contextlib.contextmanager
def serve(data_dir: Path, book: Path) -> Iterator[int]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOMENTLY_")}
    env["HOOK_SECRET"] = HOOK_SECRET
    command = [sys.executable, "-m", "momently.cli", "serve", "--port", str(port)]
    command += ["--data-dir", str(data_dir), "--write-key", WRITE_KEY, "--admin-key", ADMIN_KEY]
    command += ["--playbook", str(book)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"momently serve exited with {process.returncode}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=1):
                    break
            except (urllib.error.URLError, OSError):
                if time.monotonic() > deadline:
                    raise RuntimeError("momently serve did not start in 60 s") from None
                time.sleep(0.05)
        yield port
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _track(client: httpx.Client, user: str, event: str, at: datetime, **parts: Any) -> None:
    body = {"userId": user, "event": event, "timestamp": at.isoformat(), **parts}
    answer = client.post("/v1/track", json=body)
    if answer.status_code != 200:
        raise RuntimeError(f"ingest answered {answer.status_code}: {answer.text}")


def measure(port: int, arrivals: Arrivals, run: int, customers: int) -> tuple[list[float], ...]:
    """Per customer: (moment → webhook arrival, request → ingest ack), in milliseconds."""
    to_send: list[float] = []
    to_ack: list[float] = []
    missed = 0
    device = {"device": {"id": "", "type": "ios"}}
    url = f"http://127.0.0.1:{port}"
    with httpx.Client(base_url=url, auth=(WRITE_KEY, ""), timeout=30) as client:
        for index in range(customers):
            user = f"r{run}c{index}"
            device["device"]["id"] = f"{user}-phone"
            now = datetime.now(UTC)
            _track(client, user, "Application Opened", now - timedelta(minutes=1), context=device)
            started = time.perf_counter()
            _track(
                client, user, "Support Message", now, properties={"text": COMPLAINT}, context=device
            )
            acked = time.perf_counter()
            arrived = arrivals.wait(user, timeout_s=10)
            if arrived is None:
                missed += 1
                continue
            to_send.append((arrived - started) * 1000)
            to_ack.append((acked - started) * 1000)
    if missed:
        print(f"   run {run}: {missed} of {customers} complaints sent nothing within 10 s")
    return to_send, to_ack


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 runs of 50 customers")
    parser.add_argument("--runs", type=int)
    parser.add_argument("--customers", type=int)
    args = parser.parse_args(argv)
    runs = args.runs or (3 if args.quick else 5)
    customers = args.customers or (50 if args.quick else 200)
    arrivals = Arrivals()
    medians: list[tuple[float, float, float, float]] = []
    with tempfile.TemporaryDirectory() as tmp, sink(arrivals) as hook_url:
        book = playbook(Path(tmp) / "playbook.yaml", hook_url)
        with serve(Path(tmp) / "data", book) as port:
            measure(port, arrivals, -1, 5)  # warm up: imports, models, connections
            for run in range(runs):
                to_send, to_ack = measure(port, arrivals, run, customers)
                if not to_send:
                    print("   no message arrived: nothing measured")
                    return 1
                row = (
                    statistics.median(to_send),
                    p99(to_send),
                    statistics.median(to_ack),
                    p99(to_ack),
                )
                medians.append(row)
                print(
                    f"   run {run}: moment → send median {row[0]:.1f} ms, p99 {row[1]:.1f} ms; "
                    f"ingest ack median {row[2]:.1f} ms, p99 {row[3]:.1f} ms "
                    f"({len(to_send)} sends)"
                )
    send_median = statistics.median(r[0] for r in medians)
    send_p99 = statistics.median(r[1] for r in medians)
    ack_median = statistics.median(r[2] for r in medians)
    ack_p99 = statistics.median(r[3] for r in medians)
    print(
        f"   moment → send, medians of {runs} runs of {customers} customers: "
        f"median {send_median:.1f} ms, p99 {send_p99:.1f} ms"
    )
    print(
        f"   baseline, ingest ack alone: median {ack_median:.1f} ms, p99 {ack_p99:.1f} ms; "
        f"ratio {send_median / ack_median:.1f}× (median), {send_p99 / ack_p99:.1f}× (p99)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
