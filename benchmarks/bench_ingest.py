"""Ingestion throughput: end to end through ``/v1/batch``, and the in-process limit.

Two figures, measured in the same run on the same events:

* **end to end** — a real ``momently serve`` subprocess (default durable
  settings: SQLite WAL, ``synchronous=FULL``) on a free loopback port, fed by a
  lean asyncio client over several keep-alive connections. Every batch is
  100 typical mobile events (~600 bytes each); a batch counts only once the
  server has answered 200, which it does after the commit that made it durable.
* **parse and append** — the same request bodies pushed through the same code
  without HTTP: ``decode_batch`` + ``decode_message`` + ``normalise`` +
  ``Engine.ingest_groups`` into a :class:`SqliteStore` (``synchronous=FULL``),
  one batch of 100 per call, in one thread.

Beside the rates it prints where the CPU went, in microseconds per event,
since CPU time holds up on a shared machine where wall time does not: the
server's event loop (HTTP, decoding, validation), its writer thread (identity,
profiles, encoding, SQLite) and its other threads (the moment stage that
follows the log, delivery), read from ``/proc`` on Linux; and in process the
decode-and-validate and the append halves apart.

The client is deliberately thin (pre-encoded bodies, raw HTTP/1.1 on asyncio
streams): it shares the machine's cores with the server, and a heavy client
would measure itself.

Run ``python benchmarks/bench_ingest.py [--quick]`` or ``python benchmarks/run.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from momently.clock import SystemClock
from momently.engine import Engine
from momently.events import decode_batch, normalise_batch
from momently.store.sqlite import SqliteStore

WRITE_KEY = "bench-write-key"
ADMIN_KEY = "bench-admin-key"
BATCH_SIZE = 100
RUDDERSTACK_2_CORES = 1_700  # events/s, RudderStack's published figure for 2 cores
TARGET_EVENTS_PER_S = 20_000
TARGET_RATIO = 1 / 3
# Fixed-width placeholders in the batch templates, replaced per batch so every
# batch carries fresh messageIds without re-encoding JSON on the client.
_BATCH_TOKEN = b"BBBBBBBBBBBB"
_DEVICE_TOKEN = b"DDDDDDDDDDDD"

_SCREENS = ["Home", "Search", "Product Detail", "Cart", "Checkout", "Account", "Store Locator"]
_PRODUCTS = [
    ("sku-1041", "4-Slot Toaster", "Kitchen", 49.99),
    ("sku-2203", "Espresso Machine", "Kitchen", 329.0),
    ("sku-3310", "Running Shoes", "Sport", 89.5),
    ("sku-4477", "Rain Jacket", "Outdoor", 120.0),
    ("sku-5120", "Wireless Earbuds", "Audio", 79.0),
]
_QUERIES = ["best 4 slot toaster", "waterproof jacket", "earbuds noise cancelling", "pizza near me"]


def _track(rng: random.Random, index: int, moment_ms: int) -> dict[str, Any]:
    """One message as analytics-kotlin / analytics-swift send it (~600 bytes)."""
    sku, product, category, price = rng.choice(_PRODUCTS)
    choice = rng.random()
    name: str
    properties: dict[str, Any]
    if choice < 0.35:
        name = "Product Viewed"
        properties = {
            "product_id": sku,
            "name": product,
            "category": category,
            "price": price,
            "currency": "EUR",
            "position": rng.randint(1, 20),
        }
    elif choice < 0.55:
        name = "Products Searched"
        properties = {"query": rng.choice(_QUERIES), "results": rng.randint(0, 60)}
    elif choice < 0.7:
        name = "Product Added"
        properties = {"product_id": sku, "name": product, "price": price, "quantity": 1}
    elif choice < 0.9:
        name = "Screen Viewed"
        properties = {"screen": rng.choice(_SCREENS), "previous": rng.choice(_SCREENS)}
    else:
        name = "Application Opened"
        properties = {"from_background": rng.random() < 0.7, "build": "412", "version": "4.12.0"}
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(moment_ms / 1000))
    return {
        "type": "track",
        "event": name,
        "messageId": f"{_BATCH_TOKEN.decode()}-{index:03d}-{rng.getrandbits(32):08x}",
        "anonymousId": f"anon-{_DEVICE_TOKEN.decode()}",
        "userId": f"user-{_DEVICE_TOKEN.decode()}",
        "timestamp": f"{stamp}.{moment_ms % 1000:03d}Z",
        "properties": properties,
        "context": {
            "app": {"name": "Shop", "version": "4.12.0", "build": "412"},
            "device": {
                "id": f"dev-{_DEVICE_TOKEN.decode()}",
                "manufacturer": "Google",
                "model": "Pixel 8",
                "type": "android",
            },
            "os": {"name": "Android", "version": "14"},
            "network": {"wifi": True, "cellular": False},
            "screen": {"width": 1080, "height": 2400, "density": 2.625},
            "locale": "en-GB",
            "timezone": "Europe/London",
            "library": {"name": "analytics-kotlin", "version": "1.16.3"},
        },
    }


def batch_templates(count: int, seed: int = 7) -> list[bytes]:
    """``count`` distinct batch bodies with placeholders for the batch and the device."""
    rng = random.Random(seed)
    base_ms = 1_790_000_000_000
    templates = []
    for _ in range(count):
        moment = base_ms + rng.randint(0, 86_400_000)
        batch = [_track(rng, i, moment + i * 1500) for i in range(BATCH_SIZE)]
        sent = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime((moment + 200_000) / 1000))
        body = {"batch": batch, "sentAt": f"{sent}.000Z", "writeKey": WRITE_KEY}
        templates.append(msgspec.json.encode(body))
    return templates


class Bodies:
    """An endless supply of unique batch bodies: fresh messageIds, devices from a population."""

    def __init__(self, run: str, *, templates: int = 64, devices: int = 20_000) -> None:
        if len(run) > 4:
            raise ValueError("run tags are at most 4 characters")
        self._templates = batch_templates(templates)
        self._rng = random.Random(run)
        self._devices = devices
        self._run = run
        self._next = 0

    def __call__(self) -> bytes:
        number = self._next
        self._next += 1
        body = self._templates[number % len(self._templates)]
        batch_id = f"{self._run:>4}{number:08d}".encode()
        device = f"{self._rng.randrange(self._devices):012d}".encode()
        return body.replace(_BATCH_TOKEN, batch_id).replace(_DEVICE_TOKEN, device)


# --------------------------------------------------------------------------- in process


@dataclass(frozen=True)
class Limit:
    """The parse-and-append rate, and the CPU each half took per event."""

    events_per_s: float
    parse_us: float  # decode + validate + normalise
    append_us: float  # Engine.ingest_groups: identity, profiles, encoding, SQLite


def parse_and_append(bodies: list[bytes], data_dir: Path) -> Limit:
    """Events/s of decode + validate + ingest, one batch (one commit) at a time, no HTTP."""
    store = SqliteStore(data_dir / "momently.db", synchronous="FULL")
    engine = Engine(store)
    clock = SystemClock()
    source = "wk_bench"
    parse_cpu = append_cpu = 0.0
    try:
        started = time.perf_counter()
        for data in bodies:
            cpu = time.thread_time()
            received_ms = clock.now_ms()
            envelope = decode_batch(data)
            events, errors = normalise_batch(
                envelope, received_ms=received_ms, source=source, ip="127.0.0.1"
            )
            if errors:
                raise RuntimeError(f"benchmark batch has invalid messages: {errors[0]}")
            parsed = time.thread_time()
            result = engine.ingest_groups([events])[0]
            appended = time.thread_time()
            parse_cpu += parsed - cpu
            append_cpu += appended - parsed
            if result.accepted != len(events):
                raise RuntimeError(f"expected {len(events)} new events, stored {result.accepted}")
        elapsed = time.perf_counter() - started
    finally:
        store.close()
    count = len(bodies) * BATCH_SIZE
    return Limit(count / elapsed, parse_cpu / count * 1e6, append_cpu / count * 1e6)


# --------------------------------------------------------------------------- server CPU

WRITER_THREAD = "momently-writer"  # the name the writer gives its thread in the OS
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds of a Linux process so far by part: its main thread (the event loop),
    the writer, and the rest; empty where ``/proc`` is not there."""
    parts = {"event loop": 0.0, "writer": 0.0, "other threads": 0.0, "parse workers": 0.0}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return {}
    children: list[str] = []
    for tid in tids:
        try:
            name = Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
            fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rpartition(")")[2].split()
            children += Path(f"/proc/{pid}/task/{tid}/children").read_text().split()
        except OSError:
            continue  # the thread ended meanwhile
        seconds = (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS  # utime + stime
        if tid == str(pid):
            parts["event loop"] += seconds
        elif name == WRITER_THREAD:
            parts["writer"] += seconds
        else:
            parts["other threads"] += seconds
    for child in children:  # the parse pool's worker processes (momently.ingest.parsepool)
        try:
            fields = Path(f"/proc/{child}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        parts["parse workers"] += (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS
    return parts


# --------------------------------------------------------------------------- end to end


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def serve(data_dir: Path, extra: Sequence[str] = ()) -> Iterator[tuple[int, int]]:
    """A ``momently serve`` subprocess with its default settings and ``extra`` flags
    (``--log nats://…``: an ingest node of distributed mode); yields its port and pid."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOMENTLY_")}
    command = [sys.executable, "-m", "momently.cli", "serve", "--port", str(port)]
    command += ["--data-dir", str(data_dir), "--write-key", WRITE_KEY, "--admin-key", ADMIN_KEY]
    command += extra
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
        yield port, process.pid
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


_AUTH = base64.b64encode(f"{WRITE_KEY}:".encode()).decode()


async def _connection(
    port: int, next_body: Callable[[], bytes | None], latencies: list[float]
) -> int:
    """Send batches one after another on one keep-alive connection; returns events acked."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = (
        "POST /v1/batch HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Authorization: Basic {_AUTH}\r\nContent-Length: "
    ).encode()
    acked = 0
    try:
        while (body := next_body()) is not None:
            sent = time.perf_counter()
            writer.write(head + str(len(body)).encode() + b"\r\n\r\n" + body)
            status_line = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            answer = await reader.readexactly(length)
            if not status_line.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"server answered {status_line!r}: {answer[:300]!r}")
            latencies.append(time.perf_counter() - sent)
            acked += BATCH_SIZE
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return acked


