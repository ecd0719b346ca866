"""What the models remember about one customer: msgspec Structs saved with the moment state.

Everything here is bounded: counters are exponentially decayed (a fixed
number of floats however long the customer lives), queues of pending labels
are capped, histories keep their last few items. Population models live
elsewhere (:mod:`momently.predict.population`); this is only the customer's
own evidence, fed to them as features.
"""

from __future__ import annotations

import msgspec


class Activity(msgspec.Struct, array_like=True, omit_defaults=True):
    """Shopping activity: decayed counts per kind and window, and a few times."""

    at: int = 0  # the event time ``counts`` are decayed to
    counts: list[float] = []  # ACTIVITIES x ACTIVITY_WINDOWS, row-major
    first_ms: int = 0
    last_ms: int = 0  # the latest customer action
    gap_ms: int = 0  # time between the last two actions
    purchases: int = 0
    last_purchase_ms: int = 0
    cart_ms: int = 0  # the latest add-to-cart or checkout step


class Snapshot(msgspec.Struct, array_like=True, omit_defaults=True):
    """Features at one moment, waiting for their label, with the prediction made then."""

    at: int
    p: float  # what the model predicted at ``at`` (prequential metrics); NaN: not scored
    x: bytes  # float32 features in the model's feature order
    hit: bool = False  # the outcome has happened within the horizon


class Exposure(msgspec.Struct, array_like=True):
    """A message delivered to the customer, waiting to be engaged with or to expire."""

    channel: str
    at: int
    hour: int  # local hour of week at delivery
    p_time: float  # predicted P(engage promptly) at ``hour``, when delivered
    p_channel: float  # predicted P(engage) on ``channel``, when delivered
    prompt: bool = False  # engaged with within the response window
    engaged: bool = False  # engaged with within the attribution window
    timed: bool = False  # its receptivity outcome is already learned


class Contact(msgspec.Struct, array_like=True, omit_defaults=True):
    """Contact pressure and response, for fatigue."""

    at: int = 0  # the event time the decayed values are at
    messages: list[float] = []  # decayed deliveries, one per FATIGUE_WINDOWS
    engaged: float = 0.0  # decayed engagements over the longest window
    since_engaged: int = 0  # messages delivered since the last engagement
    last_message_ms: int = 0
    last_engaged_ms: int = 0
    optouts: int = 0
    pending: list[Snapshot] = []  # deliveries waiting for their opt-out label


class DeviceUse(msgspec.Struct, array_like=True):
    """How much the customer uses one device, decayed, and when it was last used."""

    type: str | None
    score: float
    at: int


class PredictState(msgspec.Struct, omit_defaults=True):
    """Per-customer state of every model; part of the moment stage's customer state."""

    watermark: int = 0  # the latest event time seen: labels mature against it
    activity: Activity = msgspec.field(default_factory=Activity)
    snapshots: list[Snapshot] = []  # propensity features waiting for a label
    last_snapshot_ms: int = 0
    hours: dict[int, tuple[int, int]] = {}  # local hour of week -> (exposures, engagements)
    channels: dict[str, tuple[int, int]] = {}  # channel -> (exposures, engagements)
    exposures: list[Exposure] = []
    devices: dict[str, DeviceUse] = {}
    contact: Contact = msgspec.field(default_factory=Contact)
    touchpoints: list[str] = []  # the latest touchpoints, oldest first
    categories: list[str] = []  # the latest product categories, oldest first
