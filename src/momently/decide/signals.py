"""What the decision reads from the predictors about one customer, now.

A frozen snapshot, so that arbitration stays a pure function: the runtime
fills it from the online models (``momently.predict``) and tests fill it by
hand with the truth they want to check against.

>>> flat = Signals.neutral()
>>> flat.engage_at(0, "UTC") == flat.engage_at(3_600_000 * 20, "UTC")
True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from momently.moments.learned_places import zone_for
from momently.predict import Predictions

HOURS_PER_WEEK: Final = 168
BASE_ENGAGE: Final = 0.05


def hour_of_week(at_ms: int, tz: str | None) -> int:
    """Local hour of the week, Monday 00:00-00:59 being 0.

    >>> hour_of_week(0, "UTC")  # 1970-01-01 was a Thursday
    72
    """
    local = datetime.fromtimestamp(at_ms / 1000, zone_for(tz))
    return local.weekday() * 24 + local.hour


@dataclass(frozen=True, slots=True)
class Signals:
    """Predictions about one customer at one time."""

    propensity: float = 0.05  # P(converts within the horizon)
    receptivity: tuple[float, ...] = (BASE_ENGAGE,) * HOURS_PER_WEEK  # P(engage) by local hour
    channel_affinity: dict[str, float] = field(default_factory=dict)  # channel kind -> P(engage)
    active_device: str | None = None  # a device with a session right now
    fatigue: float = 0.0  # P(one more message leads to an opt-out)
    next_need: tuple[tuple[str, float], ...] = ()  # likely next categories/touchpoints

    def __post_init__(self) -> None:
        if len(self.receptivity) != HOURS_PER_WEEK:
            raise ValueError(f"receptivity needs {HOURS_PER_WEEK} hourly values")
        for name in ("propensity", "fatigue"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a probability, not {value!r}")

    @classmethod
    def neutral(cls) -> Signals:
        return cls()

    @classmethod
    def of(cls, predictions: Predictions) -> Signals:
        """What the decision needs from the online models' predictions."""
        return cls(
            propensity=min(1.0, max(0.0, predictions.propensity)),
            receptivity=predictions.receptivity.weekly(),
            channel_affinity=dict(predictions.channels),
            active_device=predictions.active_device,
            fatigue=min(1.0, max(0.0, predictions.fatigue)),
            next_need=tuple(predictions.next_categories),
        )

    def engage_at(self, at_ms: int, tz: str | None) -> float:
        """P(engage) with a message arriving at ``at_ms`` (the customer's local hour)."""
        return self.receptivity[hour_of_week(at_ms, tz)]

    def affinity(self, channel_kind: str) -> float:
        """The channel's P(engage) relative to the customer's average channel (1 = average)."""
        if not self.channel_affinity:
            return 1.0
        mean = sum(self.channel_affinity.values()) / len(self.channel_affinity)
        value = self.channel_affinity.get(channel_kind, mean)
        return value / mean if mean > 0 else 1.0
