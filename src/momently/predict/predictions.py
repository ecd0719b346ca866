"""What the models say about one customer at one time: the decide layer reads this."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from momently.predict.curve import ReceptivityCurve

Ranked = tuple[tuple[str, float], ...]


@dataclass(frozen=True, slots=True)
class Predictions:
    """What the models say about one customer at ``at_ms``; read by the decide layer."""

    at_ms: int
    propensity: float  # P(converts within the horizon)
    receptivity: ReceptivityCurve  # P(engages) by local hour; .at(ms), .best_time(...)
    engage_now: float  # P(engages) with a message delivered at ``at_ms``
    channels: Mapping[str, float]  # P(engages) per channel
    best_channel: str
    devices: Mapping[str, float]  # share of recent use per device, largest first
    active_device: str | None  # a device used within the active window, if any
    fatigue: float  # P(opts out) after one more message now
    next_touchpoints: Ranked  # top-k (token, probability)
    next_categories: Ranked

    def engage_at(self, ms: int) -> float:
        """P(engages) with a message delivered at ``ms``."""
        return self.receptivity.at(ms)
