"""Moment detection cost per event, memory per customer, and the stage's throughput.

Measured in one run, on one synthetic but realistic stream (searches from the
intent data, product views and carts, page views, GPS pings around the
example playbook's London stores, beacon sightings, social posts, support
messages, orders), with the example playbook (30+ moment definitions) and
every detector on:

* **detect** — ``MomentDetector.on_event`` per event, in process (median, p99);
* **baseline** — decoding and validating the same event from its JSON
  (``decode_message`` + ``normalise``), the floor every event pays at ingest;
  the ratio detect / baseline is what holds across noisy machines;
* **rules only** — the same stream with the built-in detectors switched off;
* **memory** — each customer's state, encoded as the store keeps it, after
  the whole stream (mean and max bytes);
* **stage** — events per second through the whole moment stage (read the
  log, detect, commit moments and state to SQLite), against the same events'
  ingest into the log.

Run ``python benchmarks/bench_moments.py [--quick]``.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from momently.clock import FakeClock
from momently.engine import Engine
from momently.events import Event, decode_message, encode_event, from_ms, normalise
from momently.moments.detector import CustomerState, MomentDetector, encode_state
from momently.moments.intent import load_examples
from momently.moments.playbook import load_playbook
from momently.runtime.stage import MomentStage
from momently.store.moments_sqlite import SqliteMomentStore
from momently.store.sqlite import SqliteStore

T0 = 1_772_409_600_000
TARGET_P99_MS = 1.0
STORES = [(51.5154, -0.1410), (51.5033, -0.1196), (51.5202, -0.0980), (51.5308, -0.1238)]
POSTS = [
    "My toaster broke and I have no idea what to buy 😩",
    "refund hasn't arrived. not happy :(",
    "Loving my new smile with these aligners!",
    "Great coffee this morning ☕",
    "why is the app so slow today 😡",
    "I'm sick and stuck at home 😢",
]


def stream(customers: int, per_customer: int, seed: int = 7) -> list[Event]:
    """A seeded, time-ordered mix of the signals momently watches."""
    rng = random.Random(seed)
    queries = [e.text for e in load_examples()]
    events: list[Event] = []
    for c in range(customers):
        user = f"user-{c}"
        device = f"dev-{c}"
        home = (51.45 + rng.random() * 0.15, -0.25 + rng.random() * 0.3)
        at = T0 + rng.randrange(0, 3_600_000)
        for i in range(per_customer):
            at += rng.randrange(10_000, 1_800_000)
            roll = rng.random()
            props: dict[str, Any] = {}
            context: dict[str, Any] = {"device": {"id": device, "type": "ios"}}
            kind, name = "track", "Application Opened"
            if roll < 0.25:
                name, props = "Products Searched", {"query": rng.choice(queries)}
            elif roll < 0.45:
                name = "Product Viewed"
                props = {
                    "product_id": f"p{rng.randrange(500)}",
                    "category": "toasters",
                    "price": rng.randrange(10, 300),
                }
            elif roll < 0.50:
                name, props = "Product Added", {"product_id": f"p{rng.randrange(500)}", "price": 40}
            elif roll < 0.53:
                name, props = "Order Completed", {"revenue": 40}
            elif roll < 0.75:
                name = "Location Updated"
                lat, lon = rng.choice(STORES) if rng.random() < 0.2 else home
                context["location"] = {
                    "latitude": lat + rng.gauss(0, 0.0003),
                    "longitude": lon + rng.gauss(0, 0.0003),
                    "accuracy": rng.choice([8, 15, 30, 65]),
                }
            elif roll < 0.78:
                name = "Beacon Sighted"
                props = {
                    "uuid": "f7826da6-4fa2-4e98-8024-bc5b71e0893e",
                    "major": 12,
                    "minor": 1,
                    "rssi": -60,
                }
            elif roll < 0.83:
                name, props = "Social Post", {"text": rng.choice(POSTS), "platform": "x"}
            elif roll < 0.85:
                name, props = "Support Message", {"text": rng.choice(POSTS)}
            elif roll < 0.95:
                kind = "page"
                name = rng.choice(
                    [
                        "Store Locator",
                        "Clear Braces Options",
                        "Clear Braces Cost",
                        "Home",
                        "Checkout",
                        "Before After Gallery",
                    ]
                )
            events.append(
                Event(
                    message_id=f"{user}-{i}",
                    type=kind,
                    timestamp=from_ms(at),
                    received_at=from_ms(at),
                    user_id=user,
                    event=name if kind == "track" else None,
                    name=name if kind == "page" else None,
                    properties=props,
                    context=context,
                    traits={"household_size": rng.randrange(1, 6)} if i == 0 else {},
                )
            )
    events.sort(key=lambda e: e.timestamp_ms)
    return events


def per_event(
    detector: MomentDetector, events: list[Event]
) -> tuple[list[float], dict[str, CustomerState], int]:
    states: dict[str, CustomerState] = {}
    times: list[float] = []
    found = 0
    clock = time.perf_counter_ns
    for event in events:
        customer = event.user_id or ""
        state = states.get(customer)
        if state is None:
            state = states[customer] = CustomerState()
        started = clock()
        result = detector.on_event(customer, state, event, None)
        times.append((clock() - started) / 1e6)
        found += len(result.moments)
    return times, states, found


def baseline(events: list[Event]) -> list[float]:
    bodies = [encode_event(e) for e in events]
    times: list[float] = []
    clock = time.perf_counter_ns
    for body in bodies:
        started = clock()
        raw = decode_message(body)
        normalise(raw, received_ms=T0, source="bench", raw_size=len(body))
        times.append((clock() - started) / 1e6)
    return times


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


def stage_rate(detector: MomentDetector, events: list[Event]) -> tuple[float, float]:
    """Events/s into the log (ingest), and through the moment stage, on SQLite."""
    with tempfile.TemporaryDirectory() as folder:
        store = SqliteStore(Path(folder) / "log.db", synchronous="NORMAL")
        moments = SqliteMomentStore(Path(folder) / "moments.db", synchronous="NORMAL")
        engine = Engine(store)
        started = time.perf_counter()
        for start in range(0, len(events), 500):
            engine.ingest(events[start : start + 500])
        ingest = len(events) / (time.perf_counter() - started)
        stage = MomentStage(store, moments, detector, FakeClock(events[-1].timestamp_ms))
        started = time.perf_counter()
        stage.catch_up()
        through = len(events) / (time.perf_counter() - started)
        moments.close()
        store.close()
    return ingest, through


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short run")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    customers, per = (300, 40) if args.quick else (1_000, 60)
    runs = 2 if args.quick else args.runs
    playbook = load_playbook()
    detector = MomentDetector(playbook)
    off = playbook.detectors.model_copy(
        update={
            name: getattr(playbook.detectors, name).model_copy(update={"enabled": False})
            for name in ("intent", "friction", "place", "routine")
        }
    )
    rules_only = MomentDetector(playbook.model_copy(update={"detectors": off}))
    events = stream(customers, per)
    print(
        f"moment detection: {len(playbook.moments)} definitions, {len(playbook.places)} places,"
        f" {len(playbook.journeys)} journeys; {len(events):,} events of {customers:,} customers;"
        f" medians of {runs} runs"
    )
    detect_med, detect_p99, base_med, base_p99, rules_med, rules_p99 = [], [], [], [], [], []
    moments_found = 0
    states: dict[str, CustomerState] = {}
    for _ in range(runs):
        times, states, moments_found = per_event(detector, events)
        detect_med.append(statistics.median(times))
        detect_p99.append(p99(times))
        times = baseline(events)
        base_med.append(statistics.median(times))
        base_p99.append(p99(times))
        times, _, _ = per_event(rules_only, events)
        rules_med.append(statistics.median(times))
        rules_p99.append(p99(times))
    d50, d99 = statistics.median(detect_med), statistics.median(detect_p99)
    b50, b99 = statistics.median(base_med), statistics.median(base_p99)
    r50, r99 = statistics.median(rules_med), statistics.median(rules_p99)
    verdict = "met" if d99 <= TARGET_P99_MS else "NOT met"
    print(
        f"  detect (all detectors)   median {d50 * 1000:7.1f} µs   p99 {d99 * 1000:7.1f} µs"
        f"   target p99 ≤ {TARGET_P99_MS * 1000:.0f} µs: {verdict}"
    )
    print(f"  rules only               median {r50 * 1000:7.1f} µs   p99 {r99 * 1000:7.1f} µs")
    print(f"  baseline (decode+check)  median {b50 * 1000:7.1f} µs   p99 {b99 * 1000:7.1f} µs")
    print(f"  ratio detect/baseline    median {d50 / b50:5.1f}×   p99 {d99 / b99:5.1f}×")
    print(f"  moments found: {moments_found:,} ({moments_found / len(events):.2f} per event)")
    sizes = [len(encode_state(s)) for s in states.values()]
    print(
        f"  memory per customer (encoded state after {per} events):"
        f" mean {statistics.mean(sizes):,.0f} B, max {max(sizes):,} B"
    )
    ingest, through = stage_rate(detector, events)
    print(
        f"  stage on SQLite: {through:,.0f} events/s through detection and commit;"
        f" ingest into the log {ingest:,.0f} events/s (ratio {through / ingest:.2f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
