"""The simulated traffic, fed through momently's engine and moment stage, makes moments."""

from __future__ import annotations

from pathlib import Path

import pytest

from momently.clock import FakeClock
from momently.engine import Engine
from momently.moments.detector import MomentDetector
from momently.moments.playbook import load_playbook
from momently.moments.records import MomentQuery
from momently.runtime.stage import MomentStage
from momently.simulate import HOUR, START, Population, World, to_event
from momently.store.moments_sqlite import SqliteMomentStore
from momently.store.sqlite import SqliteStore


@pytest.mark.slow
def test_the_example_playbook_sees_moments_of_every_kind(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "momently.db", synchronous="NORMAL")
    moments = SqliteMomentStore(tmp_path / "moments.db", synchronous="NORMAL")
    clock = FakeClock(START)
    stage = MomentStage(store, moments, MomentDetector(load_playbook()), clock)
    engine = Engine(store)
    world = World(Population(200, seed=4))
    try:
        for hour in range(1, 3 * 24 + 1):
            batch = [to_event(m) for m in world.events_until(START + hour * HOUR)]
            if batch:
                engine.ingest(batch)
            clock.set(START + hour * HOUR)
            stage.catch_up()
            stage.tick()
        found = moments.moments(MomentQuery(limit=100_000))
    finally:
        moments.close()
        store.close()
    kinds = {m.kind for m in found}
    names = {m.name for m in found}
    assert {"buy", "know", "go", "do", "friction"} <= kinds
    assert {"place.enter", "place.dwell", "routine.left", "intent.buy"} <= names
    assert {"cart-abandoned", "viewed-not-bought", "store-locator"} & names
