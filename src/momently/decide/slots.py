"""When one decision could send: its slots, how good each is, and which ones the
offer-independent constraints close on each channel.

The slots are *now* and the top of each hour until the moment (or the
horizon) runs out, at most :data:`MAX_SLOTS`. A slot's timing factor is the
customer's receptivity at its local hour relative to their average (at most
4×) times how much of the moment is left then (linear decay to its expiry).

Nothing here depends on the offer, so it is worked out once per decision and
shared by every candidate; and little depends on the customer: the local
hours (and whether they are quiet) from a given hour on are shared by every
decision in that zone, each global cap is counted once per local day or week
its slots span, and a slot is checked against the minimum gap only for the
contacts near enough to matter.
"""

from __future__ import annotations

import functools
from datetime import datetime
from operator import itemgetter
from typing import Final
from zoneinfo import ZoneInfo

from momently.decide.constraints import (
    Contacts,
    Refusal,
    calendar_span,
    cap_refusal,
    caps_refusal,
    quiet_minute,
)
from momently.decide.signals import Signals
from momently.decide.spec import CapSpec, DecideSpec
from momently.moments.model import Moment

HOUR_MS: Final = 3_600_000
MAX_SLOTS: Final = 48

Slot = tuple[float, int, float, float]  # (timing factor, at, receptivity, share of moment left)
Closer = tuple[str | None, Refusal]  # a constraint closing a slot, on one channel or all (None)

_best_first = itemgetter(0)


@functools.lru_cache(maxsize=512)  # 47 hours each: about 2 MB at most
def _hours(
    first: int, zone: ZoneInfo, quiet: tuple[int, int] | None
) -> tuple[tuple[int, int, bool], ...]:
    """(At, local hour of the week, whether quiet) for each hour from ``first`` on;
    shared by every decision in the zone that falls in the same hour."""
    out = []
    for k in range(MAX_SLOTS - 1):
        at = first + k * HOUR_MS
        how, minute = _local(at, zone)
        out.append((at, how, quiet is not None and quiet_minute(quiet, minute)))
    return tuple(out)


def _local(at_ms: int, zone: ZoneInfo) -> tuple[int, int]:
    """(Hour of the week, minute of the day) at ``at_ms``, local."""
    local = datetime.fromtimestamp(at_ms / 1000, zone)
    return local.weekday() * 24 + local.hour, local.hour * 60 + local.minute


