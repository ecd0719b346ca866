"""The customer profile and the pure functions that build it from events.

Every field that can be overwritten keeps the stamp (event time, messageId) of
the write that set it, and a newer stamp wins. That makes folding events into
a profile and merging two profiles order-independent: the same events give
the same profile, whatever order they arrive in and however the profiles were
split before a merge.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import msgspec

from momently.events import Event

Stamp = tuple[int, str]  # (event time in ms, messageId): a total order on writes


class Stamped(msgspec.Struct, array_like=True):
    value: Any
    ts: int
    mid: str

    @property
    def stamp(self) -> Stamp:
        return (self.ts, self.mid)


class Device(msgspec.Struct, kw_only=True, omit_defaults=True):
    id: str
    type: str | None = None
    manufacturer: str | None = None
    model: str | None = None
    os: str | None = None
    app: str | None = None
    token: str | None = None
    first_seen: int = 0
    last_seen: int = 0
    # The stamp of the write that set each field: per field, the newest value wins.
    stamps: dict[str, Stamp] = {}

    def stamp_of(self, field: str) -> Stamp:
        # A record written before stamps were kept counts as of its last sighting.
        return self.stamps.get(field, (self.last_seen, ""))


_DEVICE_FIELDS = ("type", "manufacturer", "model", "os", "app", "token")


class Consent(msgspec.Struct, kw_only=True):
    granted: bool
    source: str
    ts: int
    mid: str


class Profile(msgspec.Struct, kw_only=True):
    """Everything momently knows about one canonical customer."""

    customer_id: str
    created: Stamp
    user_id: str | None = None
    traits: dict[str, Stamped] = {}
    emails: list[str] = []
    phones: list[str] = []
    push_tokens: list[str] = []
    devices: dict[str, Device] = {}
    timezone: Stamped | None = None
    locale: Stamped | None = None
    location: Stamped | None = None
    consent: dict[str, Consent] = {}
    first_seen: int = 0
    last_seen: int = 0
    counts: dict[str, int] = {}
    merged_from: list[str] = []

    def to_json(self) -> dict[str, Any]:
        """The profile as the admin API shows it: plain values, ISO-free ms times."""
        return {
            "customerId": self.customer_id,
            "userId": self.user_id,
            "traits": {k: v.value for k, v in sorted(self.traits.items())},
            "addresses": {
                "email": self.emails,
                "phone": self.phones,
                "push": self.push_tokens,
            },
            "devices": [_device_json(d) for _, d in sorted(self.devices.items())],
            "timezone": self.timezone.value if self.timezone else None,
            "locale": self.locale.value if self.locale else None,
            "lastLocation": self.location.value if self.location else None,
            "consent": {
                k: {"granted": c.granted, "source": c.source, "at": c.ts}
                for k, c in sorted(self.consent.items())
            },
            "firstSeen": self.first_seen,
            "lastSeen": self.last_seen,
            "counts": dict(sorted(self.counts.items())),
            "mergedFrom": sorted(self.merged_from),
        }


def _device_json(device: Device) -> dict[str, Any]:
    shown: dict[str, Any] = msgspec.to_builtins(device)
    shown.pop("stamps", None)
    return shown


_PHONE_JUNK = re.compile(r"[\s().\-]")


def normal_email(value: object) -> str | None:
    """An email as an identity: trimmed and lower-cased, or None if it is not one."""
    if not isinstance(value, str):
        return None
    email = value.strip().lower()
    if "@" not in email or len(email) > 320 or email.startswith("@") or email.endswith("@"):
        return None
    return email


def normal_phone(value: object) -> str | None:
    """A phone number as an identity: digits with an optional leading +."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        return None
    phone = _PHONE_JUNK.sub("", value.strip())
    digits = phone[1:] if phone.startswith("+") else phone
    if not digits.isdigit() or not 5 <= len(digits) <= 20:
        return None
    return phone


