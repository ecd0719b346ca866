"""Segment messages, built from planned items when the world emits them.

Each is a plain dict in Segment's wire shape (what an SDK would POST):
``type``, ``messageId``, ``userId``/``anonymousId``, an ISO ``timestamp``,
``context`` with the device, OS, app, library, locale and time zone, and
``properties`` or ``traits``. A web device is anonymous until its first
login (an ``identify`` joining the two ids). Treat the dicts as read-only.
"""

from __future__ import annotations

import random
from typing import Any, Final

from momently.simulate.catalog import (
    BROKEN_POSTS,
    BROKEN_SUPPORT,
    HAPPY_POSTS,
    SMILE_POSTS,
    Catalog,
    Product,
)
from momently.simulate.population import Customer, Device
from momently.simulate.simtime import iso
from momently.simulate.state import State
from momently.simulate.types import Message

(
    OPEN,
    BACKGROUND,
    SCREEN,
    PAGE,
    SEARCH,
    PRODUCT,
    ORDER,
    PING,
    BEACON,
    SOCIAL,
    SUPPORT,
    IDENTIFY,
    TRACK,
    INJECTED,
) = range(14)
"""Item codes: what a planned item becomes."""

_APP: Final = {"name": "Momently Shop", "version": "5.2.0", "build": "520"}
_SERVER: Final = {"library": {"name": "analytics-python", "version": "2.3.2"}}
_TRACK_PROPS: Final = {
    "Video Playback Started": {"category": "guide", "content_type": "video"},
    "Payment Failed": {"reason": "card_declined"},
    "Application Crashed": {"screen": "Product"},
}
_AGENT: Final = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 Safari/605.1"
SITE: Final = "https://shop.example.com"


_OS: dict[str, dict[str, str]] = {}
_LIBRARIES: Final = {
    "ios": {"name": "analytics-ios", "version": "4.1.8"},
    "android": {"name": "analytics-android", "version": "4.11.3"},
    "web": {"name": "analytics.js", "version": "4.15.3"},
}


def context(c: Customer, d: Device) -> dict[str, Any]:
    """The ``context`` an SDK on device ``d`` attaches (its inner parts shared: read-only)."""
    os = _OS.get(d.os)
    if os is None or os["version"] != d.os_version:
        os = _OS[d.os] = {"name": d.os, "version": d.os_version}
    if d.app:
        kind = "ios" if d.os == "iOS" else "android"
        device: dict[str, Any] = {
            "id": d.id,
            "type": kind,
            "model": d.model,
            "manufacturer": d.manufacturer,
        }
        if d.push_token is not None:
            device["token"] = d.push_token
        return {
            "device": device,
            "os": os,
            "timezone": c.timezone,
            "locale": "en-GB",
            "app": _APP,
            "library": _LIBRARIES[kind],
        }
    return {
        "device": {"id": d.id, "model": d.model, "manufacturer": d.manufacturer},
        "os": os,
        "timezone": c.timezone,
        "locale": "en-GB",
        "userAgent": _AGENT,
        "library": _LIBRARIES["web"],
    }


def _base(kind: str, c: Customer, st: State, k: int, ts: int, mid: str) -> Message:
    d = c.devices[k]
    msg: Message = {
        "type": kind,
        "messageId": mid,
        "anonymousId": d.anonymous_id,
        "timestamp": iso(ts),
        "context": context(c, d),
    }
    if d.app or st.identified >> k & 1:
        msg["userId"] = c.user_id
    return msg


def track(
    name: str, props: dict[str, Any], c: Customer, st: State, k: int, ts: int, mid: str
) -> Message:
    """A track call from device ``k``; it carries the user id once the device is logged in."""
    d = c.devices[k]
    msg: Message = {
        "type": "track",
        "event": name,
        "messageId": mid,
        "anonymousId": d.anonymous_id,
        "timestamp": iso(ts),
        "properties": props,
        "context": context(c, d),
    }
    if d.app or st.identified >> k & 1:
        msg["userId"] = c.user_id
    return msg


def server(name: str, props: dict[str, Any], c: Customer, ts: int, mid: str) -> Message:
    """A track call sent by a back end (social listening, support desk, email service)."""
    return {
        "type": "track",
        "messageId": mid,
        "userId": c.user_id,
        "event": name,
        "timestamp": iso(ts),
        "properties": props,
        "context": dict(_SERVER),
    }


def product_props(p: Product, quantity: int = 1) -> dict[str, Any]:
    return {
        "product_id": p.id,
        "name": p.name,
        "category": p.category,
        "price": p.price,
        "quantity": quantity,
        "currency": "GBP",
    }


