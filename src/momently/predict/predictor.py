"""The predictor: every online model behind one facade the moment stage and decide layer call.

``on_event`` folds one event into a customer's :class:`PredictState` (in
place) and teaches the population models whatever labels the event makes
known; ``predictions`` reads them all for one customer at a given time. Both
are pure over their arguments and the population models: time comes only
from events and from ``now_ms``, so replaying the log rebuilds the same
models.

>>> from momently.events import Event, from_ms
>>> predictor = Predictor()
>>> state = PredictState()
>>> event = Event(message_id="m1", type="track", timestamp=from_ms(0),
...               received_at=from_ms(0), event="Product Added")
>>> predictor.on_event("c1", state, event, None)
>>> found = predictor.predictions(state, None, 60_000)
>>> 0.0 < found.propensity < 1.0, found.best_channel in found.channels
(True, True)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, Final, cast

from momently.events import Event
from momently.moments.records import ModelSnapshot
from momently.predict import fatigue, propensity
from momently.predict.affinity import (
    ChannelAffinity,
    active_device,
    count_channel,
    device_affinity,
    use_device,
)
from momently.predict.curve import ReceptivityCurve
from momently.predict.delayed import pack, unpack
from momently.predict.evaluation import BinaryTracker, HitTracker, ModelReport
from momently.predict.exposures import Outcomes, count_hour, expire, on_engagement, on_exposure
from momently.predict.linear import ScaledLogistic
from momently.predict.localtime import hour_of_week
from momently.predict.next_need import (
    NextNeed,
    context_of,
    frequencies_in,
    in_top_k,
    own_evidence,
    successors_in,
    top_k,
)
from momently.predict.population import Population
from momently.predict.predictions import Predictions, Ranked
from momently.predict.receptivity import Receptivity
from momently.predict.settings import PredictSettings
from momently.predict.signals import Signal, read_signal
from momently.predict.state import PredictState, Snapshot
from momently.state.profile import Profile

_FEATURES: Final = {"propensity": propensity.FEATURES, "fatigue": fatigue.FEATURES}


def _p(probabilities: Mapping[Any, float]) -> float:
    return float(probabilities.get(True, 0.0))


def _timezone(profile: Profile | None) -> str:
    if profile is not None and profile.timezone is not None:
        value = profile.timezone.value
        if isinstance(value, str) and value:
            return value
    return "UTC"


class Predictor:
    """The online models: per-customer state in, labels learned, predictions out."""

    def __init__(self, settings: PredictSettings | None = None) -> None:
        self.settings = settings or PredictSettings()
        self.population = Population(self.settings)

    # -- learning ------------------------------------------------------------

    def on_event(
        self, customer_id: str, state: PredictState, event: Event, profile: Profile | None
    ) -> None:
        """Fold one event into ``state`` (in place) and learn the labels it makes known.

        ``customer_id`` is for symmetry with the moment detector; the models do not read it.
        """
        s = self.settings
        ts = event.timestamp_ms
        signal = read_signal(event, s.conversion_event)
        state.watermark = max(state.watermark, ts)
        conversion = ts if signal.kind == "conversion" else None
        optout = ts if signal.kind == "optout" else None
        self._mature(state, state.watermark, conversion, optout)
        if signal.kind == "system":
            return
        if signal.kind == "exposure" and signal.channel is not None:
            self._on_exposure(state, signal.channel, ts, _timezone(profile))
        elif signal.kind == "engagement":
            contact = state.contact
            fresh = not contact.last_engaged_ms or abs(ts - contact.last_engaged_ms) >= (
                s.session_gap_ms
            )
            hour = hour_of_week(ts, _timezone(profile))
            self._resolve(state, on_engagement(state, signal.channel, ts, hour, s), fresh)
            fatigue.on_engagement(contact, ts)
        elif signal.kind == "optout":
            state.contact.optouts += 1
        propensity.observe(state.activity, signal, ts, s)
        use_device(state, signal, ts, s)
        if propensity.wants_snapshot(state, signal, ts, s):
            x = propensity.values(state.activity, ts)
            p = self._scored("propensity", x)
            state.snapshots.append(Snapshot(ts, p, pack(x)))
            state.last_snapshot_ms = ts
        self._next_need(state, signal)

    def on_time(self, customer_id: str, state: PredictState, until_ms: int) -> None:
        """Learn the labels that event time ``until_ms`` makes known without an event
        of this customer's: a customer who goes silent still teaches the models that
        they did not buy, did not open, did not opt out.

        ``until_ms`` must be an event time every earlier event has arrived by (the
        stage passes its event-time watermark less a lateness allowance).
        """
        self._mature(state, until_ms, None, None)

    def next_due(self, state: PredictState) -> int | None:
        """The event time at which a pending label of this customer's will be known."""
        s = self.settings
        due: int | None = None
        if state.snapshots:  # oldest first: snapshots are only taken at the latest event
            due = state.snapshots[0].at + s.horizon_ms + 1
        pending = state.contact.pending
        if pending and (due is None or pending[0].at + s.fatigue_horizon_ms + 1 < due):
            due = pending[0].at + s.fatigue_horizon_ms + 1
        for e in state.exposures:
            at = e.at + (s.attribution_window_ms if e.timed else s.response_window_ms) + 1
            if due is None or at < due:
                due = at
        return due

    def _mature(
        self, state: PredictState, until: int, conversion: int | None, optout: int | None
    ) -> None:
        s = self.settings
        snaps = state.snapshots
        if snaps and (conversion is not None or snaps[0].at + s.horizon_ms < until):
            for snap, y in propensity.labels(state, conversion, until, s):
                self._learn_snapshot("propensity", propensity.FEATURES, snap, y)
        pending = state.contact.pending
        if pending and (optout is not None or pending[0].at + s.fatigue_horizon_ms < until):
            for snap, y in fatigue.labels(state, optout, until, s):
                self._learn_snapshot("fatigue", fatigue.FEATURES, snap, y)
        if state.exposures:
            self._resolve(state, expire(state, until, s), organic=False)

    def _learn_snapshot(self, name: str, names: Sequence[str], snap: Snapshot, y: bool) -> None:
        tracker = self.population.slots[name].tracker
        if isinstance(tracker, BinaryTracker) and not math.isnan(snap.p):
            tracker.update(y, snap.p)
        self.population.learn(name, unpack(snap.x, names), y)

    def _on_exposure(self, state: PredictState, channel: str, ts: int, tz: str) -> None:
        s = self.settings
        hour = hour_of_week(ts, tz)
        pop = self.population
        p_time = cast(Receptivity, pop.model("receptivity")).customer_rate(hour, state.hours)
        sent, engaged = state.channels.get(channel, (0, 0))
        p_channel = cast(ChannelAffinity, pop.model("channel")).rate(channel, sent, engaged)
        on_exposure(state, channel, ts, hour, p_time, p_channel, s)
        contact = state.contact
        if fatigue.wants_snapshot(contact, ts, state.watermark, s):
            x = fatigue.values(contact, ts)
            p = self._scored("fatigue", x)
            contact.pending.append(Snapshot(ts, p, pack(x)))
        fatigue.on_message(contact, ts)

    def _resolve(self, state: PredictState, found: Outcomes, organic: bool) -> None:
        """Count resolved trials for the customer; teach the population the real ones.

        Organic trials (no tracked delivery) shape only the customer's own counts,
        and only once per session: they say when the customer pays attention, not
        how often a delivery is answered.
        """
        for hour, engaged, p, _ in found.timing:
            if p is None and not organic:
                continue
            if p is not None:
                self._score("receptivity", engaged, p)
                self.population.learn("receptivity", {"hour": hour}, engaged)
            count_hour(state, int(hour), engaged)
        for channel, engaged, p, _ in found.channel:
            if p is None and not organic:
                continue
            if p is not None:
                self._score("channel", engaged, p)
                self.population.learn("channel", {"channel": channel}, engaged)
            count_channel(state, str(channel), engaged)

    def _score(self, name: str, y: bool, p: float) -> None:
        tracker = self.population.slots[name].tracker
        if isinstance(tracker, BinaryTracker):
            tracker.update(y, p)

    def _next_need(self, state: PredictState, signal: Signal) -> None:
        if signal.touchpoint is not None:
            self._next_token("next_touchpoint", state.touchpoints, signal.touchpoint, True)
        if signal.category is not None:
            self._next_token("next_category", state.categories, signal.category, False)

    def _next_token(self, name: str, history: list[str], token: str, sequence: bool) -> None:
        slot = self.population.slots[name]
        model = cast(NextNeed, slot.model)
        tracker = slot.tracker
        last, prev = context_of(history)
        if history and isinstance(tracker, HitTracker) and tracker.due():
            k = self.settings.top_k
            scores = model.scores(last, prev, own_evidence(history, sequence))
            tracker.update(in_top_k(scores, token, k), token in model.popular(k))
        model.learn_next(last, prev, token)
        self.population.learned(name)
        history.append(token)
        if len(history) > self.settings.history:
            del history[: -self.settings.history]

    # -- predicting ----------------------------------------------------------

    def predictions(self, state: PredictState, profile: Profile | None, now_ms: int) -> Predictions:
        """Every model's answer for one customer at ``now_ms``, each worked out when
        first read (:class:`Predictions`)."""
        return Predictions(now_ms, _Answers(self, state, profile))

    def _scored(self, name: str, x: Sequence[float]) -> float:
        """The prediction a snapshot keeps to be scored with when its label comes: NaN
        (not scored) while the model is still in its burn-in of ``prior_labels`` labels,
        when it says the prior for everyone and the metric would measure only that."""
        if self.population.slots[name].updates < self.settings.prior_labels:
            return math.nan
        return self.probability(name, x)

    def probability(self, name: str, x: Sequence[float]) -> float:
        """A classifier's P(True) for the features ``x`` (in the model's feature order),
        blended with the prior while it has learned little.

        An untrained logistic model says 0.5 — a coin toss whether the first customer
        of a new brand buys, or opts out of the next message. Over its first
        ``prior_labels`` (m) labels its answer moves from the prior to its own:
        ``(n p + (m - n) prior) / m`` after n labels; the model itself learns unchanged.
        """
        slot = self.population.slots[name]
        names = _FEATURES[name]
        model = slot.model
        if isinstance(model, ScaledLogistic):
            p = model.proba_values(x, names)
        else:
            p = _p(model.predict_proba_one(dict(zip(names, x, strict=True))))
        s = self.settings
        n, m = slot.updates, s.prior_labels
        if n >= m:
            return p
        prior = s.propensity_prior if name == "propensity" else s.fatigue_prior
        return (n * p + (m - n) * prior) / m

    def ranked(self, name: str, history: list[str], sequence: bool) -> Ranked:
        model = cast(NextNeed, self.population.slots[name].model)
        last = history[-1] if history else None
        prev = history[-2] if len(history) > 1 else None
        own = successors_in(history, last) if sequence else frequencies_in(history)
        return tuple(top_k(model.scores(last, prev, own), self.settings.top_k))

    # -- the population ------------------------------------------------------

    def metrics(self) -> list[ModelReport]:
        """Each model's name, version, updates and live prequential metrics."""
        return self.population.reports()

    def snapshot(self, *, everything: bool = False) -> dict[str, ModelSnapshot]:
        """The population models changed since the last snapshot (or all), pickled."""
        return self.population.snapshot(everything=everything)

    def restore(self, snapshots: Mapping[str, ModelSnapshot]) -> list[str]:
        """Start from stored snapshots; the models not restored start afresh."""
        self.population = Population(self.settings)
        return self.population.restore(snapshots)


