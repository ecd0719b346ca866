"""``momently demo``: the embedded engine fed by a simulated population in accelerated time.

Three parts, all edges around the unchanged engine:

* :class:`ScaledClock` — the engine's clock runs ``speed`` times faster than the
  wall clock from the simulation's start, so absences, dwells and scheduled
  sends fire in simulated time;
* :class:`SimulatorChannel` — a delivery provider that hands each message to
  the simulated customer it is for; the customer answers from their hidden
  truth (open, click, buy, ignore, opt out), and the answer joins the stream;
* :class:`Feeder` — a thread that takes the simulated events due by the clock's
  now and submits them through the same writer the tracking API uses, so they
  are validated, logged, deduped and detected like any other traffic.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from momently.deliver.errors import PermanentSendError
from momently.deliver.message import OutboundMessage, SendResult
from momently.errors import MomentlyError
from momently.events import Event
from momently.runtime.writer import Writer
from momently.simulate import EXAMPLE_OFFERS, Send, World, to_event

log = logging.getLogger(__name__)


class ScaledClock:
    """Simulated time: ``start_ms`` at creation, then ``speed`` simulated ms per real ms.

    >>> clock = ScaledClock(1_000, speed=60.0, wall=lambda: 10.0)
    >>> clock.now_ms()
    1000
    """

    def __init__(
        self, start_ms: int, *, speed: float, wall: Callable[[], float] = time.monotonic
    ) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.start_ms = start_ms
        self.speed = speed
        self._wall = wall
        self._t0 = wall()

    def now_ms(self) -> int:
        return self.start_ms + int((self._wall() - self._t0) * 1000 * self.speed)


class SimulatorChannel:
    """Delivers to simulated customers; their answers come back as events.

    ``user_of`` maps momently's canonical customer id to the simulator's user
    id (the customer's ``userId``). The simulator itself is guarded by ``lock``,
    shared with the :class:`Feeder`.
    """

    name = "simulator"
    dedupes = True  # the simulated customer sees one message per decision id

    def __init__(
        self, world: World, lock: threading.Lock, user_of: Callable[[str], str | None]
    ) -> None:
        self.world = world
        self.lock = lock
        self.user_of = user_of

    def send(self, message: OutboundMessage) -> SendResult:
        user = self.user_of(message.customer_id)
        if user is None:
            raise PermanentSendError(f"no simulated customer behind {message.customer_id}")
        offer = str(message.data.get("offer", ""))
        category = EXAMPLE_OFFERS.get(offer, "*")
        with self.lock:
            send = Send(user, message.kind, offer, category, self.world.now_ms, message.decision_id)
            try:
                answer = self.world.deliver(send)
            except KeyError as error:
                raise PermanentSendError(str(error)) from None
        if not answer.delivered:
            raise PermanentSendError(f"simulated customer refused: {answer.reason}")
        return SendResult(provider=self.name, message_id=message.key)

    def close(self) -> None:
        return None


class Feeder:
    """Submits the simulated events due by the clock, every ``interval_s`` of real time."""

    def __init__(
        self,
        world: World,
        lock: threading.Lock,
        writer: Writer,
        clock: ScaledClock,
        *,
        interval_s: float = 0.25,
        batch: int = 500,
    ) -> None:
        self.world = world
        self.lock = lock
        self.writer = writer
        self.clock = clock
        self.interval_s = interval_s
        self.batch = batch
        self.submitted = 0
        self.refused = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="momently-demo", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def step(self) -> int:
        """Submit what is due now; returns how many events went in."""
        now = self.clock.now_ms()
        events: list[Event] = []
        with self.lock:
            for message in self.world.events_until(now):
                try:
                    events.append(to_event(message, received_ms=now))
                except MomentlyError:
                    self.refused += 1  # counted, as ingestion counts what it refuses
        for start in range(0, len(events), self.batch):
            self.writer.submit(events[start : start + self.batch]).result()
        self.submitted += len(events)
        return len(events)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.step()
            except Exception:
                log.exception("demo feeder step failed; going on")

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
