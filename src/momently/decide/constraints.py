"""Hard constraints, checked in a fixed order and never violated.

1. consent and subscription per channel and purpose, and a reachable address;
2. opt-out (an explicit ``<channel>:<purpose>`` or ``all:<purpose>`` refusal);
3. frequency caps — global, per channel, per offer — over local calendar days
   and weeks or rolling spans, counting every contact already reserved;
4. quiet hours in the customer's time zone;
5. the minimum gap between two messages.

(At most one message per moment holds by construction: a decision picks one.)

Each check is a pure function of the spec, the customer's profile and
:class:`Contacts`, and a time; a failing check names itself and why, which is
what the decision's explanation shows.

>>> from momently.decide.spec import QuietHours
>>> in_quiet_hours(QuietHours(start="21:00", end="08:00"), 22 * 60)
True
"""

from __future__ import annotations

import bisect
import functools
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo

import msgspec

from momently.decide.spec import CapSpec, ChannelSpec, OfferSpec, Purpose, QuietHours
from momently.moments.learned_places import zone_for
from momently.state.profile import Profile

WEEK_MS: Final = 7 * 86_400_000
MAX_CONTACTS: Final = 200


class Contact(msgspec.Struct, frozen=True, array_like=True):
    """One message reserved for a customer: when it goes, on which channel, which offer."""

    at_ms: int
    channel: str
    offer: str
    decision: str


class Contacts(msgspec.Struct, omit_defaults=True):
    """A customer's reserved and sent messages, oldest first, bounded in size."""

    items: list[Contact] = []

    def reserve(self, contact: Contact, keep_ms: int) -> None:
        """Add a contact; forget those older than ``keep_ms`` before it (and beyond the cap)."""
        items = [c for c in self.items if c.at_ms > contact.at_ms - keep_ms]
        items.append(contact)
        items.sort(key=lambda c: (c.at_ms, c.decision))
        self.items = items[-MAX_CONTACTS:]

    def cancel(self, decision: str) -> bool:
        """Give back a reservation (a send cancelled before it went)."""
        kept = [c for c in self.items if c.decision != decision]
        changed = len(kept) != len(self.items)
        self.items = kept
        return changed


@dataclass(frozen=True, slots=True)
class Refusal:
    """A constraint that bound: which one, and why."""

    check: str  # consent, opt_out, address, cap, quiet_hours, min_gap
    reason: str


def customer_zone(profile: Profile | None) -> ZoneInfo:
    """The customer's time zone, UTC when unknown or not a real zone."""
    value = None if profile is None or profile.timezone is None else profile.timezone.value
    return _zone(value if isinstance(value, str) else None)


@functools.lru_cache(maxsize=1024)
def _zone(name: str | None) -> ZoneInfo:
    # Remembered: a name that is not a zone would otherwise be looked up on disk every time.
    return zone_for(name)


def local_minutes(at_ms: int, zone: ZoneInfo) -> int:
    """Minutes after local midnight at ``at_ms``."""
    local = datetime.fromtimestamp(at_ms / 1000, zone)
    return local.hour * 60 + local.minute


def in_quiet_hours(quiet: QuietHours, minute: int) -> bool:
    """Whether a local minute of the day falls in the quiet hours (start inclusive)."""
    return quiet_minute(quiet.minutes, minute)


def quiet_minute(minutes: tuple[int, int], minute: int) -> bool:
    """:func:`in_quiet_hours` for quiet hours as (start, end) minutes after midnight."""
    start, end = minutes
    if start == end:
        return False
    if start < end:
        return start <= minute < end
    return minute >= start or minute < end


