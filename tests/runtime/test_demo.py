"""The demo's parts: simulated time, the feeder, and delivery to simulated customers."""

from __future__ import annotations

import threading

import pytest

from momently.deliver.errors import PermanentSendError
from momently.deliver.message import OutboundMessage
from momently.engine import Engine
from momently.runtime.demo import Feeder, ScaledClock, SimulatorChannel
from momently.runtime.writer import Writer
from momently.simulate import HOUR, Population, World
from momently.store.memory import MemoryStore


class Wall:
    """A wall clock moved by hand (seconds)."""

    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_scaled_clock_runs_speed_times_faster() -> None:
    wall = Wall()
    clock = ScaledClock(5_000, speed=3600.0, wall=wall)
    wall.t += 1.0
    assert clock.now_ms() == 5_000 + HOUR
    with pytest.raises(ValueError, match="speed"):
        ScaledClock(0, speed=0)


def test_the_feeder_submits_what_is_due_through_the_writer() -> None:
    world = World(Population(20, seed=3))
    wall = Wall()
    clock = ScaledClock(world.start_ms, speed=3600.0, wall=wall)
    store = MemoryStore()
    writer = Writer(Engine(store))
    feeder = Feeder(world, threading.Lock(), writer, clock)
    try:
        assert feeder.step() == 0  # nothing is due at the very start
        wall.t += 12.0  # twelve simulated hours
        first = feeder.step()
        wall.t += 12.0
        second = feeder.step()
        assert first > 0 and second > 0
        assert store.stats()["events"] == first + second == feeder.submitted
        assert feeder.refused == 0
        # every stored event happened by the clock's now
        last = store.read_log(0, 100_000)[-1]
        assert last.event.timestamp_ms <= clock.now_ms()
    finally:
        writer.close()


def _message(customer: str, offer: str = "cart-reminder") -> OutboundMessage:
    return OutboundMessage(
        key=f"k-{customer}",
        decision_id=f"de-{customer}",
        customer_id=customer,
        channel="in_app",
        kind="in_app",
        to="device",
        text="hello",
        data={"offer": offer},
    )


def test_a_message_reaches_its_simulated_customer_and_their_answer_joins_the_stream() -> None:
    world = World(Population(5, seed=2))
    users = {f"cust-{i}": world.population[i].user_id for i in range(5)}
    channel = SimulatorChannel(world, threading.Lock(), users.get)
    list(world.events_until(world.start_ms + 10 * HOUR))  # let the day begin
    result = channel.send(_message("cust-1"))
    assert result.provider == "simulator" and result.message_id == "k-cust-1"
    assert world.tally.messages[1] == 1
    with pytest.raises(PermanentSendError, match="no simulated customer"):
        channel.send(_message("stranger"))
