"""Online models: learn + predict cost per event, memory per customer, prequential metrics.

Measured on a synthetic population whose truth is known
(:mod:`momently.predict.synthetic`: time zones, attentive hours, answering
channels, buyers and browsers, customers who quit under pressure). The first
40% of the stream trains the models untimed; then, per event:

* **learn** — ``Predictor.on_event`` plus the timers it makes due (labels of
  customers gone quiet): labels learned, prequential scoring, next need;
* **predict, all answers** — ``Predictor.predictions`` for the event's customer
  with every answer read (propensity, receptivity now, channels, best channel,
  devices, active device, fatigue, next touchpoints and categories): what the
  API's ``/api/customers/{id}/predictions`` computes;
* **predict, a decision's read** — ``Signals.of(predictions)``, then the
  week's mean and its hours from now to the 24-hour horizon: what the decide
  layer reads (propensity, the receptivity of its slots against the week's
  mean, channels, active device, fatigue, next categories). Answers are worked
  out when first read, and the moment stage asks only on an event that made a
  moment to decide;
* **learn + predict** — learn, then every answer, on every event: the upper
  bound, as if every event were decided on and its predictions shown
  (target: median ≤ 50 µs);
* **learn + a decision's read** — learn, then what a decision reads: the cost
  of an event that is decided on; an event that is not costs **learn** alone;
* **baseline** — decoding and encoding the customer's whole moment state
  (``CustomerState``, msgpack), which the stage pays per customer anyway; the
  ratios against it are what holds across noisy machines.

Also: each customer's model state (``PredictState``) as the store keeps it,
msgpack-encoded (bytes), and the live prequential
metrics against their naive baselines, with how often the truth is recovered.

Times are the thread's CPU time by default (``--clock cpu``): on a shared
machine wall time (``--clock wall``) also counts other processes' turns on
the core. ``--bytecodes N`` counts instead the Python bytecodes that learning
and every answer run, per event, over N events after the training 40%: a
measure no other process changes (C code, river's Cython included, counts
nothing). Run ``python benchmarks/bench_predict.py [--quick] [--runs N]
[--clock cpu|wall] [--bytecodes N]``; it prints the medians of the runs.
"""

from __future__ import annotations

import argparse
import heapq
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import msgspec

from momently.decide.signals import Signals
from momently.moments.detector import CustomerState, decode_state, encode_state
from momently.predict import Predictor
from momently.predict.localtime import hour_of_week
from momently.predict.replay import replay
from momently.predict.state import PredictState
from momently.predict.synthetic import Stream, population
from momently.state.profile import Profile

TARGET_MEDIAN_US = 50.0
_encoder = msgspec.msgpack.Encoder()


@dataclass
class Run:
    learn: list[float] = field(default_factory=list)  # µs per event
    predict: list[float] = field(default_factory=list)
    decision: list[float] = field(default_factory=list)
    total: list[float] = field(default_factory=list)
    decided: list[float] = field(default_factory=list)
    baseline: list[float] = field(default_factory=list)
    memory: list[int] = field(default_factory=list)  # bytes per customer
    predictor: Predictor | None = None
    states: dict[str, CustomerState] = field(default_factory=dict)


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


def decision_read(
    predictor: Predictor, state: PredictState, profile: Profile | None, now_ms: int
) -> float:
    """What a decision reads of the predictions: its :class:`Signals`, then, as its
    timeline does (``momently.decide.slots``), the week's mean and the hours of its
    slots — now and each hour to the default 24-hour horizon. Returns their sum."""
    predictions = predictor.predictions(state, profile, now_ms)
    signals = Signals.of(predictions)
    week = signals.receptivity
    now = hour_of_week(now_ms, predictions.receptivity.timezone)
    mean = sum(week) / len(week)
    return mean + sum(week[(now + h) % 168] for h in range(25))


