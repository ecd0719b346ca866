"""World-event fan-out over a million customers, against a brute-force scan.

Builds an :class:`AudienceIndex` of N customers (default 1,000,000) with
seeded positions spread the way a real customer base is: most of it over
metropolitan areas (Greater London about 40 km across, Manchester,
Birmingham, Glasgow) and the rest scattered over Great Britain; positions
pinged over the last hours, product and category interests over the last two
months, and topic subscriptions. Then measures, 5 runs each, medians:

* build time, and ``update_position`` cost per ping (random walks, some of
  which cross cells);
* fan-out: (a) near a store, 500 m; (b) near, 5 km; (c) a product that about
  2 % of customers showed interest in; (d) a topic that every customer around
  Manchester subscribes to — each as a whole ``audience()`` call, recipients
  and reasons built and sorted;
* (e) the baseline, measured in the same run on the same data: a brute-force
  vectorised haversine over all N positions (with the freshness filter),
  against the index's radius query for the same circles;
* the index's memory per customer.

Run ``python benchmarks/bench_world.py [--customers N] [--quick]``.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from momently.moments.audience import AudienceIndex
from momently.moments.world import WorldEvent, haversine_many_m

MINUTE = 60_000
DAY = 86_400_000
NOW = 1_750_000_000_000  # a fixed "now": the benchmark is reproducible
TARGET_S = 1.0
# (name, lat, lon, share of customers, spread in km: one standard deviation)
CITIES = [
    ("london", 51.5074, -0.1278, 0.50, 8.0),
    ("manchester", 53.4808, -2.2426, 0.15, 5.0),
    ("birmingham", 52.4862, -1.8904, 0.12, 5.0),
    ("glasgow", 55.8642, -4.2518, 0.08, 4.0),
]
STORE = (51.5136, -0.1365)  # a store in central London
PRODUCTS = 10_000
CATEGORIES = 50
HOT_SKU = "sku-42"


@dataclass(frozen=True)
class Population:
    ids: list[str]
    lat: npt.NDArray[np.float64]
    lon: npt.NDArray[np.float64]
    ts: npt.NDArray[np.int64]
    city: npt.NDArray[np.int64]  # index into CITIES, or -1 for the countryside


def population(n: int, seed: int = 42) -> Population:
    """N customers with seeded positions, clustered around cities."""
    rng = np.random.default_rng(seed)
    shares = [c[3] for c in CITIES]
    city = rng.choice(len(CITIES) + 1, size=n, p=[*shares, 1.0 - sum(shares)]) - 1
    lat = rng.uniform(50.0, 58.5, n)
    lon = rng.uniform(-6.0, 1.8, n)
    for i, (_, clat, clon, _, spread_km) in enumerate(CITIES):
        here = city == i
        k = int(here.sum())
        lat[here] = clat + rng.normal(0.0, spread_km / 111.2, k)
        lon[here] = clon + rng.normal(0.0, spread_km / (111.2 * np.cos(np.radians(clat))), k)
    # pings arrive all the time: the last one is exponentially distributed, mean 30 min
    ts = (NOW - rng.exponential(30 * MINUTE, n)).astype(np.int64)
    ids = [f"{x:016x}" for x in rng.integers(0, 2**63, n).tolist()]
    return Population(ids, lat, lon, ts, city.astype(np.int64))


def build(people: Population, seed: int = 7) -> tuple[AudienceIndex, float, float]:
    """The index over ``people``: (index, seconds for positions, seconds in all)."""
    rng = np.random.default_rng(seed)
    n = len(people.ids)
    index = AudienceIndex()
    started = time.perf_counter()
    for cid, lat, lon, ts in zip(
        people.ids, people.lat.tolist(), people.lon.tolist(), people.ts.tolist(), strict=True
    ):
        index.update_position(cid, lat, lon, ts)
    positions_s = time.perf_counter() - started
    # two product interests each (Zipf-like popularity) and one category, over 60 days
    products = np.minimum(rng.zipf(1.3, 2 * n), PRODUCTS).tolist()
    categories = rng.integers(0, CATEGORIES, n).tolist()
    seen = (NOW - rng.uniform(0, 60 * DAY, 3 * n)).astype(np.int64).tolist()
    hot = set(rng.choice(n, size=n // 50, replace=False).tolist())  # 2 % looked at the hot SKU
    manchester = CITIES.index(next(c for c in CITIES if c[0] == "manchester"))
    for i, cid in enumerate(people.ids):
        index.add_interest(cid, product=f"sku-{products[2 * i]}", ts_ms=seen[3 * i])
        index.add_interest(cid, product=f"sku-{products[2 * i + 1]}", ts_ms=seen[3 * i + 1])
        index.add_interest(cid, category=f"cat-{categories[i]}", ts_ms=seen[3 * i + 2])
        if i in hot:
            index.add_interest(cid, product=HOT_SKU, ts_ms=NOW - (i % 20) * DAY)
        if people.city[i] == manchester:
            index.subscribe(cid, "manchester-deals")
        if i % 3 == 0:
            index.subscribe(cid, "newsletter")
    return index, positions_s, time.perf_counter() - started


def median_s(fn: Callable[[], Any], runs: int) -> tuple[float, Any]:
    """Median seconds of ``runs`` calls, and the last result."""
    times, result = [], None
    for _ in range(runs):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def brute_force(people: Population, lat: float, lon: float, radius_m: float, since: int) -> Any:
    """The baseline: every position, one vectorised haversine, then the two filters."""
    distance = haversine_many_m(lat, lon, people.lat, people.lon)
    return np.flatnonzero((distance <= radius_m) & (people.ts >= since))


def update_us(index: AudienceIndex, people: Population, runs: int, seed: int = 3) -> float:
    """Median µs per ``update_position``: 100,000 pings of customers walking 0-300 m."""
    rng = np.random.default_rng(seed)
    count = min(100_000, len(people.ids))
    times = []
    for run in range(runs):
        who = rng.integers(0, len(people.ids), count).tolist()
        step = rng.normal(0.0, 150.0 / 111_200, (2, count))
        lats = np.clip(people.lat[who] + step[0], -90, 90).tolist()
        lons = np.clip(people.lon[who] + step[1], -180, 180).tolist()
        ids = [people.ids[i] for i in who]
        stamp = NOW + (run + 1) * MINUTE
        started = time.perf_counter()
        for cid, lat, lon in zip(ids, lats, lons, strict=True):
            index.update_position(cid, lat, lon, stamp)
        times.append((time.perf_counter() - started) / count * 1e6)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="World-event fan-out over N customers")
    parser.add_argument("--customers", type=int, help="customers (default 1,000,000)")
    parser.add_argument("--quick", action="store_true", help="100,000 customers, 3 runs")
    parser.add_argument("--runs", type=int, help="runs of each measurement (default 5)")
    args = parser.parse_args(argv)
    n = args.customers or (100_000 if args.quick else 1_000_000)
    runs = args.runs or (3 if args.quick else 5)

    people = population(n)
    index, positions_s, build_s = build(people)
    print(f"world-event fan-out, {n:,} customers, medians of {runs} runs")
    print(f"  build: positions {positions_s:.2f} s ({positions_s / n * 1e6:.2f} µs each),")
    print(f"         with interests and topics {build_s:.2f} s")
    positions_only = AudienceIndex()
    columns = (people.lat.tolist(), people.lon.tolist(), people.ts.tolist())
    for cid, lat, lon, ts in zip(people.ids, *columns, strict=True):
        positions_only.update_position(cid, lat, lon, ts)
    print(
        f"  memory: {index.memory_bytes() / len(index):.0f} bytes per customer "
        f"(positions alone: {positions_only.memory_bytes() / n:.0f})"
    )
    del positions_only

    since = NOW - 30 * MINUTE
    events = {
        "(a) near store, 500 m": WorldEvent(
            id="a", name="hot-now", near={"place": "store-12", "radius_m": 500}
        ),
        "(b) near store, 5 km": WorldEvent(
            id="b", name="hot-now", near={"place": "store-12", "radius_m": 5_000}
        ),
        "(c) product, ~2 % interested": WorldEvent(id="c", name="price-drop", products=[HOT_SKU]),
        "(d) topic, Manchester region": WorldEvent(
            id="d", name="back-in-stock", topics=["manchester-deals"]
        ),
    }
    print("  fan-out (whole audience(): query, reasons, Recipients, sorted)")
    worst = 0.0
    for label, event in events.items():
        seconds, got = median_s(functools.partial(index.audience, event, STORE, NOW), runs)
        worst = max(worst, seconds)
        per = seconds / max(1, len(got)) * 1e6
        print(f"    {label:<30} {seconds * 1e3:8.1f} ms {len(got):>9,} recipients", end="")
        print(f"  {per:.2f} µs each")

    print("  (e) radius query: index vs brute-force scan of all positions, same run")
    for radius in (500.0, 5_000.0):
        query = functools.partial(index.near, *STORE, radius, since)
        index_s, (slots, _) = median_s(query, runs)
        scan = functools.partial(brute_force, people, *STORE, radius, since)
        brute_s, found = median_s(scan, runs)
        if len(slots) != len(found):
            print(f"    MISMATCH at {radius:.0f} m: index {len(slots)}, brute force {len(found)}")
            return 1
        print(
            f"    {radius:>6.0f} m: index {index_s * 1e3:7.2f} ms, brute force "
            f"{brute_s * 1e3:7.2f} ms, index/brute-force {index_s / brute_s:.3f} "
            f"({len(found):,} found)"
        )

    print(f"  update_position: {update_us(index, people, runs):.2f} µs per ping")
    verdict = "within" if worst < TARGET_S else "OVER"
    print(f"  slowest fan-out {worst * 1e3:.0f} ms: {verdict} the {TARGET_S:.0f} s target")
    return 0


if __name__ == "__main__":
    sys.exit(main())
