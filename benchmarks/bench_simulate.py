"""Simulator throughput, and the policy comparison on the simulated population.

* **generate** — Segment messages per second from a population living in
  simulated time (planning, need bookkeeping and building each message), the
  median of ``--runs`` runs over the same population and days;
* **baseline** — encoding the same messages to JSON with msgspec (what the
  ingest path does first with any message), measured in the same run on the
  first 100,000 of them; the ratio is what holds across noisy machines (rates
  per CPU second are printed too: the machine may be shared);
* **compare** — batch-and-blast and event triggers (and, with ``--truth``,
  the no-message counterfactual giving each policy's true effect, and the
  oracle) over the population with a 10% global holdout: messages, opt-outs,
  conversions, revenue and lift with 95% intervals.

Run ``python benchmarks/bench_simulate.py [--quick] [--customers N] [--days D]
[--compare-customers N] [--truth] [--momently] [--report report.html]``
(``--momently`` adds the engine itself, and prints its CPU per event for each
simulated day: slow, see the README; it runs on the
window stores of :mod:`momently.simulate.window`, which make the same decisions
and forget the log behind the engine at each simulated day's end). Without flags
it is the full run: 100,000 customers over 30 days.
"""

from __future__ import annotations

import argparse
import math
import resource
import statistics
import sys
import time

import msgspec

from momently.simulate import (
    DAY,
    START,
    BatchAndBlast,
    EventTriggers,
    NoMessages,
    Oracle,
    Policy,
    Population,
    RunResult,
    World,
    true_effect,
    write_report,
)
from momently.simulate.compare import Run
from momently.simulate.engine_policy import EnginePolicy

SAMPLE = 100_000


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def generate(people: Population, days: int, runs: int) -> tuple[list[float], list[float], int]:
    """Wall-clock and CPU rates of ``runs`` runs, and the events per run."""
    walls: list[float] = []
    cpus: list[float] = []
    count = 0
    for run in range(runs):
        world = World(people)
        count = 0
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in world.events_until(START + days * DAY):
            count += 1
        walls.append(count / (time.perf_counter() - wall))
        cpus.append(count / (time.process_time() - cpu))
        print(
            f"   run {run + 1}: {count:,} events, {walls[-1]:,.0f} events/s "
            f"({cpus[-1]:,.0f} per CPU second)",
            flush=True,
        )
    return walls, cpus, count


def baseline(people: Population) -> tuple[float, float]:
    """msgspec-encoding rate over the first events of a fresh world, wall and CPU."""
    sample = []
    for message in World(people).events_until(START + 30 * DAY):
        sample.append(message)
        if len(sample) >= SAMPLE:
            break
    encode = msgspec.json.Encoder().encode
    wall, cpu = time.perf_counter(), time.process_time()
    for message in sample:
        encode(message)
    return len(sample) / (time.perf_counter() - wall), len(sample) / (time.process_time() - cpu)


def _interval(low: float, high: float, scale: float) -> str:
    if math.isnan(low):
        return "n/a"
    return f"[{low * scale:+.2f}, {high * scale:+.2f}]"


def table(
    results: list[RunResult], truth: dict[str, tuple[float, float]], took: list[float]
) -> None:
    head = (
        f"   {'policy':<16}{'events':>12}{'messages':>10}{'opt-outs':>9}{'conv.':>8}"
        f"{'revenue':>12}{'clicked':>8}  {'conv. lift pp [95% CI]':<26}"
        f"{'rev./cust. lift [95% CI]':<30}{'n treated/holdout':<19}"
    )
    print(head + ("true lift (pp; rev.)  " if truth else "") + "s")
    for r, seconds in zip(results, took, strict=True):
        c, v = r.conversion, r.revenue_lift
        line = (
            f"   {r.policy:<16}{r.events:>12,}{r.delivered:>10,}{r.opt_outs:>9,}"
            f"{r.conversions:>8,}{r.revenue:>12,.0f}{r.attributed:>8,}  "
            f"{f'{c.difference * 100:+.2f} {_interval(c.low, c.high, 100)}':<26}"
            f"{f'{v.difference:+.2f} {_interval(v.low, v.high, 1)}':<30}"
            f"{f'{c.treated_n:,}/{c.holdout_n:,}':<19}"
        )
        if truth:
            rate, money = truth.get(r.policy, (math.nan, math.nan))
            line += f"{f'{rate * 100:+.2f}; {money:+.2f}':<22}"
        print(line + f"{seconds:.0f}")