class Timeline:
    """One decision's slots, best first, and each channel's open ones.

    ``bound`` collects the constraints that close *now* on a channel (the
    decision's explanation shows them).
    """

    def __init__(
        self,
        spec: DecideSpec,
        moment: Moment,
        signals: Signals,
        contacts: Contacts,
        now: int,
        zone: ZoneInfo,
        bound: set[str],
    ) -> None:
        self.now = now
        self.bound = bound
        end = min(moment.expires_ms, now + spec.arbitration.horizon)
        nxt = (now // HOUR_MS + 1) * HOUR_MS
        later = 0 if nxt >= end else min(MAX_SLOTS - 1, (end - nxt - 1) // HOUR_MS + 1)
        quiet = spec.quiet_hours
        minutes = None if quiet is None else quiet.minutes
        how, minute = _local(now, zone)
        hours = [
            (now, how, minutes is not None and quiet_minute(minutes, minute)),
            *_hours(nxt, zone, minutes)[:later],
        ]
        curve = signals.receptivity
        mean = sum(curve) / len(curve)
        expires = moment.expires_ms
        span = expires - now
        linear = spec.arbitration.decay == "linear" and span > 0
        slots: list[Slot] = []
        for at, how, _ in hours:
            # min(x, 4.0) and max(0.0, x), written out: the same values, NaN included
            receptive = 1.0
            if mean > 0:
                receptive = curve[how] / mean
                if 4.0 < receptive:
                    receptive = 4.0
            left = 1.0
            if linear:
                left = (expires - at) / span
                if not left > 0.0:
                    left = 0.0
            slots.append((receptive * left, at, receptive, left))
        # What closes a slot: global caps (on one channel or all), then quiet hours, then
        # the minimum gap; the caps and the gap are kept per slot, quiet hours as a set.
        self.closers: dict[int, list[Closer]] = {}
        self.quiet: set[int] = set()
        self.hush: Refusal | None = None
        if quiet is not None:
            self.quiet = {at for at, _, quiet_now in hours if quiet_now}
            if self.quiet:
                self.hush = Refusal("quiet_hours", f"{quiet.start}-{quiet.end} local ({zone.key})")
        # Channels a global cap names have open slots of their own; the rest share theirs.
        self.named = {c.channel for c in spec.caps if c.channel is not None}
        if contacts.items:
            times = [h[0] for h in hours]
            if spec.caps:
                self._cap(spec.caps, contacts, times, zone)
            gap = spec.min_gap
            near = [c.at_ms for c in contacts.items if now - gap < c.at_ms < times[-1] + gap]
            for at in times if near else ():
                if at in self.quiet:
                    continue  # quiet hours are checked before the gap
                lo, hi = at - gap, at + gap
                for other in near:
                    if lo < other < hi:  # |other - at| < gap
                        refusal = Refusal(
                            "min_gap", f"another message {abs(other - at) // 60_000} min apart"
                        )
                        self.closers.setdefault(at, []).append((None, refusal))
                        break
        # Best first; times were in order and the sort is stable, so ties go earliest first.
        slots.sort(key=_best_first, reverse=True)
        self.slots = slots
        self._open: dict[str | None, tuple[list[Slot], Refusal | None]] = {}

    def _cap(
        self,
        caps: tuple[CapSpec, ...],
        contacts: Contacts,
        times: list[int],
        zone: ZoneInfo,
    ) -> None:
        """Add the global caps that close slots at ``times`` (in order), in the caps' order."""
        first, last = times[0], times[-1]
        for cap in caps:
            if isinstance(cap.per, int):  # a rolling span: each slot sees its own window
                for at in times:
                    refusal = caps_refusal((cap,), contacts, at, zone, cap.channel or "")
                    if refusal is not None:
                        self.closers.setdefault(at, []).append((cap.channel, refusal))
                continue
            # A calendar cap: count each local day (or week) the slots fall in once.
            at = first
            while at <= last:
                start, end = calendar_span(cap, at, zone)
                used = sum(
                    1
                    for c in contacts.items
                    if start <= c.at_ms < end and (cap.channel is None or c.channel == cap.channel)
                )
                if used + 1 > cap.max:
                    refusal = cap_refusal(cap, used, None)
                    for t in times:
                        if start <= t < end:
                            self.closers.setdefault(t, []).append((cap.channel, refusal))
                at = end

    def open(self, channel: str) -> tuple[list[Slot], Refusal | None]:
        """The slots no global cap, quiet hour or gap closes on ``channel``, best first,
        and the last refusal met on the way (None when every slot is open)."""
        key = channel if channel in self.named else None
        found = self._open.get(key)
        if found is not None:
            return found
        closers, quiet, hush = self.closers, self.quiet, self.hush
        if not closers and not quiet:
            found = self._open[key] = (self.slots, None)
            return found
        slots: list[Slot] = []
        last: Refusal | None = None
        for slot in self.slots:
            at = slot[1]
            refusal = hush if at in quiet else None
            closing = closers.get(at)
            if closing is not None:
                for only, why in closing:
                    if only is None or only == channel:
                        if refusal is None or why.check == "cap":
                            refusal = why
                        break
            if refusal is None:
                slots.append(slot)
                continue
            last = refusal
            if at == self.now:
                self.bound.add(f"{refusal.check}: {refusal.reason}")
        found = self._open[key] = (slots, last)
        return found