def event_traits(event: Event) -> dict[str, Any]:
    """Traits an event asserts of the user: context.traits under the message's own traits.

    A group call's own traits describe the group (a company's name, its billing
    email), not the user, so only its context.traits count.
    """
    own = {} if event.type == "group" else event.traits
    context_traits = event.context.get("traits")
    if isinstance(context_traits, dict) and context_traits:
        return {**context_traits, **own}
    return own


def new_profile(customer_id: str, event: Event) -> Profile:
    return Profile(customer_id=customer_id, created=(event.timestamp_ms, event.message_id))


def _newer(old: Stamped | None, new: Stamped) -> Stamped:
    return new if old is None or new.stamp > old.stamp else old


def _newer_value(old: Stamped | None, value: Any, ts: int, mid: str) -> Stamped:
    """``_newer(old, Stamped(value, ts, mid))``, building the Stamped only when it wins."""
    if old is None or (ts, mid) > (old.ts, old.mid):
        return Stamped(value, ts, mid)
    return old


def _add_unique(items: list[str], value: str | None) -> list[str]:
    if value is None or value in items:
        return items
    return sorted([*items, value])


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _device(old: Device | None, info: dict[str, Any], ts: int, mid: str) -> Device:
    """The device record after a sighting: ``merge_devices(old, <the sighting>)``.

    On the path of every event, so the merge with ``old`` is done here field
    by field without building the sighting's own record first.
    """
    os_info = info.get("os")
    values = (
        _str(info.get("type")),
        _str(info.get("manufacturer")),
        _str(info.get("model")),
        _str(os_info.get("name")) if isinstance(os_info, dict) else None,
        _str(info.get("app")),
        _str(info.get("token")),
    )
    stamp = (ts, mid)
    fields: dict[str, Any] = {}
    stamps: dict[str, Stamp] = {}
    if old is not None and values == (
        old.type,
        old.manufacturer,
        old.model,
        old.os,
        old.app,
        old.token,
    ):
        # The common sighting: nothing the device states has changed. Each stated field
        # keeps its value and the newer of the two stamps, as the general merge below.
        old_stamps = old.stamps
        for field, value in zip(_DEVICE_FIELDS, values, strict=True):
            if value is not None:
                current_stamp = old_stamps.get(field) or (old.last_seen, "")
                stamps[field] = stamp if stamp > current_stamp else current_stamp
        return msgspec.structs.replace(
            old,
            first_seen=min(old.first_seen, ts),
            last_seen=max(old.last_seen, ts),
            stamps=stamps,
        )
    if old is None:
        for field, value in zip(_DEVICE_FIELDS, values, strict=True):
            if value is not None:
                fields[field] = value
                stamps[field] = stamp
        return Device(id=str(info.get("id")), **fields, first_seen=ts, last_seen=ts, stamps=stamps)
    held = (old.type, old.manufacturer, old.model, old.os, old.app, old.token)
    old_stamps = old.stamps
    out: list[Any] = []
    for field, value, current in zip(_DEVICE_FIELDS, values, held, strict=True):
        if current is None:
            if value is not None:
                stamps[field] = stamp
            out.append(value)
            continue
        current_stamp = old_stamps.get(field) or (old.last_seen, "")  # as stamp_of
        # As merge_devices: the newest write wins (max of (stamp, value) pairs).
        if value is not None and (stamp, value) > (current_stamp, current):
            stamps[field] = stamp
            out.append(value)
        else:
            stamps[field] = current_stamp
            out.append(current)
    return Device(
        id=old.id,
        type=out[0],
        manufacturer=out[1],
        model=out[2],
        os=out[3],
        app=out[4],
        token=out[5],
        first_seen=min(old.first_seen, ts),
        last_seen=max(old.last_seen, ts),
        stamps=stamps,
    )