def one_run(stream: Stream, clock: Callable[[], int]) -> Run:
    predictor = Predictor()
    split = int(len(stream.events) * 0.4)
    warm = replay(predictor, stream.events[:split], stream.profiles)
    states = {c: CustomerState(predict=s) for c, s in warm.items()}
    timers: list[tuple[int, str]] = []
    for customer, state in states.items():
        due = predictor.next_due(state.predict)
        if due is not None:
            timers.append((due, customer))
    heapq.heapify(timers)
    run = Run(predictor=predictor, states=states)
    watermark = 0
    for customer, event in stream.events[split:]:
        profile = stream.profiles.get(customer)
        state = states.get(customer) or states.setdefault(customer, CustomerState())
        started = clock()
        watermark = max(watermark, event.timestamp_ms)
        while timers and timers[0][0] <= watermark:
            due, quiet = heapq.heappop(timers)
            predict = states[quiet].predict
            if predictor.next_due(predict) == due:
                predictor.on_time(quiet, predict, watermark)
                later = predictor.next_due(predict)
                if later is not None:
                    heapq.heappush(timers, (later, quiet))
        before = predictor.next_due(state.predict)
        predictor.on_event(customer, state.predict, event, profile)
        after = predictor.next_due(state.predict)
        if after is not None and after != before:
            heapq.heappush(timers, (after, customer))
        learned = clock()
        predictor.predictions(state.predict, profile, event.timestamp_ms).everything()
        predicted = clock()
        decision_read(predictor, state.predict, profile, event.timestamp_ms)
        read = clock()
        decode_state(encode_state(state))
        done = clock()
        run.learn.append((learned - started) / 1000)
        run.predict.append((predicted - learned) / 1000)
        run.decision.append((read - predicted) / 1000)
        run.total.append((predicted - started) / 1000)
        run.decided.append((learned - started + read - predicted) / 1000)
        run.baseline.append((done - read) / 1000)
    run.memory = [len(_encoder.encode(state.predict)) for state in states.values()]
    return run


def bytecodes(stream: Stream, events: int) -> tuple[list[int], list[int], list[int]]:
    """Python bytecodes run per event by learning (with the timers), by every answer and
    by a decision's read (:func:`decision_read` on fresh predictions)."""
    predictor = Predictor()
    split = int(len(stream.events) * 0.4)
    states = replay(predictor, stream.events[:split], stream.profiles)
    count = 0

    def opcodes(frame: FrameType, event: str, arg: Any) -> Any:
        nonlocal count
        if event == "opcode":
            count += 1
        return opcodes

    def calls(frame: FrameType, event: str, arg: Any) -> Any:
        frame.f_trace_opcodes = True
        return opcodes

    learned: list[int] = []
    answered: list[int] = []
    read: list[int] = []
    for customer, event in stream.events[split : split + events]:
        profile = stream.profiles.get(customer)
        state = states.setdefault(customer, PredictState())
        count = 0
        sys.settrace(calls)
        predictor.on_event(customer, state, event, profile)
        sys.settrace(None)
        learned.append(count)
        count = 0
        sys.settrace(calls)
        predictor.predictions(state, profile, event.timestamp_ms).everything()
        sys.settrace(None)
        answered.append(count)
        count = 0
        sys.settrace(calls)
        decision_read(predictor, state, profile, event.timestamp_ms)
        sys.settrace(None)
        read.append(count)
    return learned, answered, read


