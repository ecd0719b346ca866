"""Distributed mode: throughput and event-to-decision latency with 1 and 2 workers.

A nats-server with JetStream runs on loopback; workers are separate processes
(``Worker`` with the production loop, SQLite stores per partition with
``synchronous=NORMAL``). Each run:

* **burst** — the workers own their partitions, then every event is published
  at once (async publish, acks gathered per batch of 500). Throughput is
  events over the time from the first publish to the last commit; the
  partition lag is the largest count of messages a worker saw still waiting in
  one partition, and the drain time is how long the burst took to clear;
* **paced** — events at a fixed rate well under capacity; the latency of an
  event is from its publish acknowledgement to the commit of the batch that
  applied it (moments and decisions commit in that same step), p50 and p99.

Medians of the runs; the ratio of 2 workers to 1 is what holds across
machines. On a machine with fewer free cores than workers, 2 workers cannot
be faster than 1: the ratio says how much was free.

``--ingest`` measures only the ingest node (``momently serve --log nats://…``,
no workers): ``/v1/batch`` end to end with bench_ingest's client and bodies,
interleaved with the embedded ``momently serve`` as the baseline; events/s,
batch p50/p99, server and nats-server CPU per event, and the ingest processes
350,000 events/s would take at that rate.

Run ``python benchmarks/bench_distributed.py [--quick] [--ingest]``; needs ``nats-server``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bench_ingest as bi
from momently.distributed.log import EventLog, LogSettings
from momently.events import Event, from_ms

PARTITIONS = 16


def make_events(customers: int, per_customer: int, start_ms: int, seed: int) -> list[Event]:
    """Shoppers opening the app, searching, viewing, adding to cart, some complaining."""
    rng = random.Random(seed)
    steps = [
        ("Application Opened", {}),
        ("Products Searched", {"properties": {"query": "best toaster price"}}),
        ("Product Viewed", {"properties": {"product_id": "sku-1", "price": 40}}),
        ("Product Added", {"properties": {"product_id": "sku-1", "price": 40}}),
        ("Support Message", {"properties": {"text": "this is terrible, my order is late!"}}),
    ]
    out = []
    for c in range(customers):
        at = start_ms + rng.randrange(0, 60_000)
        for i in range(per_customer):
            name, fields = steps[i % len(steps)]
            at += rng.randrange(1_000, 30_000)
            out.append(
                Event(
                    message_id=f"b{seed}-{c}-{i}",
                    type="track",
                    timestamp=from_ms(at),
                    received_at=from_ms(at),
                    user_id=f"user-{c}",
                    event=name,
                    traits={"email": f"user-{c}@example.com"} if i == 0 else {},
                    **fields,  # type: ignore[arg-type]
                )
            )
    out.sort(key=lambda e: (e.timestamp_ms, e.message_id))
    return out


# -- the worker process ------------------------------------------------------------------


def child(args: argparse.Namespace) -> int:
    """One worker: applies its partitions and appends ``msgid ns lag`` lines to --out."""
    from momently.clock import SystemClock
    from momently.distributed.worker import Worker, WorkerSettings
    from momently.moments.detector import MomentDetector
    from momently.moments.playbook import load_playbook

    out = open(args.out, "a", buffering=1)  # noqa: SIM115 - closed at exit
    stop = asyncio.Event()

    def applied(partition: int, batch: list[tuple[int, Event]], pending: int) -> None:
        now = time.time_ns()
        out.write("".join(f"{e.message_id} {now} {pending}\n" for _, e in batch))

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        settings = WorkerSettings(
            log=LogSettings.from_url(args.log),
            store_url=f"sqlite:///{args.dir}/p{{partition}}.db?synchronous=NORMAL",
            moments_url=f"sqlite:///{args.dir}/m{{partition}}.db?synchronous=NORMAL",
            partitions=tuple(int(p) for p in args.partitions.split(",")),
            owner=args.owner,
            batch=500,
            fetch_wait_s=0.05,
        )
        worker = Worker(
            settings, MomentDetector(load_playbook()), SystemClock(), on_applied=applied
        )
        await worker.start()
        await worker.balance()
        out.write(f"READY {len(worker.shards)}\n")
        await worker.run(stop)
        await worker.stop()

    asyncio.run(main())
    out.close()
    return 0


# -- the parent ------------------------------------------------------------------------


class Run:
    """A fresh stream and the worker processes of one measurement."""

    def __init__(self, server: str, workers: int, root: Path, tag: str) -> None:
        self.url = f"nats://{server}?stream=B{tag}&partitions={PARTITIONS}"
        self.dir = root / tag
        self.dir.mkdir()
        self.outs = [self.dir / f"w{i}.txt" for i in range(workers)]
        shares = [
            ",".join(str(p) for p in range(PARTITIONS) if p % workers == i) for i in range(workers)
        ]
        self.procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "child",
                    "--log",
                    self.url,
                    "--dir",
                    str(self.dir),
                    "--partitions",
                    share,
                    "--owner",
                    f"w{i}",
                    "--out",
                    str(out),
                ],
                stdout=subprocess.DEVNULL,
            )  # fmt: skip
            for i, (share, out) in enumerate(zip(shares, self.outs, strict=True))
        ]

    def lines(self) -> list[str]:
        found: list[str] = []
        for out in self.outs:
            if out.exists():
                found.extend(out.read_text().splitlines())
        return found

    def wait_ready(self, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while sum(1 for line in self.lines() if line.startswith("READY")) < len(self.procs):
            if time.monotonic() > deadline or any(p.poll() is not None for p in self.procs):
                raise RuntimeError("workers did not start")
            time.sleep(0.05)

    def wait_applied(self, n: int, timeout_s: float = 600) -> dict[str, tuple[int, int]]:
        deadline = time.monotonic() + timeout_s
        while True:
            done = {}
            for line in self.lines():
                if not line.startswith("READY"):
                    mid, ns, lag = line.split()
                    done[mid] = (int(ns), int(lag))
            if len(done) >= n:
                return done
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(done)} of {n} events applied")
            time.sleep(0.05)

    def close(self) -> None:
        for proc in self.procs:
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


async def publish(url: str, events: list[Event], rate: float | None) -> dict[str, int]:
    """Publish in batches of 500 (or paced at ``rate`` events/s); ack time per event."""
    log = await EventLog.open(LogSettings.from_url(url))
    acked: dict[str, int] = {}
    size = 500 if rate is None else max(1, int(rate / 100))
    started = time.perf_counter()
    for i in range(0, len(events), size):
        part = events[i : i + size]
        if rate is not None:
            delay = started + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        await log.write(part)
        now = time.time_ns()
        for e in part:
            acked[e.message_id] = now
    await log.close()
    return acked


def measure(server: str, workers: int, root: Path, tag: str, events: list[Event],
            paced: list[Event], rate: float) -> dict[str, float]:  # fmt: skip
    run = Run(server, workers, root, tag)
    try:
        run.wait_ready()
        first = time.time_ns()
        asyncio.run(publish(run.url, events, None))
        done = run.wait_applied(len(events))
        last = max(ns for ns, _ in done.values())
        burst = {
            "throughput": len(events) / ((last - first) / 1e9),
            "drain_s": (last - first) / 1e9,
            "max_lag": max(lag for _, lag in done.values()),
        }
        acked = asyncio.run(publish(run.url, paced, rate))
        done = run.wait_applied(len(events) + len(paced))
        latencies = sorted((done[m][0] - t) / 1e6 for m, t in acked.items())
        burst["p50_ms"] = statistics.median(latencies)
        burst["p99_ms"] = latencies[int(0.99 * (len(latencies) - 1))]
        return burst
    finally:
        run.close()


@contextlib.contextmanager
def nats_server(nats: str, root: Path) -> Iterator[tuple[int, int]]:
    """A JetStream nats-server on a free loopback port, storing under ``root``;
    yields its port and pid."""
    port = bi.free_port()
    server = subprocess.Popen(
        [nats, "-js", "-sd", str(root / "nats"), "-p", str(port), "-a", "127.0.0.1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:  # readiness: poll until it accepts a connection, or say why not
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"nats-server did not start on port {port}") from None
                time.sleep(0.05)
        yield port, server.pid
    finally:
        server.terminate()
        server.wait()


def embedded(events: list[Event], root: Path, tag: str) -> float:
    """The baseline: the embedded engine and stage in this process, events/s."""
    from momently.clock import SystemClock
    from momently.engine import Engine
    from momently.moments.detector import MomentDetector
    from momently.moments.playbook import load_playbook
    from momently.runtime.stage import MomentStage
    from momently.store.moments_sqlite import SqliteMomentStore
    from momently.store.sqlite import SqliteStore

    store = SqliteStore(root / f"{tag}.db", synchronous="NORMAL")
    moments = SqliteMomentStore(root / f"{tag}-m.db", synchronous="NORMAL")
    stage = MomentStage(store, moments, MomentDetector(load_playbook()), SystemClock())
    engine = Engine(store)
    started = time.perf_counter()
    for i in range(0, len(events), 500):
        engine.ingest(events[i : i + 500])
        stage.catch_up()
    seconds = time.perf_counter() - started
    moments.close()
    store.close()
    return len(events) / seconds


TARGET_EVENTS_PER_S = 350_000  # the scaling model's target (README, Distributed mode)


def ingest(nats: str, quick: bool, runs: int | None, connections: int) -> dict[str, Any]:
    """``--ingest``: ``/v1/batch`` end to end against an ingest node (``momently serve
    --log nats://…``, no workers) and against the embedded server, interleaved runs.

    bench_ingest's client, bodies and CPU accounting: every batch is 100 mobile
    events, counted once answered 200 — by the node only after JetStream stored
    every event of it. Each embedded run waits for its moment stage to catch up,
    so its stage's CPU does not fall on the next node run."""
    runs = runs or (3 if quick else 5)
    batches = 100 if quick else 400  # per run and server: 10,000 or 40,000 events
    node: list[Any] = []
    base: list[Any] = []
    nats_us: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        with (
            nats_server(nats, root) as (port, nats_pid),
            bi.serve(root / "embedded") as (e_port, e_pid),
            bi.serve(
                root / "node",
                ["--log", f"nats://127.0.0.1:{port}?stream=INGEST&partitions=64"],
            ) as (n_port, n_pid),
        ):
            warm = bi.Bodies("warm")
            bi.end_to_end(e_port, [warm() for _ in range(30)], connections)
            bi.end_to_end(n_port, [warm() for _ in range(30)], connections)
            logged = 30 * bi.BATCH_SIZE
            bi.stage_caught_up(e_port, logged)
            for r in range(runs):
                supply = bi.Bodies(f"e{r:03d}")
                base.append(bi.end_to_end(e_port, [supply() for _ in range(batches)],
                                          connections, e_pid))  # fmt: skip
                logged += batches * bi.BATCH_SIZE
                bi.stage_caught_up(e_port, logged)
                supply = bi.Bodies(f"n{r:03d}")
                bodies = [supply() for _ in range(batches)]
                before = sum(bi.thread_cpu(nats_pid).values())
                node.append(bi.end_to_end(n_port, bodies, connections, n_pid))
                after = sum(bi.thread_cpu(nats_pid).values())
                nats_us.append((after - before) / (batches * bi.BATCH_SIZE) * 1e6)
    median = statistics.median
    rate = median(r.events_per_s for r in node)
    server_us = {part: median(r.server_us[part] for r in node) for part in node[0].server_us}
    base_us = {part: median(r.server_us[part] for r in base) for part in base[0].server_us}
    cpu_us = sum(server_us.values())
    embedded_rate = median(r.events_per_s for r in base)
    figures: dict[str, Any] = {
        "node_runs": [r.events_per_s for r in node],
        "node": rate,
        "node_p50_ms": median(r.p50_ms for r in node),
        "node_p99_ms": median(r.p99_ms for r in node),
        "node_cpu_us": server_us,
        "nats_cpu_us": median(nats_us),
        "embedded_runs": [r.events_per_s for r in base],
        "embedded": embedded_rate,
        "embedded_p50_ms": median(r.p50_ms for r in base),
        "embedded_p99_ms": median(r.p99_ms for r in base),
        "embedded_cpu_us": base_us,
        "ratio": rate / embedded_rate,
        "processes": TARGET_EVENTS_PER_S / rate,
        "cores": TARGET_EVENTS_PER_S * cpu_us / 1e6 if cpu_us else None,
    }
    events = batches * bi.BATCH_SIZE
    print(f"ingest node: {events:,} events a run in batches of {bi.BATCH_SIZE}, {runs} runs,")
    print(f"  {connections} connections, {os.cpu_count()} CPUs, load client on the same machine")

    def line(name: str, key: str, us: dict[str, float]) -> None:
        runs_text = ", ".join(f"{v:,.0f}" for v in figures[f"{key}_runs"])
        print(f"  {name}: median {figures[key]:,.0f} events/s ({runs_text})")
        print(f"    batch latency p50 {figures[f'{key}_p50_ms']:.1f} ms,"
              f" p99 {figures[f'{key}_p99_ms']:.1f} ms")  # fmt: skip
        if us:
            parts = ", ".join(f"{part} {v:.0f}" for part, v in us.items())
            print(f"    server CPU per event: {sum(us.values()):.0f} us ({parts})")

    line("embedded momently serve (baseline, synchronous=FULL)", "embedded", base_us)
    line("ingest node, serve --log nats:// (200 once JetStream stored)", "node", server_us)
    print(f"    nats-server CPU per event: {figures['nats_cpu_us']:.0f} us")
    print(f"  ingest node / embedded: {figures['ratio']:.2f}x")
    print(f"  for {TARGET_EVENTS_PER_S:,} events/s: {figures['processes']:.0f} ingest processes"
          " at this rate" + (f", {figures['cores']:.0f} cores at this CPU per event"
                             if figures["cores"] else ""))  # fmt: skip
    return figures


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] == "child":
        parser = argparse.ArgumentParser()
        for flag in ("--log", "--dir", "--partitions", "--owner", "--out"):
            parser.add_argument(flag, required=True)
        return child(parser.parse_args(args[1:]))
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", help="write the figures here too")
    parser.add_argument(
        "--ingest",
        action="store_true",
        help="only the ingest node's /v1/batch rate, against the embedded server's",
    )
    parser.add_argument("--runs", type=int, help="--ingest: runs (default 5, quick 3)")
    parser.add_argument("--connections", type=int, default=8, help="--ingest: client connections")
    opts, _ = parser.parse_known_args(args)
    nats = shutil.which("nats-server")
    if nats is None:
        print("nats-server is not installed (make system); skipped")
        return 1
    if opts.ingest:
        result = ingest(nats, opts.quick, opts.runs, opts.connections)
        if opts.json:
            Path(opts.json).write_text(json.dumps(result, indent=2))
        return 0
    customers, per, runs, rate = (400, 10, 1, 300.0) if opts.quick else (2_000, 10, 3, 500.0)
    now = time.time_ns() // 1_000_000
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        with nats_server(nats, root) as (port, _):
            figures: dict[int, list[dict[str, float]]] = {1: [], 2: []}
            baseline: list[float] = []
            for r in range(runs):
                baseline.append(
                    embedded(make_events(customers, per, now - 600_000, seed=r), root, f"e{r}")
                )
                for workers in (1, 2):
                    burst = make_events(customers, per, now - 600_000, seed=r * 10 + workers)
                    paced = make_events(
                        int(rate * 3 / per), per, now - 600_000, seed=1000 + r * 10 + workers
                    )
                    figures[workers].append(
                        measure(f"127.0.0.1:{port}", workers, root, f"{r}w{workers}",
                                burst, paced, rate)
                    )  # fmt: skip
    n = customers * per
    print(f"{n:,} events a burst, {PARTITIONS} partitions, {os.cpu_count()} CPUs, {runs} runs")
    med: dict[int, dict[str, float]] = {
        w: {k: statistics.median(f[k] for f in figures[w]) for k in figures[w][0]} for w in (1, 2)
    }
    base = statistics.median(baseline)
    print(f"  embedded engine + stage, one process (baseline): {base:,.0f} events/s")
    for w in (1, 2):
        m = med[w]
        print(
            f"  {w} worker{'s' if w > 1 else ' '}  burst {m['throughput']:>8,.0f} events/s"
            f"  (drained in {m['drain_s']:.1f} s, max partition lag {m['max_lag']:,.0f})"
            f"  paced {rate:.0f}/s: p50 {m['p50_ms']:.0f} ms, p99 {m['p99_ms']:.0f} ms"
        )
    ratio = med[2]["throughput"] / med[1]["throughput"]
    print(f"  1 worker / embedded: {med[1]['throughput'] / base:.2f}x")
    print(f"  2 workers / 1 worker throughput: {ratio:.2f}x")
    if opts.json:
        Path(opts.json).write_text(
            json.dumps({"median": med, "ratio": ratio, "embedded": base}, indent=2)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