def merge_devices(a: Device, b: Device) -> Device:
    """Per field, the value written last wins; first/last seen span both.

    A field a record does not state keeps the other's value, and the stamps
    make the result the same whatever order the sightings are merged in.
    """
    fields: dict[str, Any] = {}
    stamps: dict[str, Stamp] = {}
    for field in _DEVICE_FIELDS:
        stated = [(d.stamp_of(field), v) for d in (a, b) if (v := getattr(d, field)) is not None]
        if stated:
            stamps[field], fields[field] = max(stated)
    return Device(
        id=a.id,
        **fields,
        first_seen=min(a.first_seen, b.first_seen),
        last_seen=max(a.last_seen, b.last_seen),
        stamps=stamps,
    )


def consent_updates(event: Event) -> dict[str, tuple[bool, str]]:
    """Consent an event states: Segment's consent preferences, or (un)subscribe events."""
    updates: dict[str, tuple[bool, str]] = {}
    consent = event.context.get("consent")
    if isinstance(consent, dict):
        prefs = consent.get("categoryPreferences")
        if isinstance(prefs, dict):
            for category, granted in prefs.items():
                if isinstance(granted, bool):
                    updates[str(category)] = (granted, "context.consent")
    if event.type == "track" and event.event in ("Unsubscribed", "Subscribed"):
        channel = event.properties.get("channel")
        purpose = event.properties.get("purpose", "marketing")
        key = f"{channel if isinstance(channel, str) and channel else 'email'}:{purpose}"
        via = event.properties.get("source")  # who recorded it: "api", a consent tool…
        source = f"{via[:64] if isinstance(via, str) and via else 'event'}:{event.event}"
        updates[key] = (event.event == "Subscribed", source)
    return updates


def apply_event(profile: Profile, event: Event) -> Profile:
    """Fold one event into a profile and return the new profile (the input is unchanged)."""
    ts, mid = event.timestamp_ms, event.message_id
    traits = event_traits(event)
    new_traits = profile.traits
    if traits:
        new_traits = dict(profile.traits)
        for key, value in traits.items():
            new_traits[key] = _newer(new_traits.get(key), Stamped(value, ts, mid))

    emails, phones, tokens = profile.emails, profile.phones, profile.push_tokens
    if traits:
        emails = _add_unique(emails, normal_email(traits.get("email")))
        phones = _add_unique(phones, normal_phone(traits.get("phone")))

    devices = profile.devices
    ctx = event.context
    device_info = ctx.get("device")
    if isinstance(device_info, dict):
        tokens = _add_unique(tokens, _str(device_info.get("token")))
        if device_info.get("id") not in (None, ""):
            device_id = str(device_info["id"])
            devices = dict(devices)
            devices[device_id] = _device(devices.get(device_id), device_info, ts, mid)

    timezone, locale, location = profile.timezone, profile.locale, profile.location
    if isinstance(ctx.get("timezone"), str) and ctx["timezone"]:
        timezone = _newer_value(timezone, ctx["timezone"], ts, mid)
    if isinstance(ctx.get("locale"), str) and ctx["locale"]:
        locale = _newer_value(locale, ctx["locale"], ts, mid)
    loc = ctx.get("location")
    if isinstance(loc, dict) and "latitude" in loc and "longitude" in loc:
        location = _newer(location, Stamped(loc, ts, mid))

    consent = profile.consent
    updates = consent_updates(event)
    if updates:
        consent = dict(consent)
        for key, (granted, source) in updates.items():
            old = consent.get(key)
            if old is None or (ts, mid) > (old.ts, old.mid):
                consent[key] = Consent(granted=granted, source=source, ts=ts, mid=mid)

    counts = dict(profile.counts)
    counts[event.type] = counts.get(event.type, 0) + 1

    return msgspec.structs.replace(
        profile,
        user_id=profile.user_id or event.user_id,
        traits=new_traits,
        emails=emails,
        phones=phones,
        push_tokens=tokens,
        devices=devices,
        timezone=timezone,
        locale=locale,
        location=location,
        consent=consent,
        first_seen=min(profile.first_seen, ts) if profile.first_seen else ts,
        last_seen=max(profile.last_seen, ts),
        counts=counts,
    )


