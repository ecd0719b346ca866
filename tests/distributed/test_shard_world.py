"""A world event in a partition's stream: applied in its place, once, whatever replays."""

from __future__ import annotations

from pathlib import Path

from momently.clock import FakeClock
from momently.distributed.shard import Shard
from momently.distributed.world import HEADER, decode_world, is_world
from momently.events import Event, from_ms
from momently.moments.detector import MomentDetector
from momently.moments.playbook import load_playbook
from momently.moments.records import MomentQuery
from momently.moments.world import WorldEvent

T0 = 1_790_000_000_000
NEAR = {"location": {"latitude": 51.5154, "longitude": -0.1410, "accuracy": 5}}


def located(n: int, user: str) -> Event:
    return Event(
        message_id=f"loc-{n}", type="track", timestamp=from_ms(T0 + n),
        received_at=from_ms(T0 + n), user_id=user, event="Location Updated",
        context=NEAR,
    )  # fmt: skip


def world() -> WorldEvent:
    body = {"id": "hot-1", "name": "hot-now", "at": T0 + 10, "near": {"place": "store-12"}}
    return decode_world(WorldEvent.model_validate(body).model_dump_json().encode())


def open_shard(tmp_path: Path, token: int) -> Shard:
    return Shard.open(
        0, token, f"sqlite:///{tmp_path}/p{{partition}}.db", f"sqlite:///{tmp_path}/m{{partition}}.db",
        MomentDetector(load_playbook()), FakeClock(T0 + 20),
    )  # fmt: skip


def world_moments(shard: Shard) -> list[str]:
    found = shard.moments.moments(MomentQuery(name="world.hot-now", limit=100))
    return sorted(m.customer_id for m in found)


def test_world_event_after_the_events_before_it_and_once(tmp_path: Path) -> None:
    assert is_world({HEADER: "1"}) and not is_world(None) and not is_world({})
    shard = open_shard(tmp_path, 1)
    try:
        # Stream order: cat is located before the world event, dan after it.
        shard.apply([(1, located(1, "cat")), (2, world()), (3, located(3, "dan"))])
        assert shard.position == 3
        cat = shard.store.canonical(shard.store.owner(("user_id", "cat")) or "")
        assert world_moments(shard) == [cat]
        # A redelivery of what was applied changes nothing.
        shard.apply([(2, world()), (3, located(3, "dan"))])
        assert world_moments(shard) == [cat]
    finally:
        shard.close()
    # A takeover after a crash between the stage's commit and the position's: the
    # world message is applied again and the stage finds its id already committed.
    again = open_shard(tmp_path, 2)
    try:
        again.position = 1
        again.apply([(2, world())])
        assert again.position == 2
        assert world_moments(again) == [cat]
    finally:
        again.close()
