"""Decision cost: decisions per second and p99 latency with 50 candidate offers.

One run arbitrates a stream of moments for a population of customers against
a catalog of 50 offers on four channels, with caps, quiet hours, a minimum gap
and holdouts on, reserving each send as the runtime does (so caps bind as the
stream goes on):

* **decide** — :meth:`Arbiter.decide` per moment, in process (median, p99);
* **decide, bandit** — the same with relevance from the runtime's contextual
  bandit (:class:`momently.decide.step.BanditRelevance`), as the engine runs it;
* **baseline** — the same moments checked against the hard constraints only,
  for the one best-priority offer (what a plain event trigger does), measured
  in the same run; the ratio is what holds across noisy machines.

Each decision is timed twice: wall clock, and the CPU time of the deciding
thread. On a machine shared with other jobs the wall clock's tail is mostly
time the process spent descheduled; the CPU time is the decision's own cost.

Run ``python benchmarks/bench_decide.py [--quick]``.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from momently.decide.arbitrate import Arbiter
from momently.decide.constraints import Contact, Contacts, check_send
from momently.decide.signals import HOURS_PER_WEEK, Signals
from momently.decide.spec import DecideSpec
from momently.decide.step import BanditRelevance, new_bandit
from momently.moments.model import MOMENT_KINDS, Moment
from momently.state.profile import Consent, Profile, Stamped

HOUR = 3_600_000
START = int(datetime(2026, 11, 30, 7, tzinfo=ZoneInfo("Europe/London")).timestamp() * 1000)
ZONES = ("Europe/London", "America/New_York", "Asia/Tokyo", "Australia/Sydney")
CATEGORIES = ("kitchen", "fashion", "beauty", "travel", "grocery")


def catalog(offers: int) -> DecideSpec:
    rng = random.Random(1)
    channels = [
        {"name": "in_app", "kind": "in_app"},
        {"name": "push", "kind": "push", "cost": 0.001, "fallback": "email"},
        {"name": "email", "kind": "email", "cost": 0.002},
        {"name": "sms", "kind": "sms", "cost": 0.04, "opt_in": True},
    ]
    items: list[dict[str, Any]] = []
    for i in range(offers):
        chosen = rng.sample(["in_app", "push", "email", "sms"], k=rng.randint(1, 3))
        target: dict[str, Any] = {"kinds": rng.sample(MOMENT_KINDS, k=rng.randint(1, 3))}
        if i % 3 == 0:
            target["profile"] = [{"path": "traits.household_size", "op": ">=", "value": 3}]
        items.append(
            {
                "id": f"offer-{i}",
                "value": rng.uniform(2, 60),
                "priority": rng.choice([1.0, 1.0, 1.5]),
                "for": target,
                "messages": {c: {"body": f"offer {i}"} for c in chosen},
                "caps": [{"max": 1, "per": "week"}] if i % 2 else [],
                "holdout": 0.05,
            }
        )
    return DecideSpec.model_validate(
        {
            "channels": channels,
            "offers": items,
            "caps": [{"max": 3, "per": "day"}, {"max": 1, "per": "day", "channel": "email"}],
            "quiet_hours": {"start": "21:30", "end": "08:00"},
            "min_gap": "90m",
            "holdout": 0.05,
        }
    )


def population(n: int) -> list[tuple[Profile, Signals]]:
    rng = random.Random(2)
    people = []
    for i in range(n):
        peak = rng.randrange(24)
        curve = tuple(
            0.3 if h % 24 == peak else 0.03 + 0.02 * rng.random() for h in range(HOURS_PER_WEEK)
        )
        profile = Profile(
            customer_id=f"c{i}",
            created=(0, "m"),
            traits={"household_size": Stamped(rng.randint(1, 6), 0, "m")},
            emails=["x@example.com"],
            phones=["+15555550100"] if i % 2 else [],
            push_tokens=["t"] if i % 3 else [],
            timezone=Stamped(ZONES[i % len(ZONES)], 0, "m"),
            consent={"sms:marketing": Consent(granted=True, source="b", ts=0, mid="m")}
            if i % 4 == 0
            else {},
        )
        signals = Signals(
            propensity=rng.uniform(0.01, 0.4),
            receptivity=curve,
            channel_affinity={"push": rng.random(), "email": rng.random(), "sms": rng.random()},
            active_device="d" if i % 5 == 0 else None,
            fatigue=rng.uniform(0, 0.05),
        )
        people.append((profile, signals))
    return people


def moments(count: int, customers: int) -> list[Moment]:
    rng = random.Random(3)
    out = []
    at = START
    for i in range(count):
        at += rng.randint(1_000, 120_000)
        c = rng.randrange(customers)
        out.append(
            Moment(
                moment_id=f"mo-{i}",
                customer_id=f"c{c}",
                kind=rng.choice(MOMENT_KINDS),
                name=f"m{i % 31}",
                confidence=rng.uniform(0.3, 1.0),
                at_ms=at,
                expires_ms=at + rng.choice([HOUR, 6 * HOUR, 24 * HOUR]),
                trigger=f"t{i}",
                source="bench",
                details={"category": rng.choice(CATEGORIES)},
            )
        )
    return out


Times = tuple[list[float], list[float]]  # wall and CPU µs per decision


def run_decide(
    arbiter: Arbiter, stream: list[Moment], people: list[tuple[Profile, Signals]]
) -> tuple[Times, dict[str, int]]:
    contacts: dict[str, Contacts] = {}
    wall, cpu = [], []
    actions: dict[str, int] = {}
    for moment in stream:
        profile, signals = people[int(moment.customer_id[1:])]
        mine = contacts.setdefault(moment.customer_id, Contacts())
        t0, c0 = time.perf_counter_ns(), time.thread_time_ns()
        decision = arbiter.decide(moment, profile, signals, mine, moment.at_ms)
        if decision.action != "silent" and decision.send_at_ms is not None:
            mine.reserve(
                Contact(decision.send_at_ms, decision.channel or "", decision.offer or "", "d"),
                arbiter.keep_ms,
            )
        cpu.append((time.thread_time_ns() - c0) / 1000)
        wall.append((time.perf_counter_ns() - t0) / 1000)
        actions[decision.action] = actions.get(decision.action, 0) + 1
    return (wall, cpu), actions


def run_baseline(
    arbiter: Arbiter, stream: list[Moment], people: list[tuple[Profile, Signals]]
) -> Times:
    """A plain trigger: the first offer for the moment's kind, now, if the constraints allow."""
    spec = arbiter.spec
    by_kind = {k: [o for o in spec.offers if k in o.target.kinds] for k in MOMENT_KINDS}
    contacts: dict[str, Contacts] = {}
    wall, cpu = [], []
    for moment in stream:
        profile, signals = people[int(moment.customer_id[1:])]
        mine = contacts.setdefault(moment.customer_id, Contacts())
        t0, c0 = time.perf_counter_ns(), time.thread_time_ns()
        for offer in by_kind[moment.kind][:1]:
            channel = spec.channel(offer.channels[0])
            refusal = check_send(
                channel=channel, offer=offer, profile=profile, contacts=mine,
                at_ms=moment.at_ms, caps=list(spec.caps), quiet=spec.quiet_hours,
                min_gap_ms=spec.min_gap, active_device=signals.active_device,
            )  # fmt: skip
            if refusal is None:
                mine.reserve(Contact(moment.at_ms, channel.name, offer.id, "b"), arbiter.keep_ms)
        cpu.append((time.thread_time_ns() - c0) / 1000)
        wall.append((time.perf_counter_ns() - t0) / 1000)
    return wall, cpu


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer moments and runs")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--offers", type=int, default=50)
    args = parser.parse_args(argv)
    runs = 2 if args.quick else args.runs
    count = 2_000 if args.quick else 10_000
    spec = catalog(args.offers)
    arbiter = Arbiter(spec)
    bandit = Arbiter(spec, BanditRelevance(new_bandit()))
    people = population(1_000)
    stream = moments(count, len(people))
    rows: dict[str, list[tuple[float, float, float, float]]] = {}
    actions: dict[str, int] = {}
    for _ in range(runs):
        times, actions = run_decide(arbiter, stream, people)
        with_bandit, _ = run_decide(bandit, stream, people)
        base = run_baseline(arbiter, stream, people)
        for name, (wall, cpu) in (
            ("decide", times),
            ("decide, bandit", with_bandit),
            ("trigger", base),
        ):
            rows.setdefault(name, []).append(
                (statistics.median(wall), p99(wall), statistics.median(cpu), p99(cpu))
            )
    figures = {
        name: [statistics.median(col) for col in zip(*runs_, strict=True)]
        for name, runs_ in rows.items()
    }
    print(
        f"decisions: {args.offers} offers, 4 channels, {count:,} moments of {len(people):,} "
        f"customers; medians of {runs} runs; µs per decision"
    )
    print(f"  {'':16} {'wall median':>11} {'wall p99':>9} {'CPU median':>11} {'CPU p99':>9}")
    labels = {"decide": "decide", "decide, bandit": "decide, bandit", "trigger": "plain trigger"}
    for name, (wm, wp, cm, cp) in figures.items():
        print(f"  {labels[name]:16} {wm:11.1f} {wp:9.1f} {cm:11.1f} {cp:9.1f}")
    wm, wp, cm, cp = figures["decide"]
    bwm, bwp, bcm, bcp = figures["trigger"]
    print(
        f"  ratio decide/trigger  wall median {wm / bwm:.1f}×  p99 {wp / bwp:.1f}×;"
        f"  CPU median {cm / bcm:.1f}×  p99 {cp / bcp:.1f}×"
    )
    print(f"  decisions per second (one core): {1e6 / wm:,.0f} wall, {1e6 / cm:,.0f} CPU")
    print(f"  actions: {dict(sorted(actions.items()))}")
    for name in ("decide", "decide, bandit"):
        _, wall_p99, _, cpu_p99 = figures[name]
        verdict = [
            f"{what} {'met' if value <= 1000 else 'NOT met'}"
            for what, value in (("wall", wall_p99), ("CPU", cpu_p99))
        ]
        print(f"  target p99 ≤ 1000 µs ({labels[name]}): {', '.join(verdict)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
