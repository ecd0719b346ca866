"""What a brand would run without momently, and two references.

* :class:`BatchAndBlast` — one email a day at 10:00 local to every subscriber,
  the day's campaign the same for all;
* :class:`EventTriggers` — a message the moment someone searches (in the
  category the search names) or an hour after a basket is left, with no
  timing, no fatigue and no arbitration;
* :class:`NoMessages` — sends nothing: the counterfactual in which the true
  effect of a policy is known;
* :class:`Oracle` — reads the hidden truth and writes once per need on the
  customer's best channel at a receptive hour: roughly the most any policy can earn.

They learn addresses and time zones only from the events, as a real system would.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

from momently.simulate.personas import CHANNELS
from momently.simulate.respond import Send
from momently.simulate.simtime import DAY, HOUR, hour_of_week, local_ms
from momently.simulate.types import Message
from momently.simulate.world import World

CAMPAIGNS: Final = (
    ("kitchen-week", "toasters"),
    ("style-edit", "fashion"),
    ("tech-deals", "electronics"),
    ("glow-up", "beauty"),
    ("getaways", "travel"),
    ("home-refresh", "home-garden"),
    ("weekly-shop", "grocery"),
    ("smile-month", "orthodontics"),
    ("kettle-offers", "kettles"),
)
"""The daily email's campaign and category, in turn."""
_KEYWORDS: Final = tuple(
    (re.compile(p, re.IGNORECASE), c)
    for p, c in (
        (r"toast", "toasters"),
        (r"kettle", "kettles"),
        (r"brace|align|invisalign|orthodont|retainer|teeth|vivera", "orthodontics"),
        (r"donut|doughnut|bakery|croissant|bagel|latte|coffee|cafe|pastr", "bakery"),
        (r"dress|jeans|shoe|jacket|trainer|boot|coat|shirt", "fashion"),
        (r"laptop|phone|headphone|\btv\b|camera|tablet|speaker|earbud", "electronics"),
        (r"lipstick|moisturi|serum|perfume|skin|makeup|mascara|shampoo", "beauty"),
        (r"flight|hotel|holiday|trip|luggage|suitcase", "travel"),
        (r"grocer|milk|bread|vegetable|fruit|pasta", "grocery"),
        (r"garden|sofa|lamp|furniture|plant|mower|rug|curtain", "home-garden"),
    )
)


def classify(query: str) -> str | None:
    """The category a keyword rule reads in a search, as a plain trigger would."""
    for pattern, category in _KEYWORDS:
        if pattern.search(query):
            return category
    return None


def stamp_ms(event: Message) -> int:
    """The event's ``timestamp`` in milliseconds."""
    moment = datetime.fromisoformat(str(event["timestamp"]))
    return int(moment.timestamp() * 1000)


class NoMessages:
    """Sends nothing."""

    name = "no-messages"
    wants: frozenset[str] = frozenset()

    def on_event(self, event: Message) -> Sequence[Send]:
        return ()

    def on_tick(self, now_ms: int) -> Sequence[Send]:
        return ()


class BatchAndBlast:
    """The daily campaign email at ``hour`` local time to everyone subscribed."""

    name = "batch-and-blast"
    wants = frozenset({"identify", "Unsubscribed"})

    def __init__(self, hour: int = 10, campaigns: Sequence[tuple[str, str]] = CAMPAIGNS) -> None:
        self.hour = hour
        self.campaigns = tuple(campaigns)
        self._zones: dict[str, dict[str, None]] = {}  # time zone -> subscribers, in order
        self._zone_of: dict[str, str] = {}
        self._last: int | None = None

    def on_event(self, event: Message) -> Sequence[Send]:
        user = event.get("userId")
        if user is None:
            return ()
        if event["type"] == "identify" and event.get("traits", {}).get("email"):
            if user not in self._zone_of:
                tz = str(event.get("context", {}).get("timezone") or "UTC")
                self._zone_of[user] = tz
                self._zones.setdefault(tz, {})[user] = None
        elif event.get("event") == "Unsubscribed":
            if event.get("properties", {}).get("channel") == "email" and user in self._zone_of:
                del self._zones[self._zone_of.pop(user)][user]
        return ()

    def on_tick(self, now_ms: int) -> Sequence[Send]:
        last, self._last = self._last, now_ms
        if last is None:
            return ()
        sends: list[Send] = []
        for tz, users in self._zones.items():
            local = local_ms(tz, now_ms)
            day = local // DAY
            if local_ms(tz, last) < day * DAY + self.hour * HOUR <= local:
                campaign, category = self.campaigns[day % len(self.campaigns)]
                sends.extend(
                    Send(u, "email", campaign, category, now_ms, f"blast-{day}-{u}") for u in users
                )
        return sends


