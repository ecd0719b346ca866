"""No look-ahead: a label is never learned before its time, nor a snapshot built from later events.

Hypothesis drives one customer through random streams — actions, cart steps,
purchases, deliveries, opens, opt-outs, quiet spells ended by a timer, and
late events — and a tracing predictor records every label at the moment it
is learned, with the event time the predictor had reached then.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st

from momently.events import Event
from momently.predict import Predictor, PredictState, fatigue, propensity
from momently.predict.delayed import unpack
from momently.predict.exposures import Outcomes
from momently.predict.settings import HOUR, MINUTE
from momently.predict.state import Snapshot
from momently.predict.synthetic import START, event

NAMES = {
    "view": "Product Viewed",
    "add": "Product Added",
    "checkout": "Checkout Started",
    "buy": "Order Completed",
    "push": "Push Notification Received",
    "email": "Email Delivered",
    "tap": "Push Notification Tapped",
    "open": "Email Opened",
    "app": "Application Opened",
    "optout": "Unsubscribed",
    "ping": "Location Updated",
}
GAPS = (0, 1, MINUTE, 20 * MINUTE, 2 * HOUR, 23 * HOUR, 47 * HOUR, 49 * HOUR, 73 * HOUR)


@dataclass
class Learned:
    model: str
    at: int  # when the outcome's clock started (snapshot or delivery)
    y: bool
    learned_at: int  # the event time the predictor had reached
    arrived: int  # how many events had arrived
    x: dict[str, float] = field(default_factory=dict)


class Tracing(Predictor):
    """A predictor that records each label with the time it was learned."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0
        self.arrived = 0
        self.learned: list[Learned] = []

    def _learn_snapshot(self, name: str, names: object, snap: Snapshot, y: bool) -> None:
        features = propensity.FEATURES if name == "propensity" else fatigue.FEATURES
        x = {str(k): float(v) for k, v in unpack(snap.x, features).items()}
        self.learned.append(Learned(name, snap.at, y, self.now, self.arrived, x))
        super()._learn_snapshot(name, features, snap, y)

    def _resolve(self, state: PredictState, found: Outcomes, organic: bool) -> None:
        for kind, trials in (("receptivity", found.timing), ("channel", found.channel)):
            for trial in trials:
                if trial.p is not None:
                    learned = Learned(kind, trial.at, trial.engaged, self.now, self.arrived)
                    self.learned.append(learned)
        super()._resolve(state, found, organic)


Step = tuple[str, int, bool]  # (kind, gap before it, arrives late)
steps = st.lists(
    st.tuples(st.sampled_from([*NAMES, "tick"]), st.sampled_from(GAPS), st.just(False)),
    min_size=1,
    max_size=40,
)
late_steps = st.lists(
    st.tuples(st.sampled_from(list(NAMES)), st.sampled_from(GAPS), st.booleans()),
    min_size=1,
    max_size=40,
)


@dataclass
class Run:
    predictor: Tracing
    state: PredictState
    arrived: list[Event]  # in arrival order
    snapshots: dict[tuple[str, int], int]  # (model, time) -> events arrived when it was taken


def run(script: list[Step]) -> Run:
    predictor = Tracing()
    state = PredictState()
    arrived: list[Event] = []
    snapshots: dict[tuple[str, int], int] = {}
    clock = START
    for kind, gap, late in script:
        clock += gap
        if kind == "tick":  # a quiet spell: only the stage's timer moves event time
            predictor.now = max(predictor.now, clock)
            predictor.on_time("c", state, clock)
            continue
        at = clock - 3 * HOUR if late else clock
        e = event(NAMES[kind], at, "c")
        arrived.append(e)
        predictor.arrived = len(arrived)
        predictor.now = max(predictor.now, at)
        predictor.on_event("c", state, e, None)
        for snap in state.snapshots:
            snapshots.setdefault(("propensity", snap.at), len(arrived))
        for snap in state.contact.pending:
            snapshots.setdefault(("fatigue", snap.at), len(arrived))
    return Run(predictor, state, arrived, snapshots)


def _times(events: list[Event], name: str) -> list[int]:
    return [e.timestamp_ms for e in events if e.event == name]


def _check(result: Run) -> None:
    s = result.predictor.settings
    windows = {
        "propensity": s.horizon_ms,
        "fatigue": s.fatigue_horizon_ms,
        "receptivity": s.response_window_ms,
        "channel": s.attribution_window_ms,
    }
    outcome = {
        "propensity": ("Order Completed",),
        "fatigue": ("Unsubscribed",),
        "receptivity": ("Push Notification Tapped", "Email Opened"),
        "channel": ("Push Notification Tapped", "Email Opened"),
    }
    for label in result.predictor.learned:
        window = windows[label.model]
        # Never before its time: event time had passed the end of its window.
        assert label.learned_at > label.at + window, label
        # Positive only for an outcome that had arrived, inside the window.
        since = result.snapshots.get((label.model, label.at), 0)
        seen = [
            e.timestamp_ms
            for e in result.arrived[since : label.arrived]
            if e.event in outcome[label.model]
        ]
        if label.y:
            assert any(label.at <= t <= label.at + window for t in seen), label
        elif label.model in ("propensity", "fatigue"):
            assert not any(label.at <= t <= label.at + window for t in seen), label


@given(steps)
def test_labels_are_never_learned_before_their_time(script: list[Step]) -> None:
    _check(run(script))


@given(late_steps)
def test_late_events_never_make_a_label_early(script: list[Step]) -> None:
    result = run(script)
    for label in result.predictor.learned:
        window = {"propensity": HOUR * 48, "fatigue": HOUR * 72}.get(label.model)
        if window is not None:
            assert label.learned_at > label.at + window


@given(late_steps)
def test_a_snapshot_holds_nothing_from_after_its_time(script: list[Step]) -> None:
    result = run(script)
    for label in result.predictor.learned:
        if label.model != "propensity":
            continue
        count = result.snapshots["propensity", label.at]
        before = result.arrived[:count]
        assert all(e.timestamp_ms <= label.at for e in before)
        # The features, rebuilt from the events that had arrived, and none after.
        fresh = Predictor()
        state = PredictState()
        for e in before:
            fresh.on_event("c", state, e, None)
        expected = propensity.features(state.activity, label.at)
        assert label.x == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_a_negative_waits_for_the_whole_horizon() -> None:
    result = run([("add", 0, False), ("view", 48 * HOUR, False)])
    assert [x.model for x in result.predictor.learned] == []
    result = run([("add", 0, False), ("view", 48 * HOUR + 1, False)])
    assert [(x.model, x.y) for x in result.predictor.learned] == [("propensity", False)]


def test_a_positive_is_held_until_its_horizon_has_passed() -> None:
    result = run([("add", 0, False), ("buy", 20 * MINUTE, False)])
    assert result.predictor.learned == []
    assert result.state.snapshots[0].hit
    result = run([("add", 0, False), ("buy", 20 * MINUTE, False), ("tick", 48 * HOUR, False)])
    assert [(x.model, x.y) for x in result.predictor.learned] == [("propensity", True)]


def test_a_quiet_customer_is_labelled_by_the_timer() -> None:
    result = run([("email", 0, False), ("tick", 25 * HOUR, False)])
    models = sorted((x.model, x.y) for x in result.predictor.learned)
    assert models == [("channel", False), ("receptivity", False)]