def compare(
    people: Population, days: int, *, truth: bool, report: str | None, engine: bool = False
) -> None:
    results: list[RunResult] = []
    took: list[float] = []
    policies: list[Policy | str] = [BatchAndBlast(), EventTriggers()]
    if engine:
        policies.append(EnginePolicy(window=True))
    if truth:
        policies = [NoMessages(), *policies, "oracle"]
    for policy in policies:
        world = World(people)
        chosen = Oracle(world) if policy == "oracle" else policy
        assert not isinstance(chosen, str)
        started, cpu = time.perf_counter(), time.process_time()
        run, by_day = Run(chosen, world, days=days, holdout=0.1), []
        while not run.done:  # a day at a time, as run_policy: the engine's cost by day
            day_cpu, day_events = time.process_time(), world.emitted
            run.advance_day()
            by_day.append((time.process_time() - day_cpu) / max(1, world.emitted - day_events))
        results.append(run.result())
        took.append(time.perf_counter() - started)
        cpu = time.process_time() - cpu
        r = results[-1]
        if isinstance(chosen, EnginePolicy):
            print(
                "   momently, us of CPU per event by simulated day: "
                + " ".join(f"{1e6 * t:.0f}" for t in by_day),
                flush=True,
            )
        print(
            f"   {chosen.name}: {r.events:,} events ({r.seen:,} shown to it) in {took[-1]:.0f} s, "
            f"{r.events / took[-1]:,.0f} events/s ({r.events / cpu:,.0f} per CPU second)",
            flush=True,
        )
    effects = {}
    if truth:
        effects = {r.policy: true_effect(r, results[0]) for r in results}
    table(results, effects, took)
    if report:
        notes = [
            f"Population seed {people.seed}; {len(people):,} customers; {days} days from "
            "2026-03-02 (Europe/London clocks go forward on the 29th)."
        ]
        write_report(report, results, notes=notes, truth=effects or None)
        print(f"   report: {report}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="2,000 customers over 3 days")
    parser.add_argument("--customers", type=int)
    parser.add_argument("--days", type=int)
    parser.add_argument("--runs", type=int, help="generation runs (median reported)")
    parser.add_argument("--compare-customers", type=int, help="a subset for the comparison")
    parser.add_argument("--compare-days", type=int)
    parser.add_argument("--no-compare", action="store_true")
    parser.add_argument("--no-generate", action="store_true")
    parser.add_argument("--truth", action="store_true", help="also the no-message run and oracle")
    parser.add_argument("--report", help="write the comparison as HTML here")
    parser.add_argument(
        "--momently", action="store_true", help="momently itself (the engine in process) too"
    )
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    customers = args.customers or (2_000 if args.quick else 100_000)
    days = args.days or (3 if args.quick else 30)
    runs = args.runs or (3 if args.quick else 1)
    base_rss = _rss_mb()
    started = time.perf_counter()
    people = Population(customers, seed=args.seed)
    built = time.perf_counter() - started
    print(
        f"   population: {customers:,} customers in {built:.1f} s, "
        f"{(_rss_mb() - base_rss) * 1024 * 1024 / max(1, customers):,.0f} bytes each (RSS)"
    )
    if not args.no_generate:
        walls, cpus, count = generate(people, days, runs)
        wall, cpu = statistics.median(walls), statistics.median(cpus)
        print(
            f"   generate: {count:,} events over {days} days "
            f"({count / customers / days:.1f} a customer a day), median {wall:,.0f} events/s "
            f"({cpu:,.0f} per CPU second); peak RSS {_rss_mb():,.0f} MB"
        )
        base_wall, base_cpu = baseline(people)
        print(
            f"   baseline: msgspec JSON encoding of {SAMPLE:,} of the same events "
            f"{base_wall:,.0f} events/s ({base_cpu:,.0f} per CPU second)"
        )
        print(f"   ratio generate/encode: {wall / base_wall:.3f} (CPU {cpu / base_cpu:.3f})")
    if not args.no_compare:
        subset = args.compare_customers or customers
        group = people if subset == customers else Population(subset, seed=args.seed)
        compare(
            group,
            args.compare_days or days,
            truth=args.truth,
            report=args.report,
            engine=args.momently,
        )
        print(f"   peak RSS {_rss_mb():,.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
