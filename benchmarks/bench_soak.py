"""Soak and crash cycle: a real ``momently serve`` on loopback under a steady event rate.

* **soak** (default): ``--minutes`` (30) at ``--rate`` events a second (2,000),
  open-loop, over ``--population`` returning customers (1,000) and a new complaining
  customer every 40 batches. First a **warm-up** (``--warm-up`` product views per
  customer, 300) brings the customers' state to its steady size: the views are sent
  as fast as the server takes them, stamped at the soak's own pace over the time just
  before it starts, so each customer's windows (at most 256 items, up to 24 h long)
  are already as full as the steady rate keeps them, and the timed phase measures a
  server in its steady state, not one whose windows are still filling (without it
  memory rises for as long as the longest window, then stops: see the README). The
  stage reads the whole warm-up before the clock starts. Every minute the server's
  resident memory (from /proc), the p99 of the batch answers' latency and the server's
  CPU time per event (which other jobs on the machine do not change, where they do the
  latency); at the end memory, p99 and CPU per event at start and end, and their
  slopes (least squares over the minutes after the first).
  Afterwards every acknowledged event is checked in the log, exactly once.
* **crash cycle** (``--crash-cycles N``): the same load, and every few seconds
  (``--cycle-seconds``, varied by a seeded draw) the server is killed with SIGKILL
  and restarted on the same data directory. Afterwards: every acknowledged
  messageId stored exactly once, every unanswered batch whole or absent, and no
  customer sent the apology webhook twice (a send repeated with its own
  idempotency key after a crash is counted apart: the receiver dedupes it).

The load and the checks are in ``tests/soak.py``, shared with the bounded pytest
version ``tests/test_crash_cycles.py``.

Run ``python benchmarks/run.py soak [--minutes M] [--rate R] [--crash-cycles N]``,
or ``python benchmarks/bench_soak.py ...``; ``--quick`` is one minute, or 3 cycles.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # the harness lives beside the tests

from tests.conftest import WRITE_KEY  # noqa: E402
from tests.deliver.servers import http_server  # noqa: E402
from tests.soak import Load, Serve, check, make_batch, p99, settle, soak_playbook  # noqa: E402


def _slope(points: list[tuple[float, float]]) -> float:
    if len(points) < 2:
        return 0.0
    xs, ys = zip(*points, strict=True)
    return statistics.linear_regression(xs, ys).slope


async def warm_up(url: str, args: argparse.Namespace) -> int:
    """Send ``args.warm_up`` product views per customer, stamped over the time before
    now at the soak's own rate per customer; closed-loop, resent on a 429."""
    size = 100
    total = args.warm_up * args.population
    batches = -(-total // size)
    span_ms = int(total / args.rate * 1000)  # the steady rate's time for this many views
    start_ms = int(time.time() * 1000) - span_ms
    sem = asyncio.Semaphore(4)
    acked = 0

    async def post(client: httpx.AsyncClient, number: int) -> None:
        nonlocal acked
        at = start_ms + number * span_ms // batches
        _, _, body = make_batch("warm", number, size, False, args.population, at)
        async with sem:
            while True:
                answer = await client.post(
                    url + "/v1/batch",
                    content=body,
                    headers={"content-type": "application/json"},
                    auth=(WRITE_KEY, ""),
                )
                if answer.status_code == 200:
                    acked += size
                    return
                if answer.status_code != 429:
                    raise RuntimeError(f"warm-up: {answer.status_code} {answer.text[:200]}")
                await asyncio.sleep(float(answer.headers.get("retry-after", "1")))

    async with httpx.AsyncClient(timeout=60) as client:
        await asyncio.gather(*(post(client, n) for n in range(batches)))
    return acked


def soak(args: argparse.Namespace, work: Path) -> int:
    with http_server() as sink:
        server = Serve(work / "data", soak_playbook(work, sink.url))
        server.start()
        if args.warm_up:
            began = time.monotonic()
            warmed = asyncio.run(warm_up(server.url, args))
            settle(server, timeout_s=3600)
            print(
                f"warm-up: {warmed:,} product views over {args.population:,} customers "
                f"({args.warm_up} each) stored and read by the stage in "
                f"{time.monotonic() - began:.0f} s",
                flush=True,
            )
        load = Load(
            server.url, rate=args.rate, batch=args.batch, tag="soak", population=args.population
        )
        print(
            f"soak: {args.minutes:g} min at {args.rate:,.0f} events/s "
            f"(batches of {args.batch}), server pid {server.pid}, rss at start "
            f"{server.rss_bytes() / 2**20:.1f} MiB",
            flush=True,
        )
        print(
            f"{'min':>5}{'events':>11}{'rss MiB':>9}{'p99 ms':>8}{'p50 ms':>8}{'non-200':>8}"
            f"{'cpu us/ev':>10}{'load':>6}"
        )
        rows: list[tuple[float, float, float]] = []  # minute, rss MiB, p99 ms
        costs: list[tuple[float, float]] = []  # minute, server CPU µs per acknowledged event

        async def sample(start: float, until: float) -> None:
            minute = 0
            seen = 0
            cpu, acked = server.cpu_seconds(), load.ledger.acked_events
            while True:
                minute += 1
                end = start + minute * args.sample_seconds
                if end > until + 1e-6:
                    return
                await asyncio.sleep(max(0.0, end - time.monotonic()))
                window = [took for at, took in load.ledger.latencies[seen:] if at < end]
                seen += len(window)
                rss = server.rss_bytes() / 2**20
                cpu_now, acked_now = server.cpu_seconds(), load.ledger.acked_events
                # The server's own CPU per event: what other jobs on the machine
                # do to the latency does not change it.
                per_event = (cpu_now - cpu) / max(1, acked_now - acked) * 1e6
                cpu, acked = cpu_now, acked_now
                tail = p99(window) * 1000
                middle = statistics.median(window) * 1000 if window else float("nan")
                bad = sum(n for status, n in load.ledger.statuses.items() if status != 200)
                t = minute * args.sample_seconds / 60
                rows.append((t, rss, tail))
                costs.append((t, per_event))
                print(
                    f"{t:>5.1f}{load.ledger.acked_events:>11,}{rss:>9.1f}{tail:>8.1f}"
                    f"{middle:>8.1f}{bad:>8}{per_event:>10.0f}"
                    f"{os.getloadavg()[0]:>6.1f}",  # the machine's 1-min load
                    flush=True,
                )

        async def both() -> None:
            start = time.monotonic()
            until = start + args.minutes * 60
            await asyncio.gather(load.run(until), sample(start, until))

        began = time.monotonic()
        try:
            asyncio.run(both())
            elapsed = time.monotonic() - began
            stats = settle(server)
            checked = check(server.data_dir, load.ledger, sink)
        finally:
            server.stop()
    later = rows[1:] if len(rows) > 2 else rows
    first, last = rows[0], rows[-1]
    print(
        f"rate: {load.ledger.acked_events / elapsed:,.0f} events/s acknowledged "
        f"({load.ledger.acked_events:,} events, target {args.rate:,.0f}/s)"
    )
    print(f"memory: {first[1]:.1f} MiB at minute {first[0]:g} -> {last[1]:.1f} MiB at the end, "
          f"slope {_slope([(t, m) for t, m, _ in later]):+.2f} MiB/min")  # fmt: skip
    print(f"p99 latency: {first[2]:.1f} ms -> {last[2]:.1f} ms, "
          f"slope {_slope([(t, p) for t, _, p in later]):+.2f} ms/min")  # fmt: skip
    print(f"server CPU per event: {costs[0][1]:.0f} us -> {costs[-1][1]:.0f} us, "
          f"slope {_slope(costs[1:] if len(costs) > 2 else costs):+.2f} us/min")  # fmt: skip
    print(f"answers: {dict(load.ledger.statuses)}; unexpected: {load.ledger.errors[:3]}")
    print(f"outbox: {stats['outbox']}")
    print(f"checked: {asdict(checked)}")
    return 0


def crash_cycles(args: argparse.Namespace, work: Path) -> int:
    draw = random.Random(args.seed)
    with http_server() as sink:
        server = Serve(work / "data", soak_playbook(work, sink.url))
        server.start()
        load = Load(server.url, rate=args.rate, batch=args.batch, tag="crash")
        restarts: list[float] = []

        async def cycles(stop: asyncio.Event) -> None:
            for _ in range(args.crash_cycles):
                await asyncio.sleep(args.cycle_seconds * draw.uniform(0.5, 1.5))
                server.kill()
                began = time.monotonic()
                await asyncio.to_thread(server.start)
                restarts.append(time.monotonic() - began)
            await asyncio.sleep(args.cycle_seconds)  # load on the last restart too
            stop.set()

        async def both() -> None:
            stop = asyncio.Event()
            await asyncio.gather(load.run(float("inf"), stop), cycles(stop))

        print(
            f"crash cycle: {args.crash_cycles} x kill -9 / restart under {args.rate:,.0f} "
            f"events/s, about {args.cycle_seconds:g} s of load each",
            flush=True,
        )
        began = time.monotonic()
        try:
            asyncio.run(both())
            elapsed = time.monotonic() - began
            stats = settle(server)
            checked = check(server.data_dir, load.ledger, sink)
        finally:
            server.stop()
    print(f"cycles: {args.crash_cycles} kills, {server.starts} starts in {elapsed:.0f} s; "
          f"restart to healthy median {statistics.median(restarts):.2f} s")  # fmt: skip
    print(f"acknowledged: {checked.acked:,} events, all stored exactly once "
          f"({checked.stored:,} stored); unanswered batches {checked.unacked_batches:,}, "
          f"{checked.unacked_stored:,} of their events stored whole, none torn")  # fmt: skip
    print(f"sends: {checked.sends} to {checked.complainers} complaining customers, "
          f"{checked.customers_sent_twice} customers sent two messages, "
          f"{checked.resent_same_key} resends of one key after a crash (deduped by the "
          f"receiver's webhook-id), {checked.torn_sends} cut mid-body by a kill, "
          f"{checked.customers_unsent} not sent")  # fmt: skip
    print(f"answers: {dict(load.ledger.statuses)}; outbox: {stats['outbox']}")
    return 0


def _terminated(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # so the server is stopped and the data removed


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _terminated)
    parser = argparse.ArgumentParser(prog="bench_soak", description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=2_000.0, help="events a second")
    parser.add_argument("--batch", type=int, default=50, help="events a request")
    parser.add_argument("--population", type=int, default=1_000, help="returning customers")
    parser.add_argument(
        "--warm-up", type=int, default=300, help="product views per customer before the soak"
    )
    parser.add_argument("--sample-seconds", type=float, default=60.0)
    parser.add_argument("--crash-cycles", type=int, default=0)
    parser.add_argument("--cycle-seconds", type=float, default=6.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", help="keep the data directory here")
    args = parser.parse_args(argv)
    if args.quick:
        args.minutes = min(args.minutes, 1.0)
        args.sample_seconds = min(args.sample_seconds, 15.0)
        args.warm_up = min(args.warm_up, 20)
        if args.crash_cycles:
            args.crash_cycles = min(args.crash_cycles, 3)
    work = Path(tempfile.mkdtemp(prefix="momently-soak-"))
    try:
        return crash_cycles(args, work) if args.crash_cycles else soak(args, work)
    finally:
        if args.keep:
            shutil.copytree(work, args.keep, dirs_exist_ok=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