def order(
    c: Customer,
    st: State,
    k: int,
    ts: int,
    mid: str,
    p: Product,
    fulfilment: str,
    store: str | None,
    decision_id: str | None = None,
) -> Message:
    """``Order Completed`` for one product."""
    props: dict[str, Any] = {
        "order_id": "o-" + mid,
        "total": p.price,
        "revenue": p.price,
        "currency": "GBP",
        "category": p.category,
        "fulfilment": fulfilment,
        "products": [product_props(p)],
    }
    if store is not None:
        props["store_id"] = store
    if decision_id is not None:
        props["decision_id"] = decision_id
    return track("Order Completed", props, c, st, k, ts, mid)


def build(
    code: int, payload: Any, c: Customer, st: State, ts: int, mid: str, catalog: Catalog
) -> Message:
    """The message a planned item becomes."""
    if code == PING:
        lat, lon, accuracy = payload
        msg = track("Location Updated", {}, c, st, 0, ts, mid)
        msg["context"]["location"] = {"latitude": lat, "longitude": lon, "accuracy": accuracy}
        return msg
    if code == SEARCH:
        return track("Products Searched", {"query": payload[1]}, c, st, payload[0], ts, mid)
    if code == PRODUCT:
        k, name, product = payload
        props = product_props(catalog.products[product])
        if name == "Checkout Started":
            props = {
                "order_id": "o-" + mid,
                "value": props["price"],
                "revenue": props["price"],
                "currency": "GBP",
                "products": [props],
            }
        return track(name, props, c, st, k, ts, mid)
    if code == SCREEN or code == PAGE:
        k, name = payload
        msg = _base("screen" if code == SCREEN else "page", c, st, k, ts, mid)
        msg["name"] = name
        if code == PAGE:
            path = "/" + name.lower().replace(" ", "-")
            page = {"path": path, "url": SITE + path, "title": name}
            msg["properties"] = page
            msg["context"]["page"] = dict(page)
        return msg
    if code == OPEN or code == BACKGROUND:
        name = "Application Opened" if code == OPEN else "Application Backgrounded"
        props = {"from_background": False} if code == OPEN else {}
        return track(name, props, c, st, payload, ts, mid)
    if code == ORDER:
        k, product, fulfilment, store = payload
        return order(c, st, k, ts, mid, catalog.products[product], fulfilment, store)
    if code == BEACON:
        props = {"uuid": "", "major": 0, "minor": 1, "rssi": payload}
        store = catalog.place.get("store-12")
        if store is not None and store.beacon is not None:
            props["uuid"], props["major"] = store.beacon
        props["proximity"] = "near" if payload > -75 else "far"
        return track("Beacon Sighted", props, c, st, 0, ts, mid)
    if code == IDENTIFY:
        msg = _base("identify", c, st, payload, ts, mid)
        msg["userId"] = c.user_id
        msg["traits"] = traits(c)
        return msg
    if code == SOCIAL:
        platform = "instagram" if len(payload) % 2 else "x"
        return server(
            "Social Post",
            {"text": payload, "platform": platform, "url": f"https://{platform}.example/p/{mid}"},
            c,
            ts,
            mid,
        )
    if code == SUPPORT:
        return server("Support Message", {"text": payload, "channel": "chat"}, c, ts, mid)
    if code == TRACK:
        k, name = payload
        return track(name, dict(_TRACK_PROPS.get(name, {})), c, st, k, ts, mid)
    raise ValueError(f"unknown item code {code}")


_NAMES: Final = {
    OPEN: "Application Opened",
    BACKGROUND: "Application Backgrounded",
    SCREEN: "screen",
    PAGE: "page",
    SEARCH: "Products Searched",
    ORDER: "Order Completed",
    PING: "Location Updated",
    BEACON: "Beacon Sighted",
    SOCIAL: "Social Post",
    SUPPORT: "Support Message",
    IDENTIFY: "identify",
}


def name_of(code: int, payload: Any) -> str:
    """The event name a planned (not injected) item will carry, without building it:
    ``identify``, ``page`` and ``screen`` for those calls."""
    if code == PRODUCT or code == TRACK:
        return str(payload[1])
    return _NAMES[code]


def traits(c: Customer) -> dict[str, Any]:
    """What a customer tells the brand about themselves when they log in."""
    out: dict[str, Any] = {
        "first_name": c.first_name,
        "household_size": c.household_size,
        "occupation": c.persona.occupation,
        "loyalty_tier": c.loyalty_tier,
    }
    if c.email is not None:
        out["email"] = c.email
    if c.phone is not None:
        out["phone"] = c.phone
    return out


def broken_post(r: random.Random, thing: str) -> str:
    return BROKEN_POSTS[int(r.random() * len(BROKEN_POSTS))].format(thing=thing)


def broken_support(r: random.Random, thing: str) -> str:
    return BROKEN_SUPPORT[int(r.random() * len(BROKEN_SUPPORT))].format(thing=thing)


def after_order_post(r: random.Random, category: str) -> str:
    if category == "orthodontics":
        return SMILE_POSTS[int(r.random() * len(SMILE_POSTS))]
    return HAPPY_POSTS[int(r.random() * len(HAPPY_POSTS))].format(thing=category)
