"""What the models say about one customer at one time: the decide layer reads this.

Each answer is worked out when it is first read, then kept: a decision reads
propensity, fatigue, the receptivity curve, channels and the next category,
and pays for nothing else (the next touchpoint and the devices' shares are
for the API). The answers come from the customer's model state as it is
when they are read, so read them before the customer's next event is folded
in: the moment stage's decisions read them at once, and the API has them all
worked out (:meth:`Predictions.everything`) under the lock that guards the
stage.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Protocol

from momently.predict.curve import ReceptivityCurve
from momently.predict.once import once

Ranked = tuple[tuple[str, float], ...]
ANSWERS: Final = (
    "propensity",
    "receptivity",
    "engage_now",
    "channels",
    "best_channel",
    "devices",
    "active_device",
    "fatigue",
    "next_touchpoints",
    "next_categories",
)
"""Every answer :class:`Predictions` gives."""


class Answers(Protocol):
    """Where :class:`Predictions` gets each answer (the predictor, for one customer)."""

    def propensity(self, now_ms: int) -> float: ...

    def fatigue(self, now_ms: int) -> float: ...

    def receptivity(self) -> ReceptivityCurve: ...

    def channels(self) -> Mapping[str, float]: ...

    def devices(self, now_ms: int) -> Mapping[str, float]: ...

    def active_device(self, now_ms: int) -> str | None: ...

    def next_touchpoints(self) -> Ranked: ...

    def next_categories(self) -> Ranked: ...


class Predictions:
    """What the models say about one customer at ``at_ms``; read by the decide layer."""

    def __init__(self, at_ms: int, answers: Answers) -> None:
        self.at_ms = at_ms
        self._answers = answers

    @once
    def propensity(self) -> float:
        """P(converts within the horizon)."""
        return self._answers.propensity(self.at_ms)

    @once
    def receptivity(self) -> ReceptivityCurve:
        """P(engages) by local hour: ``.at(ms)``, ``.weekly()``, ``.best_time(...)``."""
        return self._answers.receptivity()

    @once
    def engage_now(self) -> float:
        """P(engages) with a message delivered at ``at_ms``."""
        return self.receptivity.at(self.at_ms)

    @once
    def channels(self) -> Mapping[str, float]:
        """P(engages) per channel."""
        return self._answers.channels()

    @once
    def best_channel(self) -> str:
        """The channel with the highest P(engages); the first listed of equals."""
        channels = self.channels
        return max(channels, key=channels.__getitem__)

    @once
    def devices(self) -> Mapping[str, float]:
        """Share of recent use per device, largest first."""
        return self._answers.devices(self.at_ms)

    @once
    def active_device(self) -> str | None:
        """A device used within the active window, if any."""
        return self._answers.active_device(self.at_ms)

    @once
    def fatigue(self) -> float:
        """P(opts out) after one more message now."""
        return self._answers.fatigue(self.at_ms)

    @once
    def next_touchpoints(self) -> Ranked:
        """Top-k (touchpoint, probability)."""
        return self._answers.next_touchpoints()

    @once
    def next_categories(self) -> Ranked:
        """Top-k (category, probability)."""
        return self._answers.next_categories()

    def everything(self) -> Predictions:
        """Work every answer out now (for a reader that reads them later, outside a lock
        the customer's state is guarded by); returns ``self``.

        The answers as reading each of :data:`ANSWERS` gives them, kept the same way,
        in one pass (the answers already read are kept as they are).
        """
        d = self.__dict__
        answers, at = self._answers, self.at_ms
        if "propensity" not in d:
            d["propensity"] = answers.propensity(at)
        curve = d.get("receptivity")
        if curve is None:
            curve = d["receptivity"] = answers.receptivity()
        if "engage_now" not in d:
            d["engage_now"] = curve.at(at)
        channels = d.get("channels")
        if channels is None:
            channels = d["channels"] = answers.channels()
        if "best_channel" not in d:
            d["best_channel"] = max(channels, key=channels.__getitem__)
        if "devices" not in d:
            d["devices"] = answers.devices(at)
        if "active_device" not in d:
            d["active_device"] = answers.active_device(at)
        if "fatigue" not in d:
            d["fatigue"] = answers.fatigue(at)
        if "next_touchpoints" not in d:
            d["next_touchpoints"] = answers.next_touchpoints()
        if "next_categories" not in d:
            d["next_categories"] = answers.next_categories()
        return self

    def engage_at(self, ms: int) -> float:
        """P(engages) with a message delivered at ``ms``."""
        return self.receptivity.at(ms)
