"""What an event means to the models: exposure, engagement, opt-out, conversion or activity.

One table, read once per event, so every model agrees on the vocabulary.
Names follow Segment's semantic events (the Email and Mobile specs) where
they exist; a generic ``Message Delivered`` / ``Message Opened`` /
``Message Clicked`` carries its channel in ``properties.channel``.

>>> from momently.events import Event, from_ms
>>> event = Event(message_id="m1", type="track", timestamp=from_ms(0), received_at=from_ms(0),
...               event="Push Notification Tapped", context={"device": {"id": "d1"}})
>>> signal = read_signal(event, "Order Completed")
>>> signal.kind, signal.channel, signal.device
('engagement', 'push', 'd1')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from momently.events import Event

CHANNELS: Final = ("push", "email", "sms", "in_app", "web_push")
"""The channels the affinity model scores, in a fixed order."""

SignalKind = Literal["exposure", "engagement", "optout", "conversion", "action", "system"]

_CHANNEL_ALIASES: Final = {
    "push": "push",
    "mobile_push": "push",
    "email": "email",
    "mail": "email",
    "sms": "sms",
    "text": "sms",
    "in_app": "in_app",
    "in-app": "in_app",
    "inapp": "in_app",
    "web_push": "web_push",
    "web-push": "web_push",
    "webpush": "web_push",
}
_EXPOSURES: Final[dict[str, str | None]] = {
    "Email Delivered": "email",
    "Push Notification Received": "push",
    "Push Notification Delivered": "push",
    "SMS Delivered": "sms",
    "In-App Message Shown": "in_app",
    "In-App Message Viewed": "in_app",
    "In App Message Viewed": "in_app",
    "Web Push Delivered": "web_push",
    "Web Push Received": "web_push",
    "Message Delivered": None,  # channel from properties.kind or properties.channel
    "Message Sent": None,  # momently's own outbox: a provider accepted the message
}
_ENGAGEMENTS: Final[dict[str, str | None]] = {
    "Email Opened": "email",
    "Email Link Clicked": "email",
    "Push Notification Tapped": "push",
    "Push Notification Opened": "push",
    "SMS Link Clicked": "sms",
    "SMS Replied": "sms",
    "In-App Message Clicked": "in_app",
    "In-App Message Tapped": "in_app",
    "In App Message Clicked": "in_app",
    "Web Push Clicked": "web_push",
    "Message Opened": None,
    "Message Clicked": None,
    "Application Opened": None,  # an app session: engagement with no channel of its own
}
_OPT_OUTS: Final[dict[str, str | None]] = {
    "Unsubscribed": None,
    "Email Unsubscribed": "email",
    "Email Marked as Spam": "email",
    "SMS Unsubscribed": "sms",
    "SMS Opted Out": "sms",
    "Push Notifications Disabled": "push",
    "Push Opted Out": "push",
    "Opted Out": None,
}
# Written by servers and providers, not by the customer: neither action nor touchpoint.
_SYSTEM: Final = frozenset(
    {
        "Email Sent",
        "Email Bounced",
        "Push Notification Sent",
        "Push Notification Bounced",
        "SMS Sent",
        "SMS Bounced",
        "Message Failed",
        "Message Bounced",
        "Location Updated",
        "Beacon Sighted",
        "Application Backgrounded",
        "Application Installed",
        "Application Updated",
    }
)
ACTIVITIES: Final = ("view", "search", "add", "checkout", "session")
"""The kinds of shopping activity propensity counts, in feature order."""
_ACTIVITY: Final = {
    "Product Viewed": "view",
    "Product List Viewed": "view",
    "Product Clicked": "view",
    "Promotion Clicked": "view",
    "Products Searched": "search",
    "Product List Filtered": "search",
    "Product Added": "add",
    "Product Added to Wishlist": "add",
    "Cart Viewed": "add",
    "Checkout Started": "checkout",
    "Checkout Step Completed": "checkout",
    "Payment Info Entered": "checkout",
    "Coupon Applied": "checkout",
}
MAX_TOKEN: Final = 64  # longer names and categories are cut: clients send anything


@dataclass(slots=True)
class Signal:
    """An event as the models read it (read-only by convention: not frozen, as that
    makes it three times slower to build, once per event)."""

    kind: SignalKind
    channel: str | None = None  # for exposures, engagements and opt-outs
    activity: str | None = None  # one of ACTIVITIES but "session", for actions
    touchpoint: str | None = None  # the token next-need learns; None for system events
    category: str | None = None  # the product category the event is about
    device: str | None = None  # a key for the device the customer acted on
    device_type: str | None = None


def channel_of(value: object) -> str | None:
    """A channel name in the canonical spelling, or None."""
    if not isinstance(value, str):
        return None
    return _CHANNEL_ALIASES.get(value.strip().lower())


def _device(event: Event) -> tuple[str | None, str | None]:
    device = event.context.get("device")
    if isinstance(device, dict):
        kind = device.get("type")
        kind = kind[:MAX_TOKEN] if isinstance(kind, str) and kind else None
        ident = device.get("id")
        if isinstance(ident, str) and ident:
            return ident[:MAX_TOKEN], kind
        if kind is not None:
            return kind, kind
    if event.type == "page" or "userAgent" in event.context:
        return "web", "web"
    return None, None


def _category(event: Event) -> str | None:
    value = event.properties.get("category")
    if isinstance(value, str) and value.strip():
        return value.strip()[:MAX_TOKEN]
    return None


def read_signal(event: Event, conversion_event: str) -> Signal:
    """Classify one event; anything not in the tables is a customer action."""
    if event.type == "track":
        name = event.event or ""
    elif event.type in ("page", "screen"):
        name = "Page Viewed" if event.type == "page" else "Screen Viewed"
    else:
        return Signal("system")
    if name in _SYSTEM:
        return Signal("system")
    if name in _EXPOSURES:
        channel = (
            _EXPOSURES[name]
            or channel_of(event.properties.get("kind"))
            or channel_of(event.properties.get("channel"))
        )
        return Signal("exposure", channel=channel) if channel else Signal("system")
    device, device_type = _device(event)
    token = name[:MAX_TOKEN]
    if name in _OPT_OUTS:
        channel = _OPT_OUTS[name] or channel_of(event.properties.get("channel"))
        return Signal("optout", channel=channel, touchpoint=token)
    if name in _ENGAGEMENTS:
        channel = _ENGAGEMENTS[name] or channel_of(event.properties.get("channel"))
        return Signal(
            "engagement",
            channel=channel,
            activity="session" if name == "Application Opened" else None,
            touchpoint=token,
            device=device,
            device_type=device_type,
        )
    return Signal(
        "conversion" if name == conversion_event else "action",
        activity=_ACTIVITY.get(name, "view" if event.type != "track" else None),
        touchpoint=token,
        category=_category(event),
        device=device,
        device_type=device_type,
    )
