"""Fencing tokens: a store refuses a commit from an owner whose lease has passed on."""

from __future__ import annotations

from pathlib import Path

import pytest

from momently.errors import Fenced
from momently.events import Event, from_ms
from momently.moments.records import MomentBatch
from momently.store.memory import MemoryStore
from momently.store.moments_memory import MemoryMomentStore
from momently.store.moments_sqlite import SqliteMomentStore
from momently.store.sqlite import SqliteStore
from momently.types import Changes, Fence


def _event(n: int) -> Event:
    return Event(
        message_id=f"m{n}", type="track", event="Product Viewed", user_id="u1",
        timestamp=from_ms(1_790_000_000_000 + n), received_at=from_ms(1_790_000_000_000 + n),
    )  # fmt: skip


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_store_refuses_an_older_token_and_keeps_the_position(kind: str, tmp_path: Path) -> None:
    store = MemoryStore() if kind == "memory" else SqliteStore(tmp_path / "s.db")
    assert store.fence() is None
    store.commit([("c1", _event(1))], Changes(fence=Fence(5, 10)))
    assert store.fence() == Fence(5, 10)
    store.commit([], Changes(fence=Fence(7, 10)))  # the new owner registers its token
    with pytest.raises(Fenced):
        store.commit([("c1", _event(2))], Changes(fence=Fence(5, 11)))
    assert store.stats()["events"] == 1  # nothing of the refused commit was written
    store.commit([("c1", _event(2))], Changes(fence=Fence(7, 12)))
    assert store.fence() == Fence(7, 12)
    store.close()


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_moment_store_refuses_an_older_token(kind: str, tmp_path: Path) -> None:
    moments = MemoryMomentStore() if kind == "memory" else SqliteMomentStore(tmp_path / "m.db")
    moments.commit(MomentBatch(checkpoint=3, fence=4))
    moments.commit(MomentBatch(checkpoint=4, fence=9))
    with pytest.raises(Fenced):
        moments.commit(MomentBatch(checkpoint=8, fence=4))
    assert moments.checkpoint() == 4
    moments.commit(MomentBatch(checkpoint=5))  # embedded mode: no token, no check
    assert moments.checkpoint() == 5
    moments.close()