def truth(run: Run, stream: Stream) -> tuple[float, float, int]:
    """How often the best hour and the best channel are the customer's true ones."""
    assert run.predictor is not None
    now = stream.events[-1][1].timestamp_ms
    hours = channels = counted = 0
    for customer, truth in stream.truth.items():
        state = run.states[customer].predict
        if sum(n for n, _ in state.channels.values()) < 20:
            continue  # opted out early: too little to go on
        found = run.predictor.predictions(state, stream.profiles[customer], now)
        counted += 1
        hours += found.receptivity.best_hour() == truth.hour
        channels += found.best_channel == truth.channel
    return hours / max(1, counted), channels / max(1, counted), counted


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short run")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    parser.add_argument(
        "--bytecodes", type=int, default=0, metavar="N", help="count bytecodes over N events"
    )
    args = parser.parse_args(argv)
    clock = time.thread_time_ns if args.clock == "cpu" else time.perf_counter_ns
    customers, days = (300, 14) if args.quick else (1_500, 21)
    runs = 2 if args.quick else args.runs
    stream = population(customers, days=days, seed=7)
    if args.bytecodes > 0:
        learned, answered, read = bytecodes(stream, args.bytecodes)
        both = [a + b for a, b in zip(learned, answered, strict=True)]
        decided = [a + b for a, b in zip(learned, read, strict=True)]
        print(f"Python bytecodes per event over {len(both):,} events after the training 40%:")
        for label, values in (
            ("learn", learned),
            ("every answer", answered),
            ("learn + every answer", both),
            ("a decision's read", read),
            ("learn + a decision's read", decided),
        ):
            print(
                f"  {label:25s} median {statistics.median(values):7,.0f}"
                f"  mean {statistics.fmean(values):7,.0f}"
            )
        return 0
    print(
        f"{customers} synthetic customers, {days} days, {len(stream.events):,} events; "
        f"medians of {runs} runs (the first 40% of each run trains, untimed); "
        f"{'thread CPU' if args.clock == 'cpu' else 'wall'} time"
    )
    results = [one_run(stream, clock) for _ in range(runs)]

    def med(pick: str, stat: str) -> float:
        values = [getattr(r, pick) for r in results]
        if stat == "median":
            return float(statistics.median(statistics.median(v) for v in values))
        return float(statistics.median(p99(v) for v in values))

    base = med("baseline", "median")
    base99 = med("baseline", "p99")
    print(f"  {'per event, µs':34s} {'median':>8s} {'p99':>8s} {'× baseline':>11s}")
    for label, pick in (
        ("learn (on_event + timers)", "learn"),
        ("predict, all answers", "predict"),
        ("predict, a decision's read", "decision"),
        ("learn + predict (all, every event)", "total"),
        ("learn + a decision's read", "decided"),
        ("baseline: state decode+encode", "baseline"),
    ):
        m, p = med(pick, "median"), med(pick, "p99")
        print(f"  {label:34s} {m:8.1f} {p:8.1f} {m / base:6.1f} / {p / base99:4.1f}")
    for label, pick in (
        ("learn + predict, every event", "total"),
        ("learn + a decision's read", "decided"),
        ("learn alone (an event not decided on)", "learn"),
    ):
        m = med(pick, "median")
        verdict = "met" if m <= TARGET_MEDIAN_US else "NOT met on this machine"
        print(f"  target median ≤ {TARGET_MEDIAN_US:.0f} µs, {label}: {m:.1f} µs, {verdict}")
    memory = results[-1].memory
    print(
        f"  model state per customer, encoded: median {statistics.median(memory):.0f} B, "
        f"p99 {p99([float(m) for m in memory]):.0f} B, max {max(memory)} B"
    )
    last = results[-1]
    assert last.predictor is not None
    print("  prequential metrics (each prediction scored before its label) vs a naive baseline:")
    for report in last.predictor.metrics():
        shown = {k: v for k, v in report.metrics.items() if k != "labels"}
        keys = ", ".join(
            f"{k} {v:.3f}"
            + (f" (baseline {report.baseline[k]:.3f})" if k in report.baseline else "")
            for k, v in shown.items()
            if k in ("rocAuc", "logLoss", "calibrationError") or k.startswith("hitAt")
        )
        labels = int(report.metrics.get("labels", 0))
        print(f"    {report.name:16s} {labels:>7,} labels  {keys}")
    hours, channels, counted = truth(last, stream)
    print(
        f"  truth recovered for {counted} customers with 20+ deliveries: "
        f"best hour {hours:.0%}, best channel {channels:.0%}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