class EventTriggers:
    """Send at once on a search or an hour after an abandoned basket."""

    name = "event-triggers"
    # A push token comes with the login (identify) on the device that has it.
    wants = frozenset(
        {
            "identify",
            "Products Searched",
            "Product Added",
            "Checkout Started",
            "Order Completed",
            "Unsubscribed",
        }
    )

    def __init__(self, basket_after_ms: int = HOUR) -> None:
        self.basket_after_ms = basket_after_ms
        self._push: set[str] = set()
        self._email: set[str] = set()
        self._out: dict[str, set[str]] = {}
        self._baskets: dict[str, tuple[int, str]] = {}
        self._count: dict[str, int] = {}

    def on_event(self, event: Message) -> Sequence[Send]:
        user = event.get("userId")
        if user is None:
            return ()
        context: dict[str, Any] = event.get("context", {})
        if "token" in context.get("device", ()):
            self._push.add(user)
        name = event.get("event")
        if event["type"] == "identify" and event.get("traits", {}).get("email"):
            self._email.add(user)
        elif name == "Products Searched":
            category = classify(str(event["properties"].get("query", "")))
            if category is not None:
                return self._send(user, "search-" + category, category, stamp_ms(event))
        elif name == "Product Added":
            self._baskets[user] = (stamp_ms(event), str(event["properties"].get("category")))
        elif name in ("Checkout Started", "Order Completed"):
            self._baskets.pop(user, None)
        elif name == "Unsubscribed":
            self._out.setdefault(user, set()).add(str(event["properties"].get("channel")))
        return ()

    def on_tick(self, now_ms: int) -> Sequence[Send]:
        sends: list[Send] = []
        for user, (ms, category) in list(self._baskets.items()):
            if now_ms - ms >= self.basket_after_ms:
                del self._baskets[user]
                sends.extend(self._send(user, "cart-reminder", category, now_ms))
        return sends

    def _send(self, user: str, offer: str, category: str, now_ms: int) -> list[Send]:
        out = self._out.get(user, ())
        if user in self._push and "push" not in out:
            channel = "push"
        elif user in self._email and "email" not in out:
            channel = "email"
        else:
            return []
        k = self._count[user] = self._count.get(user, 0) + 1
        return [Send(user, channel, offer, category, now_ms, f"trigger-{user}-{k}")]


class Oracle:
    """Reads the hidden truth: for each live need, at most one message a day, sent at a
    receptive hour on the customer's best channel, and never past their tolerance."""

    name = "oracle"
    # Its cue to look at a customer's needs: something they do.
    wants = frozenset(
        {"Application Opened", "Products Searched", "page", "Social Post", "Support Message"}
    )

    def __init__(self, world: World) -> None:
        self.world = world
        self._last: dict[tuple[int, str, int], int] = {}  # need -> when last written about

    def on_event(self, event: Message) -> Sequence[Send]:
        user = event.get("userId")
        index = None if user is None else self.world.population.index_of(str(user))
        if index is None:
            return ()
        c, st = self.world.population[index], self.world.states[index]
        now = self.world.now_ms
        sends: list[Send] = []
        for need in st.live_needs(now):
            key = (index, need.spec.name, need.arose_ms)
            if now - self._last.get(key, -DAY) < DAY:
                continue
            if len([t for t in st.received if t > now - 7 * DAY]) + 1 >= c.tolerance:
                break
            usable = [ch for ch in CHANNELS if c.reachable(ch) and ch not in st.opted_out]
            if not usable:
                break
            self._last[key] = now
            channel = max(usable, key=c.preference)
            at, last = now, min(need.deadline_ms - HOUR, now + DAY)
            while at < last and c.receptivity(hour_of_week(c.timezone, at)) < 0.5:
                at += HOUR // 2
            sends.append(
                Send(
                    c.user_id,
                    channel,
                    "oracle-" + need.spec.name,
                    need.spec.category,
                    at,
                    f"oracle-{c.user_id}-{need.arose_ms}-{now // DAY}",
                )
            )
        return sends

    def on_tick(self, now_ms: int) -> Sequence[Send]:
        return ()
