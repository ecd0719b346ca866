"""Channel and device affinity: where the customer answers, and where they are right now.

Channel: one Beta–Binomial per channel — P(engage within the attribution
window of a delivery on that channel) — with the population's rate for the
channel as the prior, which is itself shrunk to the global rate.
:class:`ChannelAffinity` is the population level as a river classifier; the
customer's counts for the channel travel in ``x`` (``sent``, ``engaged``).

Device: a decayed count of sessions and engagements per device, so the
device the customer uses most lately gets the highest share, and "active
now" is a device used within the last few minutes.

>>> model = ChannelAffinity()
>>> ignored = model.predict_proba_one({"channel": "email", "sent": 20, "engaged": 0})[True]
>>> answered = model.predict_proba_one({"channel": "push", "sent": 20, "engaged": 15})[True]
>>> answered > 0.5 > ignored
True
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final

from river import base
from river.base.typing import ClfTarget

from momently.predict.settings import DAY, PredictSettings
from momently.predict.signals import CHANNELS, Signal
from momently.predict.state import DeviceUse, PredictState
from momently.predict.types import Features

DEVICE_TAU: Final = 30.0 * DAY
_NONE: Final = (0, 0)


def _count(x: Features, key: str) -> float:
    value = x.get(key, 0.0)
    return float(value) if isinstance(value, int | float) and value > 0 else 0.0


class ChannelAffinity(base.Classifier):
    """P(engage | delivered on a channel), for the population or, given counts, a customer.

    Parameters
    ----------
    prior_rate, prior_strength
        The Beta prior of the global rate, as a mean and pseudo-trials.
    population_strength
        Pseudo-trials with which the global rate is a prior for each channel.
    customer_strength
        Pseudo-trials with which the channel's population rate is a prior for a customer.
    """

    def __init__(
        self,
        prior_rate: float = 0.2,
        prior_strength: float = 10.0,
        population_strength: float = 20.0,
        customer_strength: float = 4.0,
    ) -> None:
        self.prior_rate = prior_rate
        self.prior_strength = prior_strength
        self.population_strength = population_strength
        self.customer_strength = customer_strength
        self.trials: dict[str, float] = {}
        self.wins: dict[str, float] = {}
        self.total_trials = 0.0
        self.total_wins = 0.0

    # Until an update: each channel's population rate, and a customer's rates without counts.
    _priors: dict[str, float] | None = None
    _fresh: dict[str, float] | None = None

    @property
    def _multiclass(self) -> bool:
        return False

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_priors", None)  # caches: not part of what the model knows
        state.pop("_fresh", None)
        return state

    def global_rate(self) -> float:
        return (self.total_wins + self.prior_strength * self.prior_rate) / (
            self.total_trials + self.prior_strength
        )

    def channel_rate(self, channel: object) -> float:
        """The population's rate on ``channel`` (the global rate for one never seen)."""
        g = self.global_rate()
        if not isinstance(channel, str):
            return g
        n, k = self.trials.get(channel, 0.0), self.wins.get(channel, 0.0)
        return (k + self.population_strength * g) / (n + self.population_strength)

    def learn_one(self, x: Features, y: ClfTarget, w: float = 1.0) -> None:
        channel = x.get("channel")
        if channel not in CHANNELS:
            return  # a fixed set: clients cannot grow the model without bound
        self.trials[channel] = self.trials.get(channel, 0.0) + w
        self.total_trials += w
        if y:
            self.wins[channel] = self.wins.get(channel, 0.0) + w
            self.total_wins += w
        self._priors = self._fresh = None

    def predict_proba_one(self, x: Features, **kwargs: Any) -> dict[ClfTarget, float]:
        p = self.rate(x.get("channel"), _count(x, "sent"), _count(x, "engaged"))
        return {False: 1.0 - p, True: p}

    def rates(self, counts: Mapping[str, tuple[int, int]]) -> dict[str, float]:
        """P(engage) on every channel for a customer with these (sent, engaged) counts."""
        priors, found = self._priors, self._fresh
        s = self.customer_strength
        if priors is None or found is None:
            priors = self._priors = {c: self.channel_rate(c) for c in CHANNELS}
            # (0 + s * prior) / (0 + s): the rate below for a channel without counts
            found = self._fresh = {c: (0 + s * prior) / (0 + s) for c, prior in priors.items()}
        found = found.copy()
        for channel, (sent, engaged) in counts.items():  # the few channels sent on
            prior = priors.get(channel)
            if prior is not None:
                found[channel] = ((engaged if engaged < sent else sent) + s * prior) / (sent + s)
        return found

    def rate(self, channel: object, sent: float, engaged: float) -> float:
        """P(engage) on ``channel`` for a customer with ``engaged`` of ``sent`` answered."""
        prior = self.channel_rate(channel)
        s = self.customer_strength
        return (min(engaged, sent) + s * prior) / (sent + s)


def channel_x(state: PredictState, channel: str) -> Features:
    """The features of ``channel`` for this customer."""
    sent, engaged = state.channels.get(channel, (0, 0))
    return {"channel": channel, "sent": sent, "engaged": engaged}


def count_channel(state: PredictState, channel: str, engaged: bool) -> None:
    """One delivery on ``channel`` resolved, engaged or not."""
    sent, won = state.channels.get(channel, (0, 0))
    state.channels[channel] = (sent + 1, won + (1 if engaged else 0))


def use_device(state: PredictState, signal: Signal, ts: int, settings: PredictSettings) -> None:
    """Count a session or engagement on the signal's device; keep the latest few devices."""
    if signal.device is None or signal.kind not in ("action", "conversion", "engagement"):
        return
    use = state.devices.get(signal.device)
    if use is None:
        use = state.devices[signal.device] = DeviceUse(signal.device_type, 0.0, ts)
    if ts >= use.at:
        if ts > use.at:
            use.score *= math.exp(-(ts - use.at) / DEVICE_TAU)
            use.at = ts
        use.score += 1.0
    else:
        use.score += math.exp(-(use.at - ts) / DEVICE_TAU)
    if signal.device_type:
        use.type = signal.device_type
    if len(state.devices) > settings.max_devices:
        oldest = min(state.devices.items(), key=lambda kv: (kv[1].at, kv[0]))[0]
        del state.devices[oldest]


def device_affinity(state: PredictState, now: int) -> dict[str, float]:
    """Each device's share of the customer's recent use, largest first."""
    if len(state.devices) == 1:  # the common case: all of it, if any
        ((device, use),) = state.devices.items()
        score = use.score * math.exp(-max(0, now - use.at) / DEVICE_TAU)
        return {device: 1.0} if score > 0 else {}
    scores = {
        device: use.score * math.exp(-max(0, now - use.at) / DEVICE_TAU)
        for device, use in state.devices.items()
    }
    total = sum(scores.values())
    if total <= 0:
        return {}
    return dict(sorted(((d, s / total) for d, s in scores.items()), key=lambda kv: (-kv[1], kv[0])))


def active_device(state: PredictState, now: int, window: int) -> str | None:
    """The device used most recently, if within ``window`` before ``now``."""
    if len(state.devices) < 2:
        if not state.devices:
            return None
        ((device, use),) = state.devices.items()
    else:
        device, use = max(state.devices.items(), key=lambda kv: (kv[1].at, kv[0]))
    return device if 0 <= now - use.at <= window else None
