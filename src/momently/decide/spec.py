"""What the playbook says about acting on moments: offers, channels, caps, quiet hours, holdouts.

::

    channels:
      - {name: push, kind: push, cost: 0.001}
      - {name: email, kind: email, cost: 0.002, long_content: true}
    offers:
      - id: family-toaster
        title: Heavy-duty four-slot toaster
        value: 40
        for: {kinds: [buy, know], categories: [kitchen-appliances],
              profile: [{path: traits.household_size, op: ">=", value: 4}]}
        messages:
          push: {title: "A toaster for five", body: "Toasts four at once."}
          email: {subject: "...", body: "..."}
        ttl: 6h
        caps: [{max: 1, per: week}]
        holdout: 0.1
    caps:                      # across all offers
      - {max: 3, per: day}
      - {max: 1, per: day, channel: email}
    quiet_hours: {start: "21:00", end: "08:00"}
    min_gap: 2h
    holdout: 0.05              # the global control group
"""

from __future__ import annotations

import functools
import re
from typing import Any, Final, Literal

from pydantic import Field, field_validator, model_validator

from momently.moments.conditions import Predicate
from momently.moments.model import MomentKind
from momently.moments.spec import Duration, SpecModel

ChannelKind = Literal["email", "push", "sms", "in_app", "web_push", "webhook"]
Purpose = Literal["marketing", "transactional"]
CHANNEL_KINDS: Final[tuple[ChannelKind, ...]] = (
    "email",
    "push",
    "sms",
    "in_app",
    "web_push",
    "webhook",
)
_CLOCK: Final = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


class ChannelSpec(SpecModel):
    """A way to reach a customer, its cost per message, and what to try when it cannot."""

    name: str = Field(min_length=1, max_length=64)
    kind: ChannelKind
    cost: float = Field(0.0, ge=0, description="cost of one message, in value units")
    long_content: bool = Field(False, description="suits long content (email)")
    opt_in: bool = Field(
        False,
        description="marketing needs an explicit opt-in (consent `<channel>:marketing` granted); "
        "otherwise a known address is enough unless the customer opted out",
    )
    fallback: str | None = Field(None, description="channel tried when this one is unreachable")


class CapSpec(SpecModel):
    """At most ``max`` messages per ``per`` — a local calendar day or week, or a rolling span."""

    max: int = Field(ge=1, description="at least 1; leave a channel out to never use it")
    per: Literal["day", "week"] | Duration = Field(
        description="'day' or 'week' (calendar, in the customer's time zone) or a rolling span"
    )
    channel: str | None = Field(None, description="count only this channel")


class QuietHours(SpecModel):
    """No message between ``start`` and ``end``, local time; may wrap past midnight."""

    start: str = "21:00"
    end: str = "08:00"

    @field_validator("start", "end")
    @classmethod
    def _clock(cls, value: str) -> str:
        if not _CLOCK.match(value):
            raise ValueError(f"{value!r} is not a time such as '21:00'")
        return value

    @functools.cached_property
    def minutes(self) -> tuple[int, int]:
        """Start and end as minutes after local midnight."""
        (sh, sm), (eh, em) = (map(int, t.split(":")) for t in (self.start, self.end))
        return sh * 60 + sm, eh * 60 + em


class OfferTarget(SpecModel):
    """Which moments and customers an offer is for; every given part must hold."""

    kinds: tuple[MomentKind, ...] = ()
    moments: tuple[str, ...] = Field((), description="moment names")
    categories: tuple[str, ...] = Field((), description="the moment's product category")
    stages: dict[str, tuple[str, ...]] = Field(
        {}, description="journey -> stages the customer must be in"
    )
    profile: tuple[Predicate, ...] = ()


class Message(SpecModel):
    """One channel's message; the fields are Jinja2 templates rendered at delivery."""

    title: str | None = Field(None, max_length=2000)
    subject: str | None = Field(None, max_length=2000)
    body: str = Field(min_length=1, max_length=100_000)
    url: str | None = Field(None, max_length=2000)


