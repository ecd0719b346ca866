"""Deliveries waiting for an engagement: how exposures resolve into trials.

A delivered message opens two trials. *Timing* (receptivity): was it engaged
with within the response window? *Channel* (affinity): was it engaged with
within the longer attribution window? An engagement marks the latest pending
delivery on its channel; every trial is learned when its window closes —
when event time has passed it — whether it was won or lost. Learning a won
trial at once would count wins up to a window ahead of the losses of the same
deliveries, which overstates every rate while the model is young.

An engagement no delivery accounts for is *organic*: a timing trial won at the
hour it happened (the customer was paying attention then), and, when its
channel is known, a channel trial won (the delivery was not tracked, the
answer was). Organic trials count at once, for the customer alone.

>>> from momently.predict.state import PredictState
>>> settings = PredictSettings()
>>> state = PredictState()
>>> on_exposure(state, "push", 0, 20, 0.2, 0.3, settings)
>>> on_engagement(state, "push", 60_000, 20, settings)
Outcomes(timing=[], channel=[])
>>> found = expire(state, settings.attribution_window_ms + 1, settings)
>>> found.timing
[Trial(key=20, engaged=True, p=0.2, at=0)]
>>> found.channel
[Trial(key='push', engaged=True, p=0.3, at=0)]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from momently.predict.settings import PredictSettings
from momently.predict.state import Exposure, PredictState


class Trial(NamedTuple):
    """One resolved trial of a delivery (or an organic engagement)."""

    key: int | str  # the local hour of week (timing), or the channel
    engaged: bool
    p: float | None  # predicted when delivered; None for an organic trial
    at: int  # when delivered (or, organic, engaged)


@dataclass(slots=True)
class Outcomes:
    """Trials resolved by one event."""

    timing: list[Trial] = field(default_factory=list)
    channel: list[Trial] = field(default_factory=list)


def on_exposure(
    state: PredictState,
    channel: str,
    ts: int,
    hour: int,
    p_time: float,
    p_channel: float,
    settings: PredictSettings,
) -> None:
    """Queue one delivery; past the cap the oldest is forgotten unlearned (no label is made up)."""
    state.exposures.append(Exposure(channel, ts, hour, p_time, p_channel))
    if len(state.exposures) > settings.max_exposures:
        state.exposures.sort(key=lambda e: e.at)
        del state.exposures[: len(state.exposures) - settings.max_exposures]


def expire(state: PredictState, until: int, settings: PredictSettings) -> Outcomes:
    """The trials of deliveries whose windows event time (``until``) has passed."""
    found = Outcomes()
    response, attribution = settings.response_window_ms, settings.attribution_window_ms
    for e in state.exposures:
        if e.at + attribution < until or (not e.timed and e.at + response < until):
            break
    else:
        return found  # nothing due: the common case, one pass and no new list
    keep: list[Exposure] = []
    for e in state.exposures:
        if not e.timed and e.at + settings.response_window_ms < until:
            found.timing.append(Trial(e.hour, e.prompt, e.p_time, e.at))
            e.timed = True
        if e.at + settings.attribution_window_ms < until:  # never before the response window
            found.channel.append(Trial(e.channel, e.engaged, e.p_channel, e.at))
        else:
            keep.append(e)
    state.exposures = keep
    return found


def on_engagement(
    state: PredictState, channel: str | None, ts: int, hour: int, settings: PredictSettings
) -> Outcomes:
    """Mark the delivery an engagement at ``ts`` answers; returns the organic trials it makes."""
    found = Outcomes()
    match: Exposure | None = None
    if channel is not None:
        for e in state.exposures:
            if (
                e.channel == channel
                and not e.engaged
                and e.at <= ts <= e.at + settings.attribution_window_ms
                and (match is None or e.at > match.at)
            ):
                match = e
    if match is None:
        found.timing.append(Trial(hour, True, None, ts))
        if channel is not None:
            found.channel.append(Trial(channel, True, None, ts))
        return found
    match.engaged = True
    if not match.timed and ts - match.at <= settings.response_window_ms:
        match.prompt = True
    else:
        found.timing.append(Trial(hour, True, None, ts))
    return found


def count_hour(state: PredictState, hour: int, engaged: bool) -> None:
    """One timing trial at local hour of week ``hour``, engaged or not."""
    trials, won = state.hours.get(hour, (0, 0))
    state.hours[hour] = (trials + 1, won + (1 if engaged else 0))