class _Answers:
    """One customer's answers, for :class:`Predictions` to read when it needs them."""

    __slots__ = ("predictor", "profile", "state")

    def __init__(self, predictor: Predictor, state: PredictState, profile: Profile | None) -> None:
        self.predictor = predictor
        self.state = state
        self.profile = profile

    def propensity(self, now_ms: int) -> float:
        return self.predictor.probability(
            "propensity", propensity.values(self.state.activity, now_ms)
        )

    def fatigue(self, now_ms: int) -> float:
        return self.predictor.probability("fatigue", fatigue.values(self.state.contact, now_ms))

    def receptivity(self) -> ReceptivityCurve:
        model = cast(Receptivity, self.predictor.population.model("receptivity"))
        return ReceptivityCurve(
            _timezone(self.profile),
            dict(self.state.hours),
            model.population(),
            model.day_strength,
            model.hour_strength,
            model.neighbour_weight,
        )

    def channels(self) -> Mapping[str, float]:
        model = cast(ChannelAffinity, self.predictor.population.model("channel"))
        return MappingProxyType(model.rates(self.state.channels))

    def devices(self, now_ms: int) -> Mapping[str, float]:
        return MappingProxyType(device_affinity(self.state, now_ms))

    def active_device(self, now_ms: int) -> str | None:
        return active_device(self.state, now_ms, self.predictor.settings.active_window_ms)

    def next_touchpoints(self) -> Ranked:
        return self.predictor.ranked("next_touchpoint", self.state.touchpoints, True)

    def next_categories(self) -> Ranked:
        return self.predictor.ranked("next_category", self.state.categories, False)