@dataclass(frozen=True)
class EndToEnd:
    events_per_s: float
    p50_ms: float
    p99_ms: float
    server_us: dict[str, float]  # server CPU per event by part (empty off Linux)
    client_us: float  # the load client's own CPU per event


def end_to_end(port: int, bodies: list[bytes], connections: int, pid: int = 0) -> EndToEnd:
    """Events/s acknowledged by the server for ``bodies`` sent over ``connections``."""
    queue = iter(bodies)
    latencies: list[float] = []

    def next_body() -> bytes | None:
        return next(queue, None)

    async def main() -> int:
        tasks = [_connection(port, next_body, latencies) for _ in range(connections)]
        return sum(await asyncio.gather(*tasks))

    server_before = thread_cpu(pid) if pid else {}
    client_before = time.process_time()
    started = time.perf_counter()
    acked = asyncio.run(main())
    elapsed = time.perf_counter() - started
    client = time.process_time() - client_before
    server_after = thread_cpu(pid) if pid else {}
    if acked != len(bodies) * BATCH_SIZE:
        raise RuntimeError(f"sent {len(bodies) * BATCH_SIZE} events, {acked} acknowledged")
    latencies.sort()
    return EndToEnd(
        acked / elapsed,
        latencies[len(latencies) // 2] * 1000,
        latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
        {
            part: (server_after[part] - before) / acked * 1e6
            for part, before in server_before.items()
            if part in server_after
        },
        client / acked * 1e6,
    )


def stage_position(port: int) -> int:
    """The last log seq the server's moment stage has committed (its metrics gauge)."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/metrics", headers={"Authorization": f"Bearer {ADMIN_KEY}"}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        for line in answer.read().decode().splitlines():
            if line.startswith("momently_moment_stage_position "):
                return int(float(line.split()[1]))
    raise RuntimeError("the server's metrics have no moment stage position")


def stage_caught_up(port: int, logged: int, timeout: float = 300.0) -> float:
    """Seconds until the moment stage has worked through the first ``logged`` log records
    (it gives way to ingestion under load and catches up after)."""
    started = time.perf_counter()
    while stage_position(port) < logged:
        if time.perf_counter() - started > timeout:
            raise RuntimeError(f"the moment stage did not catch up in {timeout:.0f} s")
        time.sleep(0.1)
    return time.perf_counter() - started


# --------------------------------------------------------------------------- report


@dataclass(frozen=True)
class Report:
    end_to_end: list[float]
    limit: list[float]
    p50_ms: float
    p99_ms: float
    event_bytes: float
    server_us: dict[str, float]  # medians over the runs, CPU µs per event
    client_us: float
    stage_us: float  # the moment stage's CPU per event, catching up included
    catch_up_s: float  # how long after the last acknowledgement the stage caught up
    parse_us: float
    append_us: float

    @property
    def e2e_median(self) -> float:
        return statistics.median(self.end_to_end)

    @property
    def limit_median(self) -> float:
        return statistics.median(self.limit)

    @property
    def met(self) -> bool:
        return (
            self.e2e_median >= TARGET_EVENTS_PER_S
            and self.e2e_median >= TARGET_RATIO * self.limit_median
        )


def run(*, quick: bool = False, runs: int | None = None, connections: int = 8) -> Report:
    """Measure both figures ``runs`` times, interleaved so that drift in a noisy
    machine's speed falls on both alike, and return the report."""
    runs = runs or (3 if quick else 5)
    batches = 100 if quick else 400  # per run and figure: 10,000 or 40,000 events
    tags = iter(f"r{i:03d}" for i in range(1000))
    e2e: list[EndToEnd] = []
    limits: list[Limit] = []
    catch_ups: list[float] = []
    stage_us: list[float] = []
    work = Path(tempfile.mkdtemp(prefix="momently-bench-"))
    try:
        warm = Bodies(next(tags))
        sample = warm()
        with serve(work / "server") as (port, pid):
            end_to_end(port, [warm() for _ in range(30)], connections)  # warm-up
            logged = 30 * BATCH_SIZE
            stage_caught_up(port, logged)
            for number in range(runs):
                supply = Bodies(next(tags))
                bodies = [supply() for _ in range(batches)]
                before = thread_cpu(pid)
                e2e.append(end_to_end(port, bodies, connections, pid))
                # The moment stage gives way to ingestion and catches up after: its
                # whole cost is counted, and the in-process run starts on a quiet server.
                logged += batches * BATCH_SIZE
                catch_ups.append(stage_caught_up(port, logged))
                if before:
                    stage_cpu = thread_cpu(pid)["other threads"] - before["other threads"]
                    stage_us.append(stage_cpu / (batches * BATCH_SIZE) * 1e6)
                supply = Bodies(next(tags))
                bodies = [supply() for _ in range(batches)]
                limits.append(parse_and_append(bodies, work / f"inproc{number}"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    median = statistics.median
    return Report(
        [r.events_per_s for r in e2e],
        [r.events_per_s for r in limits],
        median(r.p50_ms for r in e2e),
        median(r.p99_ms for r in e2e),
        len(sample) / 100,
        {part: median(r.server_us[part] for r in e2e) for part in e2e[0].server_us},
        median(r.client_us for r in e2e),
        median(stage_us) if stage_us else 0.0,
        median(catch_ups),
        median(r.parse_us for r in limits),
        median(r.append_us for r in limits),
    )


def print_report(report: Report, connections: int) -> None:
    def figures(values: list[float]) -> str:
        return ", ".join(f"{v:,.0f}" for v in values)

    ratio = report.e2e_median / report.limit_median
    cores = os.cpu_count()
    python = ".".join(map(str, sys.version_info[:3]))
    print(f"ingest: batches of {BATCH_SIZE} mobile track events, ~{report.event_bytes:.0f} B each")
    print(f"  machine: {cores} cores, Python {python}")
    print(f"  end to end /v1/batch ({connections} connections, synchronous=FULL, 200 once durable)")
    print(f"    runs: {figures(report.end_to_end)} events/s")
    print(f"    median: {report.e2e_median:,.0f} events/s", end="")
    print(f"  (batch latency p50 {report.p50_ms:.1f} ms, p99 {report.p99_ms:.1f} ms)")
    if report.server_us:
        parts = ", ".join(f"{part} {us:.0f}" for part, us in report.server_us.items())
        total = sum(report.server_us.values())
        print(
            f"    server CPU per event: {total:.0f} us ({parts}); client {report.client_us:.0f} us"
        )
        print(
            f"    moment stage: {report.stage_us:.0f} us per event in all, caught up with the log"
            f" {report.catch_up_s:.1f} s after the last acknowledgement"
        )
    print("  parse and append in process (decode + validate + Engine.ingest_groups, no HTTP)")
    print(f"    runs: {figures(report.limit)} events/s")
    print(f"    median: {report.limit_median:,.0f} events/s", end="")
    print(f"  (CPU per event: parse {report.parse_us:.0f} us, append {report.append_us:.0f} us)")
    print(f"  end to end / parse and append: {ratio:.2f} (target >= {TARGET_RATIO:.2f})")
    print(
        f"  end to end / RudderStack's published {RUDDERSTACK_2_CORES:,} events/s on 2 cores: "
        f"{report.e2e_median / RUDDERSTACK_2_CORES:.1f}x"
    )
    print(
        f"  targets (>= {TARGET_EVENTS_PER_S:,} events/s end to end, ratio >= {TARGET_RATIO:.2f}): "
        + ("met" if report.met else "MISSED")
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Ingestion throughput, end to end and in process")
    parser.add_argument("--quick", action="store_true", help="3 shorter runs instead of 5")
    parser.add_argument("--runs", type=int, help="runs of each measurement (default 5, quick 3)")
    parser.add_argument("--connections", type=int, default=8, help="client connections")
    args = parser.parse_args(argv)
    report = run(quick=args.quick, runs=args.runs, connections=args.connections)
    print_report(report, args.connections)
    return 0


if __name__ == "__main__":
    sys.exit(main())
