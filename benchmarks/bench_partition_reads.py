"""Distributed mode on PostgreSQL: a worker's connections, and the ingest node's admin reads.

* **connections** — one process opens the log and the moment store of every
  partition (a schema each), as a worker owning them all does, and counts its
  connections to the server (``pg_stat_activity``): one shared pool of
  ``pool_max`` (default 10) against at least one per store (2 × partitions) when
  each store had its own pool;
* **profile lookups** — ``GET /api/profiles/{id}`` as the ingest node answers it
  (:class:`momently.distributed.admin.Partitions`: every partition is asked),
  by userId, over 9 and over 64 partitions holding the same customers; medians
  and p99 of single lookups, and the ratio 64/9.

A PostgreSQL server is started here on loopback. Run
``python benchmarks/run.py partition_reads [--quick]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.postgres

import psycopg
from tests.postgres import Cluster

from momently.distributed.admin import Partitions
from momently.distributed.log import LogSettings
from momently.distributed.partition import partition_of
from momently.engine import Engine
from momently.events import Event, from_ms
from momently.store import open_moment_store, open_store

T0 = 1_790_000_000_000


def _connections(cluster: Cluster, application: str) -> int:
    with psycopg.connect(cluster.url_for_database("postgres")) as conn:
        row = conn.execute(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE application_name = %s", (application,)
        ).fetchone()
    return int(row[0]) if row is not None else 0


def connections(cluster: Cluster, partitions: int) -> None:
    app = f"bench-worker-{partitions}"
    template = f"{cluster.url_for_database('momently')}?schema=w{partitions}_p{{partition}}"
    urls = [template.replace("{partition}", str(p)) + f"&application_name={app}"
            for p in range(partitions)]  # fmt: skip
    started = time.perf_counter()
    stores = [open_store(url) for url in urls]
    moments = [open_moment_store(url) for url in urls]
    opened = time.perf_counter() - started
    try:
        for store in stores:
            store.stats()
        for moment_store in moments:
            moment_store.checkpoint()
        held = _connections(cluster, app)
    finally:
        for moment_store in moments:
            moment_store.close()
        for store in stores:
            store.close()
    print(
        f"  connections: {partitions} partitions, {2 * partitions} stores -> {held} connections"
        f" (a pool per store: at least {2 * partitions}); opened and migrated in {opened:.1f} s"
    )


def lookups(cluster: Cluster, partitions: int, customers: int, runs: int) -> list[float]:
    template = f"{cluster.url_for_database('momently')}?schema=r{partitions}_p{{partition}}"
    by_partition: dict[int, list[Event]] = {}
    for c in range(customers):
        user = f"user-{c}"
        event = Event(
            message_id=f"m-{c}", type="identify", timestamp=from_ms(T0 + c),
            received_at=from_ms(T0 + c), user_id=user, anonymous_id=f"anon-{c}",
            traits={"email": f"{user}@example.com"},
        )  # fmt: skip
        by_partition.setdefault(partition_of("u:" + user, partitions), []).append(event)
    for p, events in by_partition.items():
        store = open_store(template.replace("{partition}", str(p)))
        try:
            Engine(store).ingest(events)
        finally:
            store.close()
    log = LogSettings(partitions=partitions)
    reads = Partitions(log, template, template)
    try:
        reads.parts()  # opened once, as the ingest node does on its first admin read
        times: list[float] = []
        for n in range(runs):
            user = f"user-{(n * 7919) % customers}"
            started = time.perf_counter()
            part, customer = reads.find(user)
            profile = part.store.profile(customer)
            times.append(time.perf_counter() - started)
            assert profile is not None and profile.user_id == user
        return times
    finally:
        reads.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    runs = 50 if args.quick else 300
    cluster = Cluster(durable=False)
    try:
        connections(cluster, 32 if args.quick else 128)
        medians = {}
        for partitions in (9, 64):
            times = sorted(lookups(cluster, partitions, 500, runs))
            medians[partitions] = statistics.median(times)
            p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
            print(
                f"  profile lookup over {partitions} partitions: median"
                f" {medians[partitions] * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms ({runs} lookups)"
            )
        print(f"  ratio 64/9 partitions: {medians[64] / medians[9]:.2f}x")
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
