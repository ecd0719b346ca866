"""The moment stage gives way to ingestion, within bounds.

While the writer has events queued the stage leaves the log alone (it would take
the GIL from the writer and the event loop); it catches up once ingestion pauses,
and takes a step anyway once it is ``max_lag`` events or ``max_defer`` seconds
behind, so sustained load cannot starve it.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator

import pytest

from momently.clock import FakeClock
from momently.engine import Engine
from momently.moments.detector import MomentDetector
from momently.moments.playbook import load_playbook
from momently.runtime.stage import MomentStage, StageRunner
from momently.store.memory import MemoryStore
from momently.store.moments_memory import MemoryMomentStore
from tests.moments.factories import MINUTE, T0, track

WAIT_S = 10.0  # upper bound on any wait below; each normally ends in milliseconds


class Ingestion:
    """Whether the (pretend) writer has events queued, settable by the test."""

    def __init__(self) -> None:
        self.queued = False
        self.asked = threading.Event()  # set each time the stage asks

    def __call__(self) -> bool:
        self.asked.set()
        return self.queued


@pytest.fixture
def parts() -> Iterator[tuple[Engine, MomentStage]]:
    store = MemoryStore()
    stage = MomentStage(store, MemoryMomentStore(), MomentDetector(load_playbook()), FakeClock(T0))
    yield Engine(store), stage
    store.close()


def until(condition: Callable[[], bool]) -> None:
    """Wait, bounded, for a condition another thread makes true."""
    done = threading.Event()
    deadline = WAIT_S
    while not condition():
        if deadline <= 0:
            raise AssertionError("condition not met in time")
        done.wait(0.005)
        deadline -= 0.005


def send(engine: Engine, runner: StageRunner, count: int) -> None:
    engine.ingest([track("Product Viewed", T0 + i * MINUTE, user=f"u{i}") for i in range(count)])
    runner.wake(count)


def test_the_stage_waits_while_the_writer_has_work_and_catches_up_after(
    parts: tuple[Engine, MomentStage],
) -> None:
    engine, stage = parts
    busy = Ingestion()
    busy.queued = True
    runner = StageRunner(stage, tick_seconds=60, busy=busy, max_lag=1_000, max_defer=60)
    try:
        send(engine, runner, 5)
        until(lambda: runner.deferred > 0)
        assert stage.position == 0  # it gave way: nothing read yet
        busy.queued = False
        runner.wake()
        until(lambda: stage.position == 5)
    finally:
        runner.close()


def test_falling_max_lag_behind_makes_the_stage_step_under_load(
    parts: tuple[Engine, MomentStage],
) -> None:
    engine, stage = parts
    busy = Ingestion()
    busy.queued = True  # ingestion never pauses
    runner = StageRunner(stage, tick_seconds=60, busy=busy, max_lag=10, max_defer=60)
    try:
        send(engine, runner, 4)
        until(lambda: runner.deferred > 0)
        assert stage.position == 0
        send(engine, runner, 8)  # 12 behind: past max_lag
        until(lambda: stage.position == 12)
    finally:
        runner.close()


def test_a_stage_kept_waiting_max_defer_steps_anyway(parts: tuple[Engine, MomentStage]) -> None:
    engine, stage = parts
    busy = Ingestion()
    busy.queued = True
    seconds = itertools.count(0.0, 1.0)  # each reading of the clock a second later
    runner = StageRunner(
        stage,
        tick_seconds=60,
        busy=busy,
        max_lag=1_000,
        max_defer=0.05,
        monotonic=lambda: next(seconds),
    )
    try:
        send(engine, runner, 3)
        until(lambda: stage.position == 3)
        assert runner.deferred > 0
    finally:
        runner.close()


def test_timers_fire_while_the_stage_is_still_behind_the_log(
    parts: tuple[Engine, MomentStage],
) -> None:
    engine, stage = parts
    stage.step = 2  # every pass takes a full step of 2 until the 10th event
    fired_at: list[int] = []
    tick = stage.tick

    def counted_tick() -> int:
        fired_at.append(stage.position)
        return tick()

    setattr(stage, "tick", counted_tick)  # noqa: B010 - an instance attribute on purpose
    minutes = itertools.count(0.0, 60.0)  # a tick's worth of seconds between readings
    runner = StageRunner(stage, tick_seconds=60, monotonic=lambda: next(minutes))
    try:
        send(engine, runner, 10)
        until(lambda: stage.position == 10)
    finally:
        runner.close()
    assert any(position < 10 for position in fired_at), fired_at


def test_without_a_busy_signal_the_stage_keeps_pace(parts: tuple[Engine, MomentStage]) -> None:
    engine, stage = parts
    runner = StageRunner(stage, tick_seconds=60)
    try:
        send(engine, runner, 3)
        until(lambda: stage.position == 3)
        assert runner.deferred == 0
    finally:
        runner.close()


def test_closing_catches_up_even_while_the_writer_is_busy(
    parts: tuple[Engine, MomentStage],
) -> None:
    engine, stage = parts
    busy = Ingestion()
    busy.queued = True
    runner = StageRunner(stage, tick_seconds=60, busy=busy, max_lag=1_000, max_defer=60)
    send(engine, runner, 4)
    until(lambda: runner.deferred > 0)
    runner.close()
    assert stage.position == 4
