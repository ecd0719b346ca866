"""How a simulated customer answers a message, from the hidden truth alone.

The message is noticed after a delay typical of its channel. If the week's
messages (this one included) exceed the customer's hidden tolerance, they
may opt out of that channel instead of reading it (P = 0.03 per message past
it, at most 0.3). Otherwise they open it with P = receptivity(local hour of week) x
P(open | channel), click with a chance that is high only when the offer's
category matches a need they have right then, and buy only if it does.

>>> from momently.simulate.population import Population
>>> people = Population(1, seed=3)
>>> send = Send("sim3-0", "email", "daily-deals", "toasters", 1_772_445_600_000, "d-1")
>>> a = respond(people[0], State(), send, seed=3, catalog=people.catalog)
>>> a == respond(people[0], State(), send, seed=3, catalog=people.catalog)
True
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Final

from momently.simulate import messages as m
from momently.simulate.catalog import Catalog
from momently.simulate.personas import CHANNELS
from momently.simulate.population import Customer
from momently.simulate.simtime import MINUTE, SECOND, hour_of_week, rng
from momently.simulate.state import Need, State
from momently.simulate.types import Message

ANY: Final = "*"
"""A category that matches whatever the customer needs (a voucher), at half the pull."""
OPENED: Final = {
    "email": "Email Opened",
    "push": "Push Notification Tapped",
    "in_app": "In-App Message Viewed",
}
CLICKED: Final = {
    "email": "Email Link Clicked",
    "push": "Deep Link Opened",
    "in_app": "In-App Message Clicked",
    "sms": "SMS Link Clicked",
}
_NOTICE: Final = {"push": 4.0, "sms": 3.0, "in_app": 45.0, "email": 150.0}  # mean minutes
_SALT: Final = 0x5E4D


@dataclass(frozen=True, slots=True)
class Send:
    """A message a policy wants delivered to a customer (by the simulator's user id)."""

    customer: str
    channel: str
    offer_id: str
    category: str
    send_at: int
    decision_id: str | None = None


@dataclass(frozen=True, slots=True)
class Response:
    """What the customer did with one message, and the events that tell of it.

    ``events`` are ``(ms, message, effect)`` with effect ``"order"`` or
    ``"unsubscribe"`` where the world must apply one; an order is only
    counted if its need is still live when it happens.
    """

    decision_id: str
    delivered: bool
    reason: str
    pressure: int = 0
    opened: bool = False
    clicked: bool = False
    bought: bool = False
    opted_out: bool = False
    need: Need | None = None
    events: tuple[tuple[int, Message, str], ...] = ()


def _key(decision_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(decision_id.encode(), digest_size=5).digest(), "big")


def _device(c: Customer, channel: str) -> int:
    """The device a customer acts on after a message on ``channel``."""
    for k, d in enumerate(c.devices):
        if channel == "push" and d.push_token is not None:
            return k
        if channel == "in_app" and d.app:
            return k
    return len(c.devices) - 1 if channel in ("email", "sms") else 0


def matching_need(st: State, category: str, ms: int) -> Need | None:
    """The newest need live at ``ms`` that an offer in ``category`` speaks to."""
    for need in reversed(st.needs):
        if need.live(ms) and (category == ANY or need.spec.category == category):
            return need
    return None


def respond(
    c: Customer,
    st: State,
    send: Send,
    *,
    seed: int,
    catalog: Catalog,
    decision_id: str | None = None,
) -> Response:
    """The customer's answer to ``send``; reads ``st`` and changes nothing."""
    decision = decision_id or send.decision_id or f"{c.user_id}-msg{st.messages}"
    channel = send.channel
    if channel not in CHANNELS:
        return Response(decision, False, "unknown channel")
    if not c.reachable(channel):
        return Response(decision, False, "no address")
    if channel in st.opted_out:
        return Response(decision, False, "unsubscribed")
    at = send.send_at
    r = rng(seed, c.index, _SALT, _key(decision))
    pressure = sum(1 for t in st.received if at - 7 * 24 * 60 * MINUTE < t <= at) + 1
    seen = at + int(r.expovariate(1.0) * _NOTICE[channel] * MINUTE) + SECOND
    tags: dict[str, Any] = {
        "decision_id": decision,
        "offer_id": send.offer_id,
        "channel": channel,
        "category": send.category,
    }
    k = _device(c, channel)
    base = f"{decision}-"
    events: list[tuple[int, Message, str]] = []
    excess = pressure - c.tolerance
    if excess > 0 and r.random() < min(0.3, 0.03 * excess):
        props = {**tags, "reason": "too many messages"}
        events.append(
            (seen, m.server("Unsubscribed", props, c, seen, base + "unsub"), "unsubscribe")
        )
        return Response(decision, True, "delivered", pressure, opted_out=True, events=tuple(events))
    p_open = c.receptivity(hour_of_week(c.timezone, seen)) * c.preference(channel)
    if r.random() >= p_open:
        return Response(decision, True, "delivered", pressure)
    opened_name = OPENED.get(channel)
    if opened_name is not None:
        events.append((seen, _tell(opened_name, tags, c, st, k, seen, base + "open"), ""))
    need = matching_need(st, send.category, seen)
    if r.random() >= (0.6 if need is not None else 0.03):
        return Response(decision, True, "delivered", pressure, opened=True, events=tuple(events))
    click = seen + int((5 + 40 * r.random()) * SECOND)
    events.append((click, _tell(CLICKED[channel], tags, c, st, k, click, base + "click"), ""))
    pull = need.spec.responsive * (0.5 if send.category == ANY else 1.0) if need else 0.0
    if need is None or r.random() >= pull:
        return Response(
            decision,
            True,
            "delivered",
            pressure,
            opened=True,
            clicked=True,
            need=need,
            events=tuple(events),
        )
    product = catalog.products[need.product]
    if need.spec.in_store:
        when = click + int((3 + 7 * r.random()) * MINUTE)
        msg = m.order(c, st, 0, when, base + "order", product, "in-store", "store-12", decision)
    else:
        when = click + int((2 + 23 * r.random()) * MINUTE)
        msg = m.order(c, st, k, when, base + "order", product, "delivery", None, decision)
    events.append((when, msg, "order"))
    return Response(
        decision,
        True,
        "delivered",
        pressure,
        opened=True,
        clicked=True,
        bought=True,
        need=need,
        events=tuple(events),
    )


def _tell(
    name: str, tags: dict[str, Any], c: Customer, st: State, k: int, ts: int, mid: str
) -> Message:
    """An engagement event: from the app for push and in-app, from the sender otherwise."""
    if name in (
        "Push Notification Tapped",
        "Deep Link Opened",
        "In-App Message Viewed",
        "In-App Message Clicked",
    ):
        return m.track(name, dict(tags), c, st, k, ts, mid)
    return m.server(name, dict(tags), c, ts, mid)