def channel_of(message_key: str) -> str:
    """The channel of a message key: ``email``, or ``email@fr`` for a locale variant."""
    return message_key.partition("@")[0]


class OfferSpec(SpecModel):
    """An action momently may take on a moment, with what it is worth."""

    id: str = Field(min_length=1, max_length=64)
    title: str = ""
    target: OfferTarget = Field(OfferTarget(), alias="for")
    messages: dict[str, Message] = Field(
        description="channel name -> message; `channel@locale` (email@fr) for a locale variant"
    )

    @property
    def channels(self) -> tuple[str, ...]:
        """The channels the offer has a message for, each once, in order."""
        return tuple(dict.fromkeys(channel_of(k) for k in self.messages))
    value: float = Field(1.0, ge=0, description="value of a conversion it brings")
    cost: float = Field(0.0, ge=0, description="cost of making the offer (a discount)")
    priority: float = Field(1.0, gt=0, description="business lever multiplying the score")
    pillars: tuple[str, ...] = Field((), description="brand pillar tags")
    purpose: Purpose = "marketing"
    ttl: Duration | None = Field(None, description="a message not sent by then is dropped")
    caps: tuple[CapSpec, ...] = ()
    holdout: float = Field(0.0, ge=0, lt=1, description="share of customers held out")

    @field_validator("messages")
    @classmethod
    def _some(cls, value: dict[str, Message]) -> dict[str, Message]:
        if not value:
            raise ValueError("an offer needs a message for at least one channel")
        return value


class Arbitration(SpecModel):
    """How candidates are scored against silence."""

    exploration: float = Field(0.05, ge=0, le=1, description="share of choices that explore")
    fatigue_cost: float = Field(
        20.0, ge=0, description="value lost if one more message makes the customer opt out"
    )
    min_score: float = Field(0.0, description="a candidate must beat silence by this much")
    decay: Literal["linear", "none"] = Field(
        "linear", description="how a moment's worth falls towards its expiry"
    )
    horizon: Duration = Field(
        "24h", validate_default=True, description="furthest ahead a send is scheduled"
    )


class DecideSpec(SpecModel):
    """The playbook's decision section, validated across its parts."""

    channels: tuple[ChannelSpec, ...] = ()
    offers: tuple[OfferSpec, ...] = ()
    caps: tuple[CapSpec, ...] = ()
    quiet_hours: QuietHours | None = None
    min_gap: Duration = Field(0, description="least time between two messages to a customer")
    holdout: float = Field(0.0, ge=0, lt=1, description="global control group share")
    arbitration: Arbitration = Arbitration()

    @model_validator(mode="after")
    def _references(self) -> DecideSpec:
        names = [c.name for c in self.channels]
        if len(set(names)) != len(names):
            raise ValueError("channel name used more than once")
        known = set(names)
        for channel in self.channels:
            if channel.fallback is not None and channel.fallback not in known:
                raise ValueError(f"channel {channel.name}: unknown fallback {channel.fallback!r}")
        ids = [o.id for o in self.offers]
        if len(set(ids)) != len(ids):
            raise ValueError("offer id used more than once")
        for offer in self.offers:
            for name in offer.messages:
                if channel_of(name) not in known:
                    raise ValueError(f"offer {offer.id}: no channel named {channel_of(name)!r}")
            for cap in offer.caps:
                if cap.channel is not None and cap.channel not in known:
                    raise ValueError(f"offer {offer.id}: cap on unknown channel {cap.channel!r}")
        for cap in self.caps:
            if cap.channel is not None and cap.channel not in known:
                raise ValueError(f"cap on unknown channel {cap.channel!r}")
        return self

    def channel(self, name: str) -> ChannelSpec:
        for channel in self.channels:
            if channel.name == name:
                return channel
        raise KeyError(name)


def spec_dump(spec: DecideSpec) -> dict[str, Any]:
    """The decision section as plain JSON."""
    return spec.model_dump(mode="json", by_alias=True)
