"""PostgreSQL stores against the embedded SQLite ones, on one machine, both durable.

* **log** — events per second through :class:`momently.engine.Engine` (identity
  lookups, profiles, one commit per group of 100 events) into the SQLite store
  (``synchronous=FULL``) and the PostgreSQL store (a server started here on
  loopback, ``fsync=on``, ``synchronous_commit=on``); the ratio PostgreSQL/SQLite;
* **outbox claims** — due sends claimed and marked sent per second, by one
  worker and by four workers each with a store (and connections) of its own on
  the PostgreSQL outbox (``FOR UPDATE SKIP LOCKED``), against one worker on the
  SQLite outbox; the ratio four/one says whether claimers get in each other's way.

Figures are medians of several runs; the ratios, measured in the same run, are
what hold across machines. Run ``python benchmarks/bench_postgres.py [--quick]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.postgres

from tests.postgres import Cluster

from momently.deliver.message import OutboundMessage, idempotency_key
from momently.deliver.records import Entry
from momently.deliver.store_sqlite import SqliteOutboxStore
from momently.deliver.types import OutboxStore
from momently.engine import Engine
from momently.events import Event, from_ms
from momently.store.postgres import PostgresOutboxStore, PostgresStore
from momently.store.sqlite import SqliteStore
from momently.types import Store

START = 1_790_000_000_000


def events(count: int, run: int) -> list[Event]:
    return [
        Event(
            message_id=f"r{run}-m{n}", type="track", event="Viewed", user_id=f"u{n % 5000}",
            timestamp=from_ms(START + n), received_at=from_ms(START + n),
            properties={"sku": f"s{n % 97}", "price": 9.99},
        )
        for n in range(count)
    ]  # fmt: skip


def log_rate(open_store: Callable[[int], Store], count: int, runs: int) -> float:
    rates = []
    for run in range(runs):
        store = open_store(run)
        engine = Engine(store)
        batch = events(count, run)
        began = time.perf_counter()
        for start in range(0, count, 100):
            engine.ingest(batch[start : start + 100])
        rates.append(count / (time.perf_counter() - began))
        store.close()
    return statistics.median(rates)


def entry(n: int) -> Entry:
    decision = f"de-{n}"
    key = idempotency_key(decision, "hook")
    message = OutboundMessage(
        key=key, decision_id=decision, customer_id=f"c{n}", channel="hook", kind="webhook",
        to=f"c{n}", text="hello",
    )  # fmt: skip
    return Entry(
        key=key, decision_id=decision, customer_id=f"c{n}", channel="hook", state="pending",
        due_ms=START, send_at_ms=START, created_ms=START, updated_ms=START, message=message,
    )  # fmt: skip


def drain(store: OutboxStore, worker: str) -> None:
    while taken := store.claim(now_ms=START, lease_ms=60_000, limit=50, worker=worker):
        for e in taken:
            store.finish(e.key, e.claims, state="sent", now_ms=START)


def claim_rate(
    open_outbox: Callable[[int], OutboxStore], workers: int, count: int, runs: int
) -> float:
    rates = []
    for run in range(runs):
        stores = [open_outbox(run) for _ in range(workers)]
        with stores[0].batch():
            for n in range(count):
                stores[0].put(entry(n))
        threads = [
            threading.Thread(target=drain, args=(store, f"w{i}")) for i, store in enumerate(stores)
        ]
        began = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        rates.append(count / (time.perf_counter() - began))
        assert stores[0].counts()["sent"] == count
        for store in stores:
            store.close()
    return statistics.median(rates)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer events and runs")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--count", type=int, default=10_000)
    args = parser.parse_args(argv)
    runs = 2 if args.quick else args.runs
    count = 2_000 if args.quick else args.count
    cluster = Cluster(durable=True)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            where = Path(tmp)
            print(f"log: events/s through the engine, groups of 100, {count} events, both durable")
            sqlite = log_rate(
                lambda run: SqliteStore(where / f"log{run}.db", synchronous="FULL"), count, runs
            )
            postgres = log_rate(lambda run: PostgresStore(cluster.url()), count, runs)
            print(f"  sqlite FULL       {sqlite:10.0f} events/s")
            print(
                f"  postgresql        {postgres:10.0f} events/s   x{postgres / sqlite:.2f} sqlite"
            )

            sends = count // 2
            print(f"outbox: {sends} due sends claimed (50 a claim) and marked sent")
            one_sqlite = claim_rate(
                lambda run: SqliteOutboxStore(where / f"outbox{run}.db"), 1, sends, runs
            )
            urls = [cluster.url() for _ in range(runs)]
            one = claim_rate(lambda run: PostgresOutboxStore(urls[run]), 1, sends, runs)
            urls = [cluster.url() for _ in range(runs)]
            four = claim_rate(lambda run: PostgresOutboxStore(urls[run]), 4, sends, runs)
            print(f"  sqlite, 1 worker      {one_sqlite:8.0f} sends/s")
            print(f"  postgresql, 1 worker  {one:8.0f} sends/s   x{one / one_sqlite:.2f} sqlite")
            print(f"  postgresql, 4 workers {four:8.0f} sends/s   x{four / one:.2f} one worker")
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