class _Sightings:
    """Sightings of one device with the same information, during :func:`apply_events`."""

    __slots__ = ("first", "info", "last", "newest")

    def __init__(self, info: dict[str, Any], ts: int, mid: str) -> None:
        self.info = info
        self.newest: Stamp = (ts, mid)
        self.first = self.last = ts

    def add(self, ts: int, mid: str) -> None:
        if (ts, mid) > self.newest:
            self.newest = (ts, mid)
        if ts < self.first:
            self.first = ts
        elif ts > self.last:
            self.last = ts

    def fold_into(self, devices: dict[str, Device], device_id: str) -> dict[str, Device]:
        """``devices`` (copied) with these sightings folded into the device's record."""
        old = devices.get(device_id)
        folded = _device(old, self.info, *self.newest)
        first = self.first if old is None else min(old.first_seen, self.first)
        last = self.last if old is None else max(old.last_seen, self.last)
        if folded.first_seen != first or folded.last_seen != last:
            folded = msgspec.structs.replace(folded, first_seen=first, last_seen=last)
        devices = dict(devices)
        devices[device_id] = folded
        return devices


_SUBSCRIPTION_EVENTS = frozenset({"Unsubscribed", "Subscribed"})  # see consent_updates


def apply_events(profile: Profile, events: Sequence[Event]) -> Profile:
    """``apply_event`` for each event in turn, with the same result, in one pass.

    The writer folds a batch's run of events for one returning customer here: the
    profile's dicts are copied once for the run rather than once per event, and
    one profile is built at the end instead of one per event. On the path of every
    event, so the helpers ``apply_event`` calls are written out in the loop.
    """
    if len(events) == 1:
        return apply_event(profile, events[0])
    user_id = profile.user_id
    traits = profile.traits
    emails, phones, tokens = profile.emails, profile.phones, profile.push_tokens
    devices = profile.devices
    location = profile.location
    consent = profile.consent
    counts = dict(profile.counts)
    first_seen, last_seen = profile.first_seen, profile.last_seen
    own_traits = own_consent = False  # copied for this run yet?
    # The newest time zone and locale of the run, as (stamp, value): one Stamped is
    # built at the end for each, as _newer_value one event at a time would leave it.
    zone_at = None if profile.timezone is None else profile.timezone.stamp
    tongue_at = None if profile.locale is None else profile.locale.stamp
    zone_value = tongue_value = None
    # Sightings of each device, folded as one: for the same device information the
    # fields are a newest-write-wins join, so N sightings give what one sighting
    # stamped with the newest of their stamps gives, seen from the first to the last.
    sightings: dict[str, _Sightings] = {}
    for event in events:
        ts, mid = event.timestamp_ms, event.message_id
        stamp = (ts, mid)
        ctx = event.context
        # event_traits(event), written out
        own = {} if event.type == "group" else event.traits
        context_traits = ctx.get("traits")
        if isinstance(context_traits, dict) and context_traits:
            stated = {**context_traits, **own}
        else:
            stated = own
        if stated:
            if not own_traits:
                traits, own_traits = dict(traits), True
            for key, value in stated.items():
                traits[key] = _newer(traits.get(key), Stamped(value, ts, mid))
            emails = _add_unique(emails, normal_email(stated.get("email")))
            phones = _add_unique(phones, normal_phone(stated.get("phone")))
        device_info = ctx.get("device")
        if isinstance(device_info, dict):
            if device_info.get("id") in (None, ""):
                tokens = _add_unique(tokens, _str(device_info.get("token")))
            else:
                device_id = str(device_info["id"])
                seen = sightings.get(device_id)
                if seen is not None and seen.info == device_info:
                    # Its token (if any) is in ``tokens`` already. seen.add, written out:
                    if stamp > seen.newest:
                        seen.newest = stamp
                    if ts < seen.first:
                        seen.first = ts
                    elif ts > seen.last:
                        seen.last = ts
                else:
                    tokens = _add_unique(tokens, _str(device_info.get("token")))
                    if seen is not None:
                        devices = seen.fold_into(devices, device_id)
                    sightings[device_id] = _Sightings(device_info, ts, mid)
        zone = ctx.get("timezone")
        if isinstance(zone, str) and zone and (zone_at is None or stamp > zone_at):
            zone_at, zone_value = stamp, zone
        tongue = ctx.get("locale")
        if isinstance(tongue, str) and tongue and (tongue_at is None or stamp > tongue_at):
            tongue_at, tongue_value = stamp, tongue
        loc = ctx.get("location")
        if isinstance(loc, dict) and "latitude" in loc and "longitude" in loc:
            location = _newer(location, Stamped(loc, ts, mid))
        if "consent" in ctx or (event.type == "track" and event.event in _SUBSCRIPTION_EVENTS):
            updates = consent_updates(event)
            if updates:
                if not own_consent:
                    consent, own_consent = dict(consent), True
                for key, (granted, source) in updates.items():
                    old = consent.get(key)
                    if old is None or stamp > (old.ts, old.mid):
                        consent[key] = Consent(granted=granted, source=source, ts=ts, mid=mid)
        counts[event.type] = counts.get(event.type, 0) + 1
        user_id = user_id or event.user_id
        if not first_seen or ts < first_seen:
            first_seen = ts
        if ts > last_seen:
            last_seen = ts
    for device_id, seen in sightings.items():
        devices = seen.fold_into(devices, device_id)
    timezone, locale = profile.timezone, profile.locale
    if zone_value is not None and zone_at is not None:
        timezone = Stamped(zone_value, *zone_at)
    if tongue_value is not None and tongue_at is not None:
        locale = Stamped(tongue_value, *tongue_at)
    return msgspec.structs.replace(
        profile,
        user_id=user_id,
        traits=traits,
        emails=emails,
        phones=phones,
        push_tokens=tokens,
        devices=devices,
        timezone=timezone,
        locale=locale,
        location=location,
        consent=consent,
        first_seen=first_seen,
        last_seen=last_seen,
        counts=counts,
    )


