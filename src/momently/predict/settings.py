"""The predictor's settings: one frozen object, validated when it is made."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Final

from momently.errors import ConfigError

MINUTE: Final = 60_000
HOUR: Final = 60 * MINUTE
DAY: Final = 24 * HOUR


@dataclass(frozen=True, slots=True)
class PredictSettings:
    """Horizons, windows and caps of the online models (times in ms).

    >>> PredictSettings(horizon_ms=0)
    Traceback (most recent call last):
    ...
    momently.errors.ConfigError: horizon_ms must be positive, not 0
    """

    conversion_event: str = "Order Completed"
    horizon_ms: int = 48 * HOUR  # propensity: converts within this
    snapshot_every_ms: int = HOUR  # at most one propensity snapshot per this...
    intent_snapshot_every_ms: int = 10 * MINUTE  # ...or per this on a cart or checkout step
    max_snapshots: int = 24  # pending propensity labels per customer
    response_window_ms: int = HOUR  # receptivity: engaged this soon after delivery
    attribution_window_ms: int = DAY  # channel affinity: engaged this soon after delivery
    max_exposures: int = 16  # deliveries waiting for an engagement, per customer
    session_gap_ms: int = 30 * MINUTE  # a gap this long starts a new session
    active_window_ms: int = 15 * MINUTE  # "active now": used a device this recently
    max_devices: int = 6
    fatigue_horizon_ms: int = 72 * HOUR  # fatigue: opts out within this of a message
    fatigue_every_ms: int = 2 * HOUR  # at most one fatigue snapshot per this
    max_fatigue_snapshots: int = 36
    lateness_ms: int = 5 * MINUTE  # events later than this may miss the labels they change
    history: int = 8  # touchpoints and categories kept for next need
    propensity_prior: float = 0.05  # P(converts within the horizon) before any label
    fatigue_prior: float = 0.005  # P(opts out after one more message) before any label
    prior_labels: int = 50  # labels over which answers move from the prior (burn-in, unscored)
    top_k: int = 3  # next-need candidates reported, and k of hit@k
    score_every: int = 4  # next need: hit@k scored on one transition in this many

    def __post_init__(self) -> None:
        if not self.conversion_event:
            raise ConfigError("conversion_event must name an event")
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, int) and value <= 0:
                raise ConfigError(f"{f.name} must be positive, not {value}")
            if isinstance(value, float) and not 0.0 < value < 1.0:
                raise ConfigError(f"{f.name} must be a probability in (0, 1), not {value}")
        if self.response_window_ms > self.attribution_window_ms:
            raise ConfigError("response_window_ms must not exceed attribution_window_ms")