def quiet_until(quiet: QuietHours, at_ms: int, zone: ZoneInfo) -> int:
    """The first moment at or after ``at_ms`` outside the quiet hours."""
    if not in_quiet_hours(quiet, local_minutes(at_ms, zone)):
        return at_ms
    _, end = quiet.minutes
    local = datetime.fromtimestamp(at_ms / 1000, zone)
    candidate = local.replace(hour=end // 60, minute=end % 60, second=0, microsecond=0)
    if candidate <= local:
        candidate = candidate + timedelta(days=1)
    # Rebuild from the wall time so a daylight-saving change lands on the right instant.
    wall = datetime(
        candidate.year, candidate.month, candidate.day, end // 60, end % 60, tzinfo=zone
    )
    return max(at_ms, int(wall.timestamp() * 1000))


def cap_window(cap: CapSpec, at_ms: int, zone: ZoneInfo) -> tuple[int, int]:
    """The span ``[start, end)`` a cap counts over for a message at ``at_ms``."""
    if isinstance(cap.per, int):
        return at_ms - cap.per + 1, at_ms + cap.per
    local = datetime.fromtimestamp(at_ms / 1000, zone)
    day = datetime(local.year, local.month, local.day, tzinfo=zone)
    if cap.per == "week":
        day = day - timedelta(days=local.weekday())
        after = day + timedelta(days=7)
    else:
        after = day + timedelta(days=1)
    start = datetime(day.year, day.month, day.day, tzinfo=zone)
    end = datetime(after.year, after.month, after.day, tzinfo=zone)
    return int(start.timestamp() * 1000), int(end.timestamp() * 1000)


def cap_keep_ms(caps: list[CapSpec]) -> int:
    """How long contacts must be remembered for these caps to count right."""
    longest = WEEK_MS + 86_400_000  # a calendar week, and a day for zone and DST slack
    for cap in caps:
        if isinstance(cap.per, int):
            longest = max(longest, 2 * cap.per)
    return longest


_SPANS: dict[tuple[ZoneInfo, str], tuple[list[int], list[tuple[int, int]]]] = {}
_SPANS_KEPT: Final = 64  # spans remembered per zone and period before starting afresh


def calendar_span(cap: CapSpec, at_ms: int, zone: ZoneInfo) -> tuple[int, int]:
    """:func:`cap_window` for a calendar cap, remembered across calls.

    Local days (and weeks) follow one another without gap or overlap — each
    span ends where the next begins, daylight-saving changes included — so a
    span found once is the answer for every later time inside it, and most
    calls cost a binary search instead of time zone arithmetic.
    """
    per = str(cap.per)
    found = _SPANS.get((zone, per))
    if found is None:
        found = _SPANS[(zone, per)] = ([], [])
    starts, spans = found
    i = bisect.bisect_right(starts, at_ms) - 1
    if i >= 0 and at_ms < spans[i][1]:
        return spans[i]
    span = cap_window(cap, at_ms, zone)
    if len(starts) >= _SPANS_KEPT:
        starts.clear()
        spans.clear()
    i = bisect.bisect_right(starts, span[0])
    starts.insert(i, span[0])
    spans.insert(i, span)
    return span


def _cap_refusal(
    cap: CapSpec,
    contacts: Contacts,
    at_ms: int,
    zone: ZoneInfo,
    channel: str,
    offer: str | None,
) -> Refusal | None:
    if cap.channel is not None and cap.channel != channel:
        return None
    if not contacts.items and cap.max >= 1:
        return None
    if isinstance(cap.per, int):
        start, end = cap_window(cap, at_ms, zone)
    else:
        start, end = calendar_span(cap, at_ms, zone)
    if isinstance(cap.per, int):
        # A rolling span: no window of that length around the new message may exceed max.
        times = sorted(
            c.at_ms
            for c in contacts.items
            if start <= c.at_ms < end
            and (cap.channel is None or c.channel == cap.channel)
            and (offer is None or c.offer == offer)
        )
        worst = _max_in_span([*times, at_ms], at_ms, cap.per)
        used = worst - 1
    else:
        used = sum(
            1
            for c in contacts.items
            if start <= c.at_ms < end
            and (cap.channel is None or c.channel == cap.channel)
            and (offer is None or c.offer == offer)
        )
    if used + 1 > cap.max:
        return cap_refusal(cap, used, offer)
    return None


def cap_refusal(cap: CapSpec, used: int, offer: str | None) -> Refusal:
    """What a cap that binds says: whose messages, how many of how many, per what."""
    scope = f"offer {offer}" if offer else "all offers"
    on = f" on {cap.channel}" if cap.channel else ""
    per = cap.per if isinstance(cap.per, str) else f"{cap.per // 60_000} min"
    return Refusal("cap", f"{scope}{on}: {used} of {cap.max} per {per} already")


def _max_in_span(times: list[int], pivot: int, span: int) -> int:
    """The most ``times`` inside any window of ``span`` ms that contains ``pivot``."""
    times = sorted(times)
    best = 0
    for i, start in enumerate(times):
        if start > pivot or start + span <= pivot:
            continue
        count = sum(1 for t in times[i:] if t < start + span)
        best = max(best, count)
    # windows ending at pivot
    ending = sum(1 for t in times if pivot - span < t <= pivot)
    return max(best, ending)


def reachable(channel: ChannelSpec, profile: Profile | None, active_device: str | None) -> bool:
    """Whether the customer has an address on this channel."""
    if profile is None:
        return False
    if channel.kind == "email":
        return bool(profile.emails)
    if channel.kind == "sms":
        return bool(profile.phones)
    if channel.kind == "push":
        return bool(profile.push_tokens)
    if channel.kind == "in_app":
        return active_device is not None
    if channel.kind == "web_push":
        return "web_push_subscription" in profile.traits
    return True  # a webhook reaches the brand's own system


def consent_refusal(
    channel: ChannelSpec, purpose: Purpose, profile: Profile | None
) -> Refusal | None:
    """Checks 1 and 2: consent for this channel and purpose, then explicit opt-outs."""
    consent = {} if profile is None else profile.consent
    own = consent.get(f"{channel.name}:{purpose}") or consent.get(f"{channel.kind}:{purpose}")
    everywhere = consent.get(f"all:{purpose}") or consent.get(purpose)  # a bare category
    if purpose == "marketing" and channel.opt_in and (own is None or not own.granted):
        return Refusal("consent", f"{channel.name}: no opt-in to marketing")
    for state, scope in ((own, channel.name), (everywhere, "all channels")):
        if state is not None and not state.granted:
            return Refusal("opt_out", f"opted out of {purpose} on {scope} ({state.source})")
    return None


def caps_refusal(
    caps: list[CapSpec] | tuple[CapSpec, ...],
    contacts: Contacts,
    at_ms: int,
    zone: ZoneInfo,
    channel: str,
    offer: str | None = None,
) -> Refusal | None:
    """Check 3: the first cap a message at ``at_ms`` would exceed (an offer's caps count
    only that offer's messages)."""
    for cap in caps:
        refusal = _cap_refusal(cap, contacts, at_ms, zone, channel, offer)
        if refusal is not None:
            return refusal
    return None


def spacing_refusal(
    quiet: QuietHours | None,
    min_gap_ms: int,
    contacts: Contacts,
    at_ms: int,
    zone: ZoneInfo,
    minute: int | None = None,
) -> Refusal | None:
    """Checks 4 and 5: quiet hours in the customer's zone, then the minimum gap
    (``minute``: the local minute of the day at ``at_ms``, when the caller knows it)."""
    if minute is None:
        minute = local_minutes(at_ms, zone)
    if quiet is not None and in_quiet_hours(quiet, minute):
        return Refusal("quiet_hours", f"{quiet.start}-{quiet.end} local ({zone.key})")
    if min_gap_ms > 0:
        for contact in contacts.items:
            if abs(contact.at_ms - at_ms) < min_gap_ms:
                return Refusal(
                    "min_gap", f"another message {abs(contact.at_ms - at_ms) // 60_000} min apart"
                )
    return None


def check_send(
    *,
    channel: ChannelSpec,
    offer: OfferSpec,
    profile: Profile | None,
    contacts: Contacts,
    at_ms: int,
    caps: list[CapSpec],
    quiet: QuietHours | None,
    min_gap_ms: int,
    active_device: str | None,
) -> Refusal | None:
    """The first constraint a message on ``channel`` at ``at_ms`` would break, or None."""
    refusal = consent_refusal(channel, offer.purpose, profile)
    if refusal is not None:
        return refusal
    if not reachable(channel, profile, active_device):
        return Refusal("address", f"{channel.name}: no address for this customer")
    if offer.purpose == "transactional":
        return None  # caps, quiet hours and gaps apply to marketing only
    zone = customer_zone(profile)
    return (
        caps_refusal(caps, contacts, at_ms, zone, channel.name)
        or caps_refusal(offer.caps, contacts, at_ms, zone, channel.name, offer.id)
        or spacing_refusal(quiet, min_gap_ms, contacts, at_ms, zone)
    )