def _newer_opt(a: Stamped | None, b: Stamped | None) -> Stamped | None:
    if a is None:
        return b
    if b is None:
        return a
    return _newer(a, b)


def merge_profiles(winner: Profile, loser: Profile) -> Profile:
    """One profile from two that turned out to be the same customer.

    The result keeps ``winner``'s id; everything else is symmetric.
    """
    if winner.user_id and loser.user_id and winner.user_id != loser.user_id:
        raise ValueError("two customers with different userIds are never merged")
    traits = dict(winner.traits)
    for key, value in loser.traits.items():
        traits[key] = _newer(traits.get(key), value) if key in traits else value
    devices = dict(winner.devices)
    for device_id, device in loser.devices.items():
        devices[device_id] = (
            merge_devices(devices[device_id], device) if device_id in devices else device
        )
    consent = dict(winner.consent)
    for key, state in loser.consent.items():
        old = consent.get(key)
        if old is None or (state.ts, state.mid) > (old.ts, old.mid):
            consent[key] = state
    counts = dict(winner.counts)
    for key, n in loser.counts.items():
        counts[key] = counts.get(key, 0) + n
    firsts = [p.first_seen for p in (winner, loser) if p.first_seen]
    return Profile(
        customer_id=winner.customer_id,
        created=min(winner.created, loser.created),
        user_id=winner.user_id or loser.user_id,
        traits=traits,
        emails=sorted(set(winner.emails) | set(loser.emails)),
        phones=sorted(set(winner.phones) | set(loser.phones)),
        push_tokens=sorted(set(winner.push_tokens) | set(loser.push_tokens)),
        devices=devices,
        timezone=_newer_opt(winner.timezone, loser.timezone),
        locale=_newer_opt(winner.locale, loser.locale),
        location=_newer_opt(winner.location, loser.location),
        consent=consent,
        first_seen=min(firsts) if firsts else 0,
        last_seen=max(winner.last_seen, loser.last_seen),
        counts=counts,
        merged_from=sorted({*winner.merged_from, *loser.merged_from, loser.customer_id}),
    )
