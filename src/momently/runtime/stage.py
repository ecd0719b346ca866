"""The moment stage: reads the event log after its checkpoint, runs the detector and
the online models, and commits moments, customer state (the models' per-customer
state with it), the population models' snapshots and the new checkpoint in one
transaction.

It runs beside the ingest writer, never in front of it: an event is
acknowledged once it is in the log, and its moments follow within
milliseconds. Because the stage only reads the log and its ids are
deterministic, a restart (or a crash mid-step) resumes from the checkpoint
and rewrites exactly what it would have written. Timers (absences running
out, dwells, routines, and the models' labels of customers who went quiet) sit
in one heap for all customers and fire from the injected clock; no thread
sleeps per customer.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from momently.clock import Clock
from momently.decide.records import Decision
from momently.decide.signals import Signals
from momently.decide.step import BANDIT, BANDIT_VERSION, Decider
from momently.moments.audience import AudienceIndex
from momently.moments.detector import (
    CustomerState,
    Detection,
    MomentDetector,
    decode_state,
    encode_state,
)
from momently.moments.journey_stats import record_of
from momently.moments.model import Moment
from momently.moments.records import ModelSnapshot, MomentBatch, StateRow
from momently.moments.world import WorldEvent
from momently.predict import Predictions, Predictor
from momently.state.profile import Profile
from momently.types import LogRecord, MomentStore, Store

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class WorldResult:
    """What became of one world event."""

    id: str
    recipients: int
    duplicate: bool


@dataclass(slots=True)
class Decided:
    """What one step decided: new decisions, and planned sends called off (id -> why)."""

    decisions: list[Decision] = field(default_factory=list)
    cancelled: dict[str, str] = field(default_factory=dict)


class MomentStage:
    """Single-threaded core of the stage; :class:`StageRunner` drives it in a thread."""

    def __init__(
        self,
        store: Store,
        moments: MomentStore,
        detector: MomentDetector,
        clock: Clock,
        *,
        step: int = 2_000,
        cache_size: int = 100_000,
        on_moments: Callable[[list[Moment]], None] | None = None,
        on_decisions: Callable[[Decided], None] | None = None,
        predictor: Predictor | None = None,
        decider: Decider | None = None,
    ) -> None:
        self.store = store
        self.moments = moments
        self.detector = detector
        self.clock = clock
        self.step = step
        self._cache: OrderedDict[str, CustomerState] = OrderedDict()
        self._cache_size = cache_size
        # One live timer per customer: ``_due_at`` says when; the heap may also hold entries
        # a later commit superseded, skipped when popped and dropped when they pile up.
        self._timers: list[tuple[int, str]] = []
        self._due_at: dict[str, int] = {}
        self._on_moments = on_moments
        self._on_decisions = on_decisions
        self.decided = 0
        self.audience = AudienceIndex()
        self.cooled = 0
        self.failed = 0
        self.predict_failed = 0
        self.position = moments.checkpoint()
        # Distributed mode: the partition owner's fencing token, checked by the store.
        self.fence: int | None = None
        self.predictor = predictor or Predictor()
        self.decider = decider or Decider(detector.playbook.decide)
        self._restore_models()
        self.event_time = self._last_event_time()
        for customer, row in moments.all_states():
            self._index(customer, decode_state(row.body))
            if row.due_ms is not None:
                self._due_at[customer] = row.due_ms
        self._rebuild_timers()

    # -- state ---------------------------------------------------------------

    def _restore_models(self) -> None:
        snapshots = self.moments.model_snapshots()
        self.predictor.restore(snapshots)
        bandit = snapshots.get(BANDIT)
        if bandit is not None and bandit.version == BANDIT_VERSION:
            self.decider.restore(bandit.body)
        else:
            self.decider.restore(None)

    def _models(self) -> dict[str, ModelSnapshot]:
        """The population models changed since the last commit, the bandit among them."""
        snapshots = self.predictor.snapshot()
        if self.decider.dirty:
            snapshots[BANDIT] = ModelSnapshot(BANDIT_VERSION, self.decider.snapshot())
        return snapshots

    def _decide(
        self, state: CustomerState, moments: list[Moment], profile: Profile | None, at: int
    ) -> list[Decision]:
        """Decisions for a customer's new moments, on the models' view at event time."""
        if not moments or not self.decider.enabled:
            return []
        predictions = self.predictor.predictions(state.predict, profile, at)
        return self.decider.decide(state.decide, moments, profile, Signals.of(predictions))

    def _last_event_time(self) -> int:
        """The event time of the last record processed: where event time stood at the
        checkpoint (the models' labels mature against it)."""
        if self.position <= 0:
            return 0
        last = self.store.read_log(self.position - 1, 1)
        return last[0].event.timestamp_ms if last else 0

    def _label_time(self, now: int) -> int:
        """The event time by which every earlier event is taken to have arrived."""
        return min(now, self.event_time - self.predictor.settings.lateness_ms)

    def _due(self, state: CustomerState, profile: Profile | None, now: int) -> int | None:
        """The customer's next timer: the detector's, or when the models' next label is
        due — an event time, turned into clock time by how far event time lags."""
        due = self.detector.next_due(state, profile, now)
        pending = self.decider.next_due(state.decide)
        if pending is not None:
            due = pending if due is None else min(due, pending)
        label = self.predictor.next_due(state.predict)
        if label is None:
            return due
        lag = max(0, now - self.event_time)
        label += self.predictor.settings.lateness_ms + lag
        return label if due is None else min(due, label)

    def _index(self, customer: str, state: CustomerState) -> None:
        """Keep the world-event audience index in step with a customer's state."""
        if state.position is not None:
            lat, lon, ts = state.position
            self.audience.update_position(customer, lat, lon, ts)
        for key, ts in state.interests.items():
            kind, _, value = key.partition(":")
            if kind == "product":
                self.audience.add_interest(customer, product=value, ts_ms=ts)
            elif kind == "category":
                self.audience.add_interest(customer, category=value, ts_ms=ts)
        if self.audience.interest_count(customer) > len(state.interests):
            # The state keeps only its latest interests (MAX_INTERESTS): so does the index.
            products = {k[8:] for k in state.interests if k.startswith("product:")}
            categories = {k[9:] for k in state.interests if k.startswith("category:")}
            self.audience.keep_interests(customer, products, categories)
        for topic in state.topics:
            self.audience.subscribe(customer, topic)

    def _load(self, customers: list[str]) -> tuple[dict[str, CustomerState], set[str]]:
        """The customers' states, and which of them are new (nothing stored yet)."""
        found: dict[str, CustomerState] = {}
        missing = []
        for customer in customers:
            state = self._cache.get(customer)
            if state is None:
                missing.append(customer)
            else:
                found[customer] = state
        for customer, row in self.moments.states(missing).items():
            found[customer] = decode_state(row.body)
        fresh = {c for c in missing if c not in found}
        for customer in fresh:
            found[customer] = CustomerState()
        return found, fresh

    def forget(self, customers: Collection[str]) -> None:
        """Drop what memory holds of customers erased from the stores: their cached
        state, their timers and their place in the world-event audience."""
        gone = set(customers)
        for customer in gone:
            self._cache.pop(customer, None)
            self.audience.remove(customer)
            self._due_at.pop(customer, None)
        self._rebuild_timers()

    def _remember(self, customer: str, state: CustomerState) -> None:
        self._cache[customer] = state
        self._cache.move_to_end(customer)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    def _commit(
        self,
        states: dict[str, CustomerState],
        found: Detection,
        checkpoint: int | None,
        dropped: list[str] | None = None,
        world: dict[str, dict[str, object]] | None = None,
        decided: Decided | None = None,
    ) -> None:
        now = self.clock.now_ms()
        decided = decided or Decided()
        profiles = self.store.profiles(sorted(states))
        rows: dict[str, StateRow] = {}
        for customer, state in states.items():
            due = self._due(state, profiles.get(customer), now)
            rows[customer] = StateRow(encode_state(state), due)
        runs = [
            record_of(customer, progress)
            for customer, journey in sorted(set(found.journeys))
            if (progress := states[customer].journeys.progress.get(journey)) is not None
        ]
        self.moments.commit(
            MomentBatch(
                moments=found.moments,
                states=rows,
                dropped=dropped or [],
                journeys=runs,
                world_events=dict(world or {}),
                checkpoint=checkpoint,
                models=self._models(),
                decisions=decided.decisions,
                cancelled=decided.cancelled,
                fence=self.fence,
            )
        )
        for customer, state in states.items():
            self._remember(customer, state)
            self._index(customer, state)
            self._set_timer(customer, rows[customer].due_ms)
        self.cooled += found.cooled
        self.decided += len(decided.decisions)
        if self._on_decisions is not None and (decided.decisions or decided.cancelled):
            self._on_decisions(decided)
        if self._on_moments is not None and found.moments:
            self._on_moments(found.moments)

    # -- the log ---------------------------------------------------------------

    def _undo(self) -> None:
        """After a failed commit: forget what memory holds beyond the checkpoint."""
        self._cache.clear()
        self.position = self.moments.checkpoint()
        self._restore_models()
        self.event_time = self._last_event_time()

    def catch_up(self, limit: int | None = None) -> int:
        """Process log records after the checkpoint; returns how many were processed."""
        done = 0
        while limit is None or done < limit:
            records = self.store.read_log(self.position, self.step)
            if not records:
                break
            try:
                self._process(records)
            except BaseException:
                self._undo()
                raise
            done += len(records)
        return done

    def _process(self, records: list[LogRecord]) -> None:
        owners = {c: self.store.canonical(c) or c for c in {r.customer_id for r in records}}
        states, fresh = self._load(sorted(set(owners.values()) | set(owners)))
        dropped = []
        for loser, winner in sorted(owners.items()):
            if loser == winner:
                continue
            # Merged away: the winner keeps its own state, or takes over the loser's.
            lost = states.pop(loser)
            if loser not in fresh:
                if winner in fresh:
                    states[winner] = lost
                    fresh.discard(winner)
                dropped.append(loser)
            self._cache.pop(loser, None)
            self._due_at.pop(loser, None)
            self.audience.merge(loser, winner)
        profiles = self.store.profiles(sorted({owners[r.customer_id] for r in records}))
        found = Detection()
        decided = Decided()
        touched: dict[str, CustomerState] = {}
        for record in records:
            customer = owners[record.customer_id]
            state = states[customer]
            profile = profiles.get(customer)
            self.event_time = max(self.event_time, record.event.timestamp_ms)
            try:
                self.predictor.on_event(customer, state.predict, record.event, profile)
                touched[customer] = state
            except Exception:
                # As for the detector below: skipped, counted, logged by position.
                log.exception("prediction failed on log seq %d; skipped", record.seq)
                self.predict_failed += 1
            try:
                step = self.detector.on_event(customer, state, record.event, profile)
            except Exception:
                # One event the detector cannot read must not stall the stage on it
                # for ever: it is skipped, counted and logged (by position, not content).
                log.exception("moment detection failed on log seq %d; skipped", record.seq)
                self.failed += 1
                continue
            found.moments.extend(step.moments)
            found.journeys.extend(step.journeys)
            found.cooled += step.cooled
            touched[customer] = state
            # Feedback first (an engagement, a purchase, an opt-out), then this event's
            # moments are decided on what the customer just did.
            outcome = self.decider.on_event(state.decide, record.event)
            decided.cancelled.update(outcome.cancelled)
            decided.decisions.extend(
                self._decide(state, step.moments, profile, record.event.timestamp_ms)
            )
        self._commit(touched, found, records[-1].seq, dropped, decided=decided)
        self.position = records[-1].seq

    # -- timers ------------------------------------------------------------------

    def tick(self) -> int:
        """Fire every timer due by the clock's now; returns how many moments that made."""
        now = self.clock.now_ms()
        due: set[str] = set()
        while self._timers and self._timers[0][0] <= now:
            at, customer = heapq.heappop(self._timers)
            if self._due_at.get(customer) == at:  # else superseded by a later commit
                del self._due_at[customer]
                due.add(customer)
        if not due:
            return 0
        states, _ = self._load(sorted(due))
        profiles = self.store.profiles(sorted(due))
        found = Detection()
        decided = Decided()
        label_time = self._label_time(now)
        for customer in sorted(due):
            state, profile = states[customer], profiles.get(customer)
            self.predictor.on_time(customer, state.predict, label_time)
            step = self.detector.on_time(customer, state, profile, now)
            found.moments.extend(step.moments)
            found.journeys.extend(step.journeys)
            found.cooled += step.cooled
            self.decider.on_time(state.decide, now)
            decided.decisions.extend(self._decide(state, step.moments, profile, now))
        try:
            self._commit(states, found, None, decided=decided)
        except BaseException:
            self._undo()
            for customer in due:  # try them again on the next tick
                self._set_timer(customer, min(now, self._due_at.get(customer, now)))
            raise
        return len(found.moments)

    def next_timer(self) -> int | None:
        """When the earliest live timer is due (superseded entries at the heap's head
        are dropped first); None without one."""
        timers = self._timers
        while timers and self._due_at.get(timers[0][1]) != timers[0][0]:
            heapq.heappop(timers)
        return timers[0][0] if timers else None

    def _set_timer(self, customer: str, due: int | None) -> None:
        """Make ``due`` the customer's one timer (None: no timer)."""
        if due is None:
            self._due_at.pop(customer, None)
            return
        if self._due_at.get(customer) == due:
            return
        self._due_at[customer] = due
        heapq.heappush(self._timers, (due, customer))
        if len(self._timers) > 2 * len(self._due_at) + 64:
            self._rebuild_timers()  # superseded entries piled up: the heap holds only live ones

    def _rebuild_timers(self) -> None:
        self._timers = [(due, customer) for customer, due in self._due_at.items()]
        heapq.heapify(self._timers)

    def timer_count(self) -> tuple[int, int]:
        """Customers with a timer, and entries in the timer heap (at most twice as many
        plus a constant: superseded ones are dropped as they pile up)."""
        return len(self._due_at), len(self._timers)

    # -- predictions -----------------------------------------------------------------

    def predictions(self, customer: str, now_ms: int | None = None) -> Predictions:
        """What the online models say about one (canonical) customer, at ``now_ms``
        (the clock's now by default); an unknown customer gets the population's view."""
        now = self.clock.now_ms() if now_ms is None else now_ms
        states, _ = self._load([customer])
        profile = self.store.profiles([customer]).get(customer)
        # Answers are lazy: work them all out here, under the caller's lock, not as read.
        return self.predictor.predictions(states[customer].predict, profile, now).everything()

    # -- world events --------------------------------------------------------------

    def world_event(self, event: WorldEvent) -> WorldResult:
        """Fan a world event out to the customers it concerns, once per event id."""
        if self.moments.world_event(event.id) is not None:
            return WorldResult(event.id, 0, duplicate=True)
        now = self.clock.now_ms()
        at = event.at if event.at is not None else now
        center = None
        if event.near is not None:
            if event.near.place is not None:
                center = self.detector.place_center(event.near.place)
            elif event.near.lat is not None and event.near.lon is not None:
                center = (event.near.lat, event.near.lon)
        recipients = self.audience.audience(event, center, at)
        found = Detection(moments=self.detector.world_moments(event, recipients, at))
        body = event.model_dump(mode="json")
        body["recipients"] = len(recipients)
        decided = Decided()
        states: dict[str, CustomerState] = {}
        if found.moments and self.decider.may_answer(found.moments[0]):
            states, _ = self._load(sorted({m.customer_id for m in found.moments}))
            profiles = self.store.profiles(sorted(states))
            for moment in found.moments:
                customer = moment.customer_id
                decided.decisions.extend(
                    self._decide(states[customer], [moment], profiles.get(customer), at)
                )
        self._commit(states, found, None, world={event.id: body}, decided=decided)
        return WorldResult(event.id, len(recipients), duplicate=False)


# How often a stage that gives way to ingestion looks whether ingestion has paused.
_YIELD_POLL_SECONDS = 0.05


class StageRunner:
    """Runs a :class:`MomentStage` in a thread, woken by commits and by a timer tick.

    The stage gives way to ingestion: while ``busy()`` says the writer has events
    queued, it leaves the log alone (its Python work would take the GIL from the
    writer and the event loop, and acknowledgements would wait on it) and catches up
    once ingestion pauses. It never falls further behind than ``max_lag`` events nor
    waits longer than ``max_defer`` seconds: past either it takes one step anyway, so
    under sustained load moments still follow, at most that far behind the log. Timers
    (an abandoned cart, a dwell, a label coming due) fire on every pass that reaches
    the log's end and, while it is still behind, at least once per ``tick_seconds``.
    ``monotonic`` is the clock those seconds are read from (tests pass their own).
    """

    def __init__(
        self,
        stage: MomentStage,
        *,
        tick_seconds: float = 1.0,
        busy: Callable[[], bool] | None = None,
        max_lag: int = 100_000,
        max_defer: float = 2.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stage = stage
        self.lock = threading.Lock()  # callers from other threads (world events) take it too
        self._wake = threading.Event()
        self._closed = False
        self._tick = tick_seconds
        self._busy = busy
        self._max_lag = max_lag
        self._max_defer = max_defer
        self._monotonic = monotonic
        self._behind = 0  # events committed and not yet read by the stage (about)
        self._behind_lock = threading.Lock()  # the writer adds, the stage subtracts
        self._ticked = monotonic()
        self.deferred = 0  # passes put off for ingestion
        self._deferring: float | None = None  # since when the stage has been giving way
        self._thread = threading.Thread(target=self._loop, name="momently-moments", daemon=True)
        self._thread.start()

    def wake(self, events: int = 0) -> None:
        """Tell the stage the log has grown (by about ``events``)."""
        with self._behind_lock:
            self._behind += events
        self._wake.set()

    def _yielding(self) -> bool:
        """Whether to leave the log to ingestion for now."""
        if self._busy is None or self._closed or not self._busy():
            return False
        now = self._monotonic()
        if self._deferring is None:
            self._deferring = now
        return self._behind < self._max_lag and now - self._deferring < self._max_defer

    def _loop(self) -> None:
        while not self._closed:
            self._wake.wait(self._tick)
            self._wake.clear()
            try:
                while self._yielding():
                    self.deferred += 1
                    # Woken by the next commit, or looks again soon: ingestion that
                    # stops sends no commit to wake it.
                    self._wake.wait(min(self._tick, self._max_defer, _YIELD_POLL_SECONDS))
                    self._wake.clear()
                with self.lock:
                    self._deferring = None
                    done = self.stage.catch_up(self.stage.step)
                    with self._behind_lock:
                        self._behind = max(0, self._behind - done)
                    now = self._monotonic()
                    if done < self.stage.step or now - self._ticked >= self._tick:
                        self._ticked = now
                        self.stage.tick()
                    if done >= self.stage.step:
                        self._wake.set()  # more to do: the next pass looks again
            except Exception:
                # The batch rolled back; the checkpoint did not move, so it is retried.
                log.exception("moment stage step failed; retrying from the checkpoint")

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        self._thread.join()
        with self.lock:
            self.stage.catch_up()
