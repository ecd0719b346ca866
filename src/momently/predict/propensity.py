"""Purchase propensity: P(the customer converts within the horizon), from their activity.

A population model — river's logistic regression behind a standard scaler —
over per-customer features: exponentially decayed counts of views, searches,
cart and checkout steps and sessions over an hour, a day and a week; the gap
between their last two actions; purchases and the time since the last one;
whether a cart is open; tenure. Every feature is computed from events up to
the snapshot's time and no later (see :mod:`momently.predict.delayed` for
how labels arrive).

>>> from momently.predict.signals import Signal
>>> activity = Activity()
>>> observe(activity, Signal("action", activity="add"), 1_000, PredictSettings())
>>> x = features(activity, 1_000)
>>> x["add_1h"] > 0, x["cart_open"], x["never_bought"]
(True, 1.0, 1.0)
"""

from __future__ import annotations

import math
import operator
from typing import Final

from momently.predict.decay import bump
from momently.predict.delayed import expired, mark
from momently.predict.linear import ScaledLogistic, logistic
from momently.predict.settings import DAY, HOUR, PredictSettings
from momently.predict.signals import ACTIVITIES, Signal
from momently.predict.state import Activity, PredictState, Snapshot
from momently.predict.types import Features

WINDOWS: Final = (("1h", float(HOUR)), ("1d", float(DAY)), ("7d", 7.0 * DAY))
_TAUS: Final = tuple(tau for _, tau in WINDOWS)
_ROWS: Final = {name: i for i, name in enumerate(ACTIVITIES)}
_SESSION: Final = _ROWS["session"]
FEATURES: Final = (
    *(f"{a}_{w}" for a in ACTIVITIES for w, _ in WINDOWS),
    "gap_hours",
    "hours_since_purchase",
    "never_bought",
    "purchases",
    "cart_open",
    "tenure_days",
)
"""The features of a propensity snapshot, in stored order."""
_WIDTH: Final = len(ACTIVITIES) * len(WINDOWS)
_ACTIVE: Final = frozenset({"action", "conversion", "engagement"})
_INTENT: Final = frozenset({"add", "checkout"})


def propensity_model() -> ScaledLogistic:
    """A fresh population model (see :mod:`momently.predict.linear`)."""
    return logistic()


def observe(activity: Activity, signal: Signal, ts: int, settings: PredictSettings) -> None:
    """Fold one customer action into the activity counters (other signals are ignored)."""
    if signal.kind not in _ACTIVE:
        return
    if not activity.first_ms or ts < activity.first_ms:
        activity.first_ms = ts
    if not activity.last_ms or ts - activity.last_ms >= settings.session_gap_ms:
        activity.at = bump(activity.counts, activity.at, ts, _TAUS, _SESSION)
    row = _ROWS.get(signal.activity or "")
    if row is not None and row != _SESSION:
        activity.at = bump(activity.counts, activity.at, ts, _TAUS, row)
        if signal.activity in _INTENT:
            activity.cart_ms = max(activity.cart_ms, ts)
    if signal.kind == "conversion":
        activity.purchases += 1
        activity.last_purchase_ms = max(activity.last_purchase_ms, ts)
    if ts > activity.last_ms:
        activity.gap_ms = ts - activity.last_ms if activity.last_ms else 0
        activity.last_ms = ts


def features(activity: Activity, now: int) -> Features:
    """The propensity features as they stand at ``now``."""
    return dict(zip(FEATURES, values(activity, now), strict=True))


def values(activity: Activity, now: int) -> list[float]:
    """The propensity features as they stand at ``now``, in :data:`FEATURES` order."""
    log1p = math.log1p
    counts = activity.counts
    if len(counts) != _WIDTH:
        counts = (list(counts) + [0.0] * _WIDTH)[:_WIDTH]
    if now > activity.at:
        dt = now - activity.at
        factors = [math.exp(-dt / tau) for tau in _TAUS] * len(ACTIVITIES)
        x = list(map(log1p, map(operator.mul, counts, factors)))
    else:
        x = list(map(log1p, counts))
    bought = activity.purchases > 0
    since = max(0, now - activity.last_purchase_ms) if bought else 0
    tenure = max(0, now - activity.first_ms) if activity.first_ms else 0
    x += (
        log1p(activity.gap_ms / HOUR),
        log1p(since / HOUR),
        0.0 if bought else 1.0,
        log1p(activity.purchases),
        1.0 if activity.cart_ms > activity.last_purchase_ms else 0.0,
        log1p(tenure / DAY),
    )
    return x


def labels(
    state: PredictState, conversion_at: int | None, until: int, settings: PredictSettings
) -> list[tuple[Snapshot, bool]]:
    """Mark the snapshots a conversion at ``conversion_at`` falls in the horizon of; return
    those whose horizon event time ``until`` has passed, with their final labels."""
    if conversion_at is not None:
        mark(state.snapshots, conversion_at, settings.horizon_ms)
    done, state.snapshots = expired(state.snapshots, until, settings.horizon_ms)
    return [(s, s.hit) for s in done]


def wants_snapshot(state: PredictState, signal: Signal, ts: int, settings: PredictSettings) -> bool:
    """Whether to queue a snapshot at this (already folded) event.

    Only at the customer's latest event — features of a late event would hold
    what happened after it — at most one per ``snapshot_every_ms`` (or per
    ``intent_snapshot_every_ms`` on a cart or checkout step), and never past
    the cap: a full queue waits for labels instead of dropping one, which
    would bias the labels it keeps.
    """
    if signal.kind not in _ACTIVE or ts < state.activity.at or ts < state.watermark:
        return False
    if len(state.snapshots) >= settings.max_snapshots:
        return False
    every = (
        settings.intent_snapshot_every_ms
        if signal.activity in _INTENT
        else settings.snapshot_every_ms
    )
    return not state.last_snapshot_ms or ts - state.last_snapshot_ms >= every
