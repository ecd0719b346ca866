"""Identity resolution: which canonical customer an event belongs to.

The rules (the README repeats them for users):

1. An event names up to five kinds of identifier, in priority order:
   ``user_id``, ``email``, ``phone`` (from traits or ``context.traits``),
   ``device_id`` (``context.device.id``) and ``anonymous_id``. An ``alias``
   names its ``userId`` and its ``previousId``.
2. Identifiers that appear together belong to one customer: customers found
   through them are merged into the one found through the highest-priority
   identifier.
3. A customer has at most one userId. Two customers with different userIds are
   never merged, whatever else they share. An identifier that would merge them
   is a *conflict*: a strong one (email, phone) stays with its owner; a weak
   one (device id, anonymousId: a shared tablet, an app that never called
   ``reset()``) moves to the customer the event belongs to, so the device's
   next anonymous events go to whoever used it last.
4. A new customer's id is derived from the event that created it, so a replay
   of the log rebuilds the same ids.

>>> owners = {("anonymous_id", "a1"): "c_anon"}
>>> r = resolve([("user_id", "u1"), ("anonymous_id", "a1")], owners.get, {}.get)
>>> (r.customer_id, r.bind)
('c_anon', (('user_id', 'u1'),))
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from momently.events import Event
from momently.state.profile import event_traits, normal_email, normal_phone

IdentityKey = tuple[str, str]
KINDS: Final = ("user_id", "email", "phone", "device_id", "anonymous_id")
WEAK_KINDS: Final = frozenset({"device_id", "anonymous_id"})


@dataclass(frozen=True, slots=True)
class Resolution:
    """Where an event goes: ``customer_id`` (None: a new customer), what merges into it,
    which identifiers to point at it, and which were held back by a conflict."""

    customer_id: str | None
    merge: tuple[str, ...] = ()
    bind: tuple[IdentityKey, ...] = ()
    conflicts: tuple[IdentityKey, ...] = ()


def identity_keys(event: Event, owner: Callable[[IdentityKey], str | None]) -> list[IdentityKey]:
    """The identifiers an event names, highest priority first, without repeats."""
    keys: list[IdentityKey] = []
    if event.user_id is not None:
        keys.append(("user_id", event.user_id))
    if event.type == "alias" and event.previous_id is not None:
        # previousId is an earlier userId or an anonymousId: whichever is known.
        as_user = ("user_id", event.previous_id)
        keys.append(as_user if owner(as_user) else ("anonymous_id", event.previous_id))
    traits = event_traits(event)
    email = normal_email(traits.get("email"))
    if email:
        keys.append(("email", email))
    phone = normal_phone(traits.get("phone"))
    if phone:
        keys.append(("phone", phone))
    device = event.context.get("device")
    if isinstance(device, dict) and device.get("id") not in (None, ""):
        keys.append(("device_id", str(device["id"])))
    if event.anonymous_id is not None:
        keys.append(("anonymous_id", event.anonymous_id))
    seen: set[IdentityKey] = set()
    ordered = []
    for key in keys:
        if key not in seen:
            seen.add(key)
            ordered.append(key)
    return ordered


def resolve(
    keys: Sequence[IdentityKey],
    owner: Callable[[IdentityKey], str | None],
    user_of: Callable[[str], str | None],
) -> Resolution:
    """Apply the merge rules to one event's identifiers (highest priority first).

    ``owner`` tells which customer an identifier belongs to now, ``user_of``
    which userId a customer has.
    """
    claimed = next((value for kind, value in keys if kind == "user_id"), None)
    target: str | None = None
    merge: list[str] = []
    bind: list[IdentityKey] = []
    conflicts: list[IdentityKey] = []
    for key in keys:
        customer = owner(key)
        if customer is None:
            bind.append(key)
            continue
        if customer == target or customer in merge:
            continue
        user = user_of(customer)
        if key[0] == "user_id" and key[1] != claimed and claimed is not None:
            # alias from one known userId to another: never merge two known users
            conflicts.append(key)
            continue
        if claimed is not None and user is not None and user != claimed:
            conflicts.append(key)
            if key[0] in WEAK_KINDS:
                bind.append(key)
            continue
        if target is None:
            target = customer
        else:
            merge.append(customer)
        claimed = claimed or user
    return Resolution(target, tuple(merge), tuple(bind), tuple(conflicts))


def new_customer_id(message_id: str) -> str:
    """The id of a customer first seen in the message ``message_id``; stable across replays."""
    return "c_" + hashlib.blake2b(message_id.encode(), digest_size=10).hexdigest()
