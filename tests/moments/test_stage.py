"""The moment stage end to end on real stores: scenarios from real situations, with a fake clock.

Events go through the real engine into the log; the stage reads the log after
its checkpoint, as it does in the server, and the clock is moved by hand.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import msgspec
import pytest

from momently.clock import FakeClock
from momently.engine import Engine
from momently.events import Event, from_ms
from momently.moments.detector import CustomerState, Detection, MomentDetector
from momently.moments.model import Moment
from momently.moments.playbook import Playbook, load_playbook
from momently.moments.records import MomentQuery
from momently.moments.world import WorldEvent
from momently.runtime.stage import MomentStage
from momently.state.profile import Profile
from momently.store.moments_sqlite import SqliteMomentStore
from momently.store.sqlite import SqliteStore
from tests.moments.factories import DAY, HOUR, MINUTE, T0, page, ping, search, track

STORE_12 = (51.5154, -0.1410)  # the example playbook's doughnut store, radius 60 m


@pytest.fixture(scope="module")
def playbook() -> Playbook:
    return load_playbook()


@pytest.fixture(scope="module")
def detector(playbook: Playbook) -> MomentDetector:
    return MomentDetector(playbook)


@dataclass
class Pipeline:
    engine: Engine
    stage: MomentStage
    clock: FakeClock
    path: Path
    detector: MomentDetector

    def send(self, *events: Event) -> None:
        """Ingest, move the clock to the last event, and let the stage catch up."""
        self.engine.ingest(list(events))
        self.clock.set(max(self.clock.now_ms(), *(e.timestamp_ms for e in events)))
        self.stage.catch_up()

    def at(self, now_ms: int) -> list[Moment]:
        """Move the clock and fire what is due."""
        self.clock.set(now_ms)
        self.stage.tick()
        return self.all()

    def all(self, **filters: object) -> list[Moment]:
        found = self.stage.moments.moments(MomentQuery(limit=10_000, **filters))  # type: ignore[arg-type]
        return sorted(found, key=lambda m: (m.at_ms, m.name))

    def names(self, **filters: object) -> list[str]:
        return [m.name for m in self.all(**filters)]

    def restart(self) -> Pipeline:
        """A new stage over the same files, as after a crash."""
        self.stage.moments.close()
        moments = SqliteMomentStore(self.path / "moments.db", synchronous="NORMAL")
        stage = MomentStage(self.engine.store, moments, self.detector, self.clock)
        return Pipeline(self.engine, stage, self.clock, self.path, self.detector)


@pytest.fixture
def pipe(tmp_path: Path, detector: MomentDetector) -> Iterator[Pipeline]:
    store = SqliteStore(tmp_path / "momently.db", synchronous="NORMAL")
    moments = SqliteMomentStore(tmp_path / "moments.db", synchronous="NORMAL")
    clock = FakeClock(T0)
    stage = MomentStage(store, moments, detector, clock)
    pipeline = Pipeline(Engine(store), stage, clock, tmp_path, detector)
    yield pipeline
    pipeline.stage.moments.close()
    store.close()


def test_broken_toaster_at_breakfast_is_friction_and_a_buy_moment(pipe: Pipeline) -> None:
    breakfast = T0 + 7 * HOUR + 40 * MINUTE
    text = "My toaster broke and I have no idea what to buy 😩"
    pipe.send(track("Social Post", breakfast, properties={"text": text, "platform": "x"}))
    found = {m.kind: m for m in pipe.all()}
    assert {"friction", "buy"} <= set(found)
    assert found["buy"].details["category"] == "kitchen-appliances"
    assert found["friction"].name == "friction.sentiment"
    assert found["friction"].expires_ms > found["friction"].at_ms


def test_sick_with_a_sad_emoji_is_friction(pipe: Pipeline) -> None:
    pipe.send(track("Support Message", T0, properties={"text": "I've been sick all week 😢"}))
    assert [m.kind for m in pipe.all(kind="friction")] == ["friction"]


def test_cheerful_post_is_no_friction(pipe: Pipeline) -> None:
    pipe.send(track("Social Post", T0, properties={"text": "Lovely sunny morning! 😊"}))
    assert pipe.all(kind="friction") == []


def test_search_intents_are_classified(pipe: Pipeline) -> None:
    pipe.send(
        search("best 4 slot toaster", T0, user="a"),
        search("toaster shop near me", T0, user="b"),
        search("how to fix a toaster that won't pop", T0, user="c"),
        search("buy toaster", T0, user="d"),
    )
    kinds = {m.customer_id: m.kind for m in pipe.all() if m.name.startswith("intent.")}
    by_user = {
        pipe.engine.store.owner(("user_id", u)): k
        for u, k in zip("abcd", ["know", "go", "do", "buy"], strict=True)
    }
    assert kinds == by_user


def test_absence_fires_when_time_runs_out_and_not_before(pipe: Pipeline) -> None:
    pipe.send(track("Product Added", T0, properties={"product_id": "p1"}))
    pipe.at(T0 + HOUR - 1)
    assert "cart-abandoned" not in pipe.names()
    pipe.at(T0 + HOUR)
    fired = pipe.all(name="cart-abandoned")
    assert [(m.at_ms, m.trigger) for m in fired] == [
        (T0 + HOUR, f"timer:cart-abandoned:{T0 + HOUR}")
    ]


def test_absence_is_cancelled_by_the_purchase(pipe: Pipeline) -> None:
    pipe.send(track("Product Added", T0))
    pipe.send(track("Order Completed", T0 + 20 * MINUTE, properties={"revenue": 30}))
    pipe.at(T0 + 2 * HOUR)
    assert pipe.all(name="cart-abandoned") == []


def test_timers_survive_a_restart(pipe: Pipeline) -> None:
    pipe.send(track("Product Added", T0))
    again = pipe.restart()
    again.at(T0 + HOUR)
    assert again.names(name="cart-abandoned") == ["cart-abandoned"]


def test_a_restart_resumes_from_the_checkpoint_and_writes_nothing_twice(pipe: Pipeline) -> None:
    pipe.send(
        *(
            track("Product Viewed", T0 + i * MINUTE, properties={"product_id": f"p{i}"})
            for i in range(6)
        )
    )
    before = pipe.all()
    assert "comparing-products" in [m.name for m in before]
    again = pipe.restart()
    assert again.stage.position == pipe.stage.position
    assert again.stage.catch_up() == 0
    again.stage.position = 0  # a full replay of the log
    again.stage.catch_up()
    assert again.all() == before


def test_commuter_passing_the_doughnut_store_while_hot_now_is_live(pipe: Pipeline) -> None:
    lat, lon = STORE_12
    walk = [
        ping(lat + 0.004, lon, T0 + 8 * HOUR, device="phone"),
        ping(lat + 0.0002, lon, T0 + 8 * HOUR + 3 * MINUTE, device="phone"),
    ]
    pipe.send(*walk)
    assert "place.enter" in pipe.names()
    pipe.clock.set(T0 + 8 * HOUR + 4 * MINUTE)
    event = WorldEvent.model_validate(
        {
            "id": "hot-1",
            "name": "hot-now",
            "near": {"place": "store-12", "radius_m": 400},
            "properties": {"message": "Hot doughnuts now"},
        }
    )
    result = pipe.stage.world_event(event)
    assert (result.recipients, result.duplicate) == (1, False)
    hot = pipe.all(name="world.hot-now")
    assert [m.details["message"] for m in hot] == ["Hot doughnuts now"]
    assert pipe.stage.world_event(event).duplicate


def test_world_event_skips_customers_far_away_or_stale(pipe: Pipeline) -> None:
    lat, lon = STORE_12
    pipe.send(ping(lat + 0.05, lon, T0, user="far"), ping(lat, lon, T0 - DAY, user="stale"))
    pipe.clock.set(T0 + MINUTE)
    event = WorldEvent.model_validate(
        {"id": "hot-2", "name": "hot-now", "near": {"place": "store-12"}}
    )
    assert pipe.stage.world_event(event).recipients == 0


def test_gps_jitter_at_the_fence_edge_does_not_flap(pipe: Pipeline) -> None:
    lat, lon = STORE_12
    metres = 1 / 111_320  # degrees of latitude per metre
    pipe.send(ping(lat, lon, T0, accuracy=5))  # well inside
    jitter = [55, 70, 62, 78, 58, 74, 66, 80, 60]  # around the 60 m edge, inside the band
    pipe.send(
        *(
            ping(lat + d * metres, lon, T0 + (i + 1) * MINUTE, accuracy=15)
            for i, d in enumerate(jitter)
        )
    )
    moves = [m.name for m in pipe.all() if m.name.startswith("place.")]
    assert moves.count("place.enter") == 1
    assert "place.exit" not in moves


def test_dwell_fires_by_timer_while_the_phone_is_silent(pipe: Pipeline) -> None:
    lat, lon = STORE_12
    pipe.send(ping(lat, lon, T0, accuracy=5))
    pipe.at(T0 + 4 * MINUTE - 1)
    assert "place.dwell" not in pipe.names()
    pipe.at(T0 + 4 * MINUTE)
    assert pipe.names(name="place.dwell") == ["place.dwell"]


def test_clear_braces_journey_across_three_devices(pipe: Pipeline) -> None:
    steps = [
        (0, "phone", page("Clear Braces Options", 0, user="pat")),
        (3, "tablet", search("clear braces cost", 0, user="pat")),
        (6, "laptop", page("Clear Braces Reviews", 0, user="pat")),
        (9, "phone", page("Before After Gallery", 0, user="pat")),
        (14, "laptop", page("Find a Provider", 0, user="pat")),
        (16, "laptop", track("Contact Form Submitted", 0, user="pat")),
        (20, "phone", track("Consultation Booked", 0, user="pat")),
        (
            27,
            "laptop",
            track("Order Completed", 0, user="pat", properties={"category": "orthodontics"}),
        ),
        (
            40,
            "phone",
            track("Social Post", 0, user="pat", properties={"text": "Loving my new smile"}),
        ),
    ]
    for day, device, event in steps:
        at = T0 + day * DAY + 19 * HOUR
        moved = msgspec.structs.replace(
            event,
            timestamp=from_ms(at),
            received_at=from_ms(at),
            context={"device": {"id": device, "type": "ios"}},
        )
        pipe.send(moved)
    customer = pipe.engine.store.owner(("user_id", "pat"))
    assert customer is not None
    [run] = pipe.stage.moments.journey_runs("clear-braces", customer)
    assert run.stage == "share"
    assert run.completed_ms == T0 + 27 * DAY + 19 * HOUR
    assert list(run.entered) == [
        "learn", "cost", "reviews", "before-after", "providers",
        "compare", "decide", "purchase", "share",
    ]  # fmt: skip
    assert set(run.devices) == {"phone", "tablet", "laptop"}
    stages = {
        m.context.get("journeys", {}).get("clear-braces") for m in pipe.all(customer_id=customer)
    }
    assert "cost" in stages


class _Brittle(MomentDetector):
    """A detector that cannot read one particular event."""

    def on_event(
        self, customer_id: str, state: CustomerState, event: Event, profile: Profile | None
    ) -> Detection:
        if event.properties.get("poison"):
            raise RuntimeError("cannot read this one")
        return super().on_event(customer_id, state, event, profile)


def test_an_event_the_detector_cannot_read_is_skipped_and_counted(
    tmp_path: Path, playbook: Playbook
) -> None:
    store = SqliteStore(tmp_path / "log.db", synchronous="NORMAL")
    moments = SqliteMomentStore(tmp_path / "moments.db", synchronous="NORMAL")
    stage = MomentStage(store, moments, _Brittle(playbook), FakeClock(T0))
    Engine(store).ingest(
        [
            track("Order Completed", T0, properties={"poison": True}),
            track("Order Completed", T0 + 1, user="u2", properties={"fulfilment": "collect"}),
        ]
    )
    assert stage.catch_up() == 2
    assert stage.failed == 1
    assert stage.position == 2 and moments.checkpoint() == 2
    assert [m.name for m in moments.moments(MomentQuery())] == ["click-and-collect"]
    moments.close()
    store.close()
