"""Soak and crash cycle: a real ``momently serve`` on loopback under a steady event rate.

* **soak** (default): ``--minutes`` (30) at ``--rate`` events a second (2,000),
  open-loop; every minute the server's resident memory (from /proc) and the p99
  of the batch answers' latency; at the end memory and p99 at start and end, and
  their slopes (least squares over the minutes after the first, the warm-up).
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

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # the harness lives beside the tests

from tests.deliver.servers import http_server  # noqa: E402
from tests.soak import Load, Serve, check, p99, settle, soak_playbook  # noqa: E402


def _slope(points: list[tuple[float, float]]) -> float:
    if len(points) < 2:
        return 0.0
    xs, ys = zip(*points, strict=True)
    return statistics.linear_regression(xs, ys).slope


def soak(args: argparse.Namespace, work: Path) -> int:
    with http_server() as sink:
        server = Serve(work / "data", soak_playbook(work, sink.url))
        server.start()
        load = Load(server.url, rate=args.rate, batch=args.batch, tag="soak")
        print(
            f"soak: {args.minutes:g} min at {args.rate:,.0f} events/s "
            f"(batches of {args.batch}), server pid {server.pid}, rss at start "
            f"{server.rss_bytes() / 2**20:.1f} MiB",
            flush=True,
        )
        print(
            f"{'min':>5}{'events':>11}{'rss MiB':>9}{'p99 ms':>8}{'p50 ms':>8}{'non-200':>8}"
            f"{'load':>6}"
        )
        rows: list[tuple[float, float, float]] = []  # minute, rss MiB, p99 ms

        async def sample(start: float, until: float) -> None:
            minute = 0
            seen = 0
            while True:
                minute += 1
                end = start + minute * args.sample_seconds
                if end > until + 1e-6:
                    return
                await asyncio.sleep(max(0.0, end - time.monotonic()))
                window = [took for at, took in load.ledger.latencies[seen:] if at < end]
                seen += len(window)
                rss = server.rss_bytes() / 2**20
                tail = p99(window) * 1000
                middle = statistics.median(window) * 1000 if window else float("nan")
                bad = sum(n for status, n in load.ledger.statuses.items() if status != 200)
                t = minute * args.sample_seconds / 60
                rows.append((t, rss, tail))
                print(
                    f"{t:>5.1f}{load.ledger.acked_events:>11,}{rss:>9.1f}{tail:>8.1f}"
                    f"{middle:>8.1f}{bad:>8}{os.getloadavg()[0]:>6.1f}",  # the machine's 1-min load
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
    parser.add_argument("--sample-seconds", type=float, default=60.0)
    parser.add_argument("--crash-cycles", type=int, default=0)
    parser.add_argument("--cycle-seconds", type=float, default=6.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", help="keep the data directory here")
    args = parser.parse_args(argv)
    if args.quick:
        args.minutes = min(args.minutes, 1.0)
        args.sample_seconds = min(args.sample_seconds, 15.0)
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
