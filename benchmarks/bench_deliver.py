"""Delivery throughput: sends per second through the outbox, against sending directly.

Two loopback servers run in this process: an HTTP server answering 200 to
Standard Webhooks POSTs, and aiosmtpd accepting mail. For each:

* **direct** — the channel adapter's ``send`` called in a loop (the baseline:
  signing, HTTP or SMTP, nothing durable);
* **outbox sqlite FULL** — the same messages enqueued in the SQLite outbox
  (WAL, ``synchronous=FULL``: each write synced to disk before it returns, so
  it survives a power cut) and sent by ``run_once`` passes until drained, so
  every send is written, claimed, sent and marked — two fsyncs a send;
* **outbox sqlite NORMAL** — the same with ``synchronous=NORMAL`` (survives a
  process crash, not a power cut: the last commits may be lost);
* **outbox memory** — the same through the in-memory store (no durability);
* **one at a time** — enqueue one message and run one pass, per message:
  the latency from a send-now decision to the provider's acknowledgement.

Figures are medians of several runs; the ratios to the direct baseline,
measured in the same run, are what hold across machines.

Run ``python benchmarks/bench_deliver.py [--quick]``.
"""

from __future__ import annotations

import argparse
import base64
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from momently.clock import SystemClock
from momently.deliver.channels.smtp import SmtpChannel, SmtpSettings
from momently.deliver.channels.webhook import WebhookChannel, WebhookSettings
from momently.deliver.message import OutboundMessage, idempotency_key
from momently.deliver.outbox import Outbox
from momently.deliver.store_memory import MemoryOutboxStore
from momently.deliver.store_sqlite import SqliteOutboxStore
from momently.deliver.types import Channel, OutboxStore

SECRET = "whsec_" + base64.b64encode(b"b" * 32).decode()


class _Ok(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def webhook_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


class _Sink:
    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        return "250 OK"


@contextmanager
def smtp_server() -> Iterator[int]:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    controller = Controller(_Sink(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


def messages(n: int, run: int, channel: str) -> list[OutboundMessage]:
    return [
        OutboundMessage(
            key=idempotency_key(f"de-{run}-{i}", channel),
            decision_id=f"de-{run}-{i}",
            customer_id=f"c{i % 1000}",
            channel=channel,
            kind="email" if channel == "email" else "webhook",
            to=f"c{i % 1000}@example.com",
            subject="A toaster for five",
            text="Hi Ada,\n\nToasts four at once: https://t.example/t/c/token\n",
            html="<p>Hi Ada,</p><p>Toasts four at once.</p>",
            unsubscribe_url="https://t.example/t/u/token",
            data={"offer": "toaster", "moment_id": f"mo-{i}"},
        )
        for i in range(n)
    ]


def direct(channel: Channel, batch: list[OutboundMessage]) -> float:
    started = time.perf_counter()
    for message in batch:
        channel.send(message)
    return time.perf_counter() - started


def through(store: OutboxStore, channel: Channel, batch: list[OutboundMessage]) -> float:
    box = Outbox(store, SystemClock(), {batch[0].channel: [channel]}, batch=100)
    started = time.perf_counter()
    for message in batch:
        box.enqueue(message)
    while box.run_once().claimed:
        pass
    elapsed = time.perf_counter() - started
    assert store.counts()["sent"] >= len(batch), store.counts()
    return elapsed


def one_at_a_time(
    store: OutboxStore, channel: Channel, batch: list[OutboundMessage]
) -> list[float]:
    box = Outbox(store, SystemClock(), {batch[0].channel: [channel]})
    latencies = []
    for message in batch:
        started = time.perf_counter()
        box.enqueue(message)
        box.run_once()
        latencies.append(time.perf_counter() - started)
    return latencies


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def measure(
    name: str, make: Callable[[], Channel], channel: str, count: int, runs: int, tmp: Path
) -> None:
    rates: dict[str, list[float]] = {
        "direct": [], "sqlite FULL": [], "sqlite NORMAL": [], "memory": []
    }  # fmt: skip
    latency: list[float] = []
    base_latency: list[float] = []
    for run in range(runs):
        adapter = make()
        try:
            rates["direct"].append(count / direct(adapter, messages(count, run, channel)))
            base_latency.extend(_each(adapter, messages(count // 4, 100 + run, channel)))
            for offset, sync in ((200, "FULL"), (250, "NORMAL")):
                path = tmp / f"{name}-{run}-{sync}.db"
                with SqliteOutboxStore(path, synchronous=sync) as store:
                    batch = messages(count, offset + run, channel)
                    rates[f"sqlite {sync}"].append(count / through(store, adapter, batch))
            with MemoryOutboxStore() as memory:
                batch = messages(count, 300 + run, channel)
                rates["memory"].append(count / through(memory, adapter, batch))
            with SqliteOutboxStore(tmp / f"{name}-{run}-one.db") as store:
                batch = messages(count // 4, 400 + run, channel)
                latency.extend(one_at_a_time(store, adapter, batch))
        finally:
            adapter.close()
    base = statistics.median(rates["direct"])
    print(f"  {name}: {count:,} messages, medians of {runs} runs")
    for label, values in rates.items():
        rate = statistics.median(values)
        where = label if label == "direct" else f"outbox {label}"
        print(f"    {where:<22} {rate:9,.0f} sends/s   ratio to direct {rate / base:5.2f}×")
    ms = 1e3
    print(
        f"    one at a time (sqlite FULL): decision→acknowledged median "
        f"{statistics.median(latency) * ms:.2f} ms, p99 {p99(latency) * ms:.2f} ms; "
        f"direct send median {statistics.median(base_latency) * ms:.2f} ms, "
        f"p99 {p99(base_latency) * ms:.2f} ms"
    )


def _each(channel: Channel, batch: list[OutboundMessage]) -> list[float]:
    times = []
    for message in batch:
        started = time.perf_counter()
        channel.send(message)
        times.append(time.perf_counter() - started)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer messages and runs")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--count", type=int, default=2_000)
    args = parser.parse_args(argv)
    runs = 2 if args.quick else args.runs
    count = 300 if args.quick else args.count
    clock = SystemClock()
    print("delivery: sends per second through the outbox vs direct, loopback servers")
    with tempfile.TemporaryDirectory() as tmp, webhook_server() as url, smtp_server() as port:
        measure(
            "webhook",
            lambda: WebhookChannel(
                WebhookSettings(url=url, secret=SECRET, allow_private=True), clock
            ),
            "hook", count, runs, Path(tmp),
        )  # fmt: skip
        settings = SmtpSettings(
            host="127.0.0.1", port=port, from_addr="news@brand.example", starttls=False
        )
        measure("smtp", lambda: SmtpChannel(settings, clock), "email", count, runs, Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
