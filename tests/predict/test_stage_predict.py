"""The models inside the moment stage, on real stores: saved, restarted, timed, rolled back."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from momently.clock import FakeClock
from momently.engine import Engine
from momently.events import Event
from momently.moments.detector import MomentDetector
from momently.moments.playbook import load_playbook
from momently.moments.records import ModelSnapshot, MomentBatch
from momently.predict import Predictions
from momently.predict.settings import DAY, HOUR, MINUTE
from momently.predict.synthetic import START, event, population
from momently.runtime.stage import MomentStage
from momently.store.moments_memory import MemoryMomentStore
from momently.store.moments_sqlite import SqliteMomentStore
from momently.store.sqlite import SqliteStore
from momently.types import MomentStore


@pytest.fixture(scope="module")
def detector() -> MomentDetector:
    return MomentDetector(load_playbook())


@dataclass
class Pipe:
    engine: Engine
    store: SqliteStore
    stage: MomentStage
    clock: FakeClock
    path: Path
    detector: MomentDetector

    def send(self, events: list[Event]) -> None:
        for start in range(0, len(events), 500):
            part = events[start : start + 500]
            self.engine.ingest(part)
            self.clock.set(max(self.clock.now_ms(), *(e.timestamp_ms for e in part)))
            self.stage.catch_up()

    def customer(self, user: str) -> str:
        owner = self.store.owner(("user_id", user))
        assert owner is not None
        return owner

    def restart(self) -> Pipe:
        self.stage.moments.close()
        moments = SqliteMomentStore(self.path / "moments.db", synchronous="NORMAL")
        stage = MomentStage(self.store, moments, self.detector, self.clock)
        return Pipe(self.engine, self.store, stage, self.clock, self.path, self.detector)


@pytest.fixture
def make_pipe(tmp_path: Path, detector: MomentDetector) -> Iterator[Callable[[str], Pipe]]:
    pipes: list[Pipe] = []

    def make(name: str) -> Pipe:
        path = tmp_path / name
        store = SqliteStore(path / "momently.db", synchronous="NORMAL")
        moments = SqliteMomentStore(path / "moments.db", synchronous="NORMAL")
        clock = FakeClock(START)
        stage = MomentStage(store, moments, detector, clock)
        pipe = Pipe(Engine(store), store, stage, clock, path, detector)
        pipes.append(pipe)
        return pipe

    yield make
    for pipe in pipes:
        pipe.stage.moments.close()
        pipe.store.close()


def _view(found: Predictions) -> tuple[object, ...]:
    return (
        round(found.propensity, 9),
        round(found.fatigue, 9),
        found.receptivity.weekly(),
        dict(found.channels),
        dict(found.devices),
        found.active_device,
        found.next_touchpoints,
        found.next_categories,
    )


def _metrics(stage: MomentStage) -> list[tuple[str, str, int, dict[str, float]]]:
    return [(r.name, r.version, r.updates, r.metrics) for r in stage.predictor.metrics()]


def test_models_survive_a_restart_and_go_on_as_if_nothing_happened(
    make_pipe: Callable[[str], Pipe],
) -> None:
    events = [e for _, e in population(40, days=10, seed=8).events]
    half = len(events) // 2
    straight = make_pipe("straight")
    straight.send(events)
    broken = make_pipe("broken")
    broken.send(events[:half])
    saved = _metrics(broken.stage)
    broken = broken.restart()
    assert _metrics(broken.stage) == saved  # population models and live metrics reloaded
    broken.send(events[half:])
    assert _metrics(broken.stage) == _metrics(straight.stage)
    now = events[-1].timestamp_ms
    for user in ("c00000", "c00007", "c00031"):
        a = straight.stage.predictions(straight.customer(user), now)
        b = broken.stage.predictions(broken.customer(user), now)
        assert _view(a) == _view(b)
    assert [r.updates for r in broken.stage.predictor.metrics()] != [0] * 6


def test_a_customer_who_goes_quiet_is_labelled_by_the_timer(
    make_pipe: Callable[[str], Pipe],
) -> None:
    pipe = make_pipe("quiet")
    pipe.send([event("Email Delivered", START, "quiet")])
    channel = {r.name: r for r in pipe.stage.predictor.metrics()}["channel"]
    assert channel.updates == 0
    # Someone else's events move event time on; the clock follows; the timer fires.
    later = START + DAY + 2 * HOUR
    pipe.send([event("Product Viewed", later, "other")])
    pipe.clock.set(later + HOUR)
    pipe.stage.tick()
    channel = {r.name: r for r in pipe.stage.predictor.metrics()}["channel"]
    assert channel.updates == 1
    state = pipe.stage.moments.states([pipe.customer("quiet")])
    assert state  # and the customer's state was written with it
    quiet = pipe.stage.predictions(pipe.customer("quiet"))
    assert quiet.channels["email"] < quiet.channels["push"]


def test_a_timer_does_not_label_before_event_time_has_passed(
    make_pipe: Callable[[str], Pipe],
) -> None:
    pipe = make_pipe("early")
    pipe.send([event("Email Delivered", START, "early")])
    pipe.clock.set(START + 3 * DAY)  # wall time moves on, event time does not
    pipe.stage.tick()
    assert {r.name: r.updates for r in pipe.stage.predictor.metrics()}["channel"] == 0
    due = pipe.stage.next_timer()
    assert due is not None and due > pipe.clock.now_ms()  # and it does not spin


def test_a_failed_commit_rolls_the_population_models_back_too(
    make_pipe: Callable[[str], Pipe], monkeypatch: pytest.MonkeyPatch
) -> None:
    events = [e for _, e in population(30, days=8, seed=9).events]
    half = len(events) // 2
    straight = make_pipe("straight")
    straight.send(events)
    flaky = make_pipe("flaky")
    flaky.send(events[:half])
    real = flaky.stage.moments.commit
    calls = {"n": 0}

    def fail_once(batch: MomentBatch) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError("disk full")
        real(batch)

    monkeypatch.setattr(flaky.stage.moments, "commit", fail_once)
    flaky.engine.ingest(events[half:])
    flaky.clock.set(events[-1].timestamp_ms)
    with pytest.raises(OSError):
        flaky.stage.catch_up()
    flaky.stage.catch_up()  # retried from the checkpoint, models as they were there
    assert _metrics(flaky.stage) == _metrics(straight.stage)


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_stores_keep_the_latest_snapshot_of_each_model(kind: str, tmp_path: Path) -> None:
    store: MomentStore = (
        MemoryMomentStore()
        if kind == "memory"
        else SqliteMomentStore(tmp_path / "m.db", synchronous="NORMAL")
    )
    assert store.model_snapshots() == {}
    store.commit(
        MomentBatch(models={"a": ModelSnapshot("a/v1", b"1"), "b": ModelSnapshot("b", b"")})
    )
    store.commit(MomentBatch(models={"a": ModelSnapshot("a/v2", b"2")}, checkpoint=3))
    assert store.model_snapshots() == {
        "a": ModelSnapshot("a/v2", b"2"),
        "b": ModelSnapshot("b", b""),
    }
    store.close()


def test_a_snapshot_of_another_version_is_not_loaded(make_pipe: Callable[[str], Pipe]) -> None:
    pipe = make_pipe("versions")
    pipe.send([event("Product Viewed", START + i * MINUTE, "v") for i in range(3)])
    stored = pipe.stage.moments.model_snapshots()
    assert set(stored) == {"next_touchpoint"}
    pipe.stage.moments.commit(
        MomentBatch(models={"next_touchpoint": ModelSnapshot("next_touchpoint/v0.old", b"junk")})
    )
    again = pipe.restart()
    report = {r.name: r for r in again.stage.predictor.metrics()}["next_touchpoint"]
    assert report.updates == 0  # started afresh rather than from a model it does not fit
