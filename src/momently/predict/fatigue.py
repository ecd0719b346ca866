"""Fatigue: the risk that one more message makes the customer opt out.

A population model — river's logistic regression behind a standard scaler —
over contact pressure and response: decayed counts of messages delivered in
the last day, week and month, engagements in the last month and their rate
per message, messages since the last engagement, the time since it, the gap
since the previous message, and earlier opt-outs. Each delivered message is a
snapshot whose features are computed *as if* that message were one more (the
counters before it, plus it), which is exactly the question asked at decision
time; its label — did an opt-out follow within the fatigue horizon? — is
learned once the horizon has passed (:mod:`momently.predict.delayed`).

A logistic model on these features is calibrated by construction (log loss),
and monotone pressure features make "more messages, more risk" learnable
from a few customers who opted out under pressure.

>>> contact = Contact()
>>> x0 = features(contact, 0)
>>> on_message(contact, 0)
>>> x1 = features(contact, HOUR)
>>> x1["messages_1d"] > x0["messages_1d"]
True
"""

from __future__ import annotations

import math
from typing import Final

from momently.predict.decay import bump, read
from momently.predict.delayed import expired, mark
from momently.predict.linear import ScaledLogistic, SGDScaledLogistic
from momently.predict.settings import DAY, HOUR, PredictSettings
from momently.predict.state import Contact, PredictState, Snapshot
from momently.predict.types import Features

WINDOWS: Final = (("1d", float(DAY)), ("7d", 7.0 * DAY), ("30d", 30.0 * DAY))
_TAUS: Final = tuple(tau for _, tau in WINDOWS)
_ENGAGED_TAU: Final = (30.0 * DAY,)
_NONE: Final = [0.0] * len(_TAUS)
FEATURES: Final = (
    *(f"messages_{w}" for w, _ in WINDOWS),
    "engaged_30d",
    "engagement_rate",
    "since_engaged",
    "hours_since_engaged",
    "never_engaged",
    "gap_hours",
    "optouts",
)
"""The features of a fatigue snapshot, in stored order."""


def fatigue_model() -> ScaledLogistic:
    """A fresh population model (see :mod:`momently.predict.linear`): plain SGD steps."""
    return SGDScaledLogistic()


def features(contact: Contact, now: int) -> Features:
    """Features of one more message delivered at ``now``, on top of what was sent before."""
    return dict(zip(FEATURES, values(contact, now), strict=True))


def values(contact: Contact, now: int) -> list[float]:
    """:func:`features` in :data:`FEATURES` order."""
    log1p = math.log1p
    messages = contact.messages or _NONE
    engaged = contact.engaged
    if now > contact.at:
        dt = now - contact.at
        messages = [m * math.exp(-dt / tau) for m, tau in zip(messages, _TAUS, strict=True)]
        engaged *= math.exp(-dt / _ENGAGED_TAU[0])
    x = [log1p(m + 1.0) for m in messages]
    gap = now - contact.last_message_ms if contact.last_message_ms else 30 * DAY
    x += (
        log1p(engaged),
        engaged / (messages[-1] + 1.0),
        log1p(contact.since_engaged + 1),
        log1p(max(0, now - contact.last_engaged_ms) / HOUR) if contact.last_engaged_ms else 0.0,
        0.0 if contact.last_engaged_ms else 1.0,
        log1p(max(0, gap) / HOUR),
        log1p(contact.optouts),
    )
    return x


def on_message(contact: Contact, ts: int) -> None:
    """Count one delivered message."""
    if not contact.messages:
        contact.messages = [0.0] * len(_TAUS)
    engaged = [contact.engaged]
    before = contact.at
    contact.at = bump(contact.messages, before, ts, _TAUS, 0)
    bump(engaged, before, contact.at, _ENGAGED_TAU, 0, 0.0)  # keep it decayed to the same time
    contact.engaged = engaged[0]
    contact.since_engaged += 1
    contact.last_message_ms = max(contact.last_message_ms, ts)


def on_engagement(contact: Contact, ts: int) -> None:
    """Count one engagement (an open, a click, a tap); it resets "messages since"."""
    if not contact.messages:
        contact.messages = [0.0] * len(_TAUS)
    engaged = [contact.engaged]
    at = bump(engaged, contact.at, ts, _ENGAGED_TAU, 0)
    contact.engaged = engaged[0]
    if at > contact.at:
        contact.messages = read(contact.messages, contact.at, at, _TAUS)
        contact.at = at
    if ts >= contact.last_engaged_ms:
        contact.since_engaged = 0
        contact.last_engaged_ms = ts


def labels(
    state: PredictState, optout_at: int | None, until: int, settings: PredictSettings
) -> list[tuple[Snapshot, bool]]:
    """Mark the message snapshots an opt-out at ``optout_at`` falls in the horizon of;
    return those whose horizon event time ``until`` has passed, with their final labels."""
    contact = state.contact
    if optout_at is not None:
        mark(contact.pending, optout_at, settings.fatigue_horizon_ms)
    done, contact.pending = expired(contact.pending, until, settings.fatigue_horizon_ms)
    return [(s, s.hit) for s in done]


def wants_snapshot(contact: Contact, ts: int, watermark: int, settings: PredictSettings) -> bool:
    """Whether a message delivered at ``ts`` (not yet counted) gets a snapshot."""
    if ts < watermark or ts < contact.at or len(contact.pending) >= settings.max_fatigue_snapshots:
        return False
    last = contact.pending[-1].at if contact.pending else None
    return last is None or ts - last >= settings.fatigue_every_ms
