"""What the playbook says about acting on moments: offers, channels, caps, quiet hours, holdouts.

::

    channels:
      - {name: push, kind: push, cost: 0.001}
      - name: email
        kind: email
        cost: 0.002
        long_content: true
        providers:             # failover order; secrets only by environment variable name
          - {type: smtp, host: smtp.brand.example, from: "Brand <hi@brand.example>",
             username: momently, password_env: SMTP_PASSWORD, rate: {per_second: 20, burst: 40}}
          - {type: webhook, url: "https://relay.brand.example/mail", secret_env: RELAY_SECRET}
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
from typing import Annotated, Any, Final, Literal

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


EnvName = Annotated[
    str,
    Field(
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        max_length=128,
        description="the name of an environment variable holding the secret (never the secret)",
    ),
]
WebUrl = Annotated[str, Field(pattern=r"^https?://[^\s/]+", max_length=2000)]


class RateSpec(SpecModel):
    """At most ``per_second`` sends a second through one provider, in bursts of ``burst``."""

    per_second: float = Field(gt=0)
    burst: int = Field(1, ge=1)


class ProviderBase(SpecModel):
    """What every provider has: a name (for rate limits, health and the outbox's record of
    who sent what) and an optional rate limit."""

    name: str | None = Field(
        None,
        min_length=1,
        max_length=64,
        description="unique across the playbook; default `<channel>.<type>`",
    )
    rate: RateSpec | None = None

    def secrets(self) -> dict[str, str]:
        """Which setting comes from which environment variable."""
        return {}


class SmtpProvider(ProviderBase):
    """Email over SMTP (STARTTLS or implicit TLS, AUTH)."""

    type: Literal["smtp"]
    host: str = Field(min_length=1, max_length=255)
    port: int = Field(587, ge=1, le=65535)
    from_: str = Field(alias="from", pattern=r"@", max_length=320, description="From header")
    starttls: bool = True
    implicit_tls: bool = False
    username: str | None = Field(None, max_length=320)
    password_env: EnvName | None = None
    timeout_s: float = Field(30.0, gt=0, le=300)

    @model_validator(mode="after")
    def _tls(self) -> SmtpProvider:
        if self.starttls and self.implicit_tls:
            raise ValueError("choose starttls or implicit_tls, not both")
        if (self.username is None) != (self.password_env is None):
            raise ValueError("give both username and password_env, or neither")
        return self

    def secrets(self) -> dict[str, str]:
        return {"password": self.password_env} if self.password_env else {}


class WebhookProvider(ProviderBase):
    """An HTTP POST signed per Standard Webhooks; the secret is a `whsec_…` value."""

    type: Literal["webhook"]
    url: WebUrl
    secret_env: EnvName
    timeout_s: float = Field(10.0, gt=0, le=300)
    allow_private_targets: bool = Field(
        False, description="allow a private, loopback or link-local target (default: refused)"
    )

    def secrets(self) -> dict[str, str]:
        return {"secret": self.secret_env}


class SmsProvider(ProviderBase):
    """SMS through a Twilio-style Messages API at ``base_url``."""

    type: Literal["sms"]
    base_url: WebUrl = "https://api.twilio.com"
    account_sid: str = Field(min_length=1, max_length=128)
    auth_token_env: EnvName
    from_: str | None = Field(None, alias="from", max_length=64, description="sender number")
    messaging_service_sid: str | None = Field(None, max_length=128)
    timeout_s: float = Field(10.0, gt=0, le=300)
    at_most_once: bool = Field(
        False,
        description="after a crash left a send's outcome unknown, drop it rather than risk a "
        "second text (the API takes no idempotency key)",
    )
    allow_private_targets: bool = Field(
        False, description="allow a private, loopback or link-local base_url (default: refused)"
    )

    @model_validator(mode="after")
    def _sender(self) -> SmsProvider:
        if (self.from_ is None) == (self.messaging_service_sid is None):
            raise ValueError("give exactly one of from and messaging_service_sid")
        return self

    def secrets(self) -> dict[str, str]:
        return {"auth_token": self.auth_token_env}


class WebPushProvider(ProviderBase):
    """Web Push (RFC 8030/8291) signed with VAPID."""

    type: Literal["web_push"]
    vapid_private_key_env: EnvName
    subject: str = Field(pattern=r"^(mailto:|https://)", max_length=320)
    allowed_hosts: tuple[str, ...] | None = Field(
        None, description="push service hosts a subscription may point at; any when absent"
    )
    ttl_s: int = Field(86_400, ge=0, le=2_419_200)
    allow_private_targets: bool = Field(
        False, description="allow private, loopback or link-local endpoints (default: refused)"
    )

    def secrets(self) -> dict[str, str]:
        return {"vapid_private_key": self.vapid_private_key_env}


ProviderSpec = Annotated[
    SmtpProvider | WebhookProvider | SmsProvider | WebPushProvider, Field(discriminator="type")
]
PROVIDER_KINDS: Final[dict[str, tuple[ChannelKind, ...]]] = {
    "smtp": ("email",),
    "sms": ("sms",),
    "web_push": ("web_push",),
    # a brand's own relay can take email, SMS and webhook messages
    "webhook": ("webhook", "email", "sms"),
}


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
    providers: tuple[ProviderSpec, ...] = Field(
        (),
        description="who sends, in failover order; in_app needs none (the in-process stream); "
        "a channel without one has its sends recorded as dead",
    )

    @model_validator(mode="after")
    def _providers(self) -> ChannelSpec:
        for provider in self.providers:
            if self.kind not in PROVIDER_KINDS[provider.type]:
                raise ValueError(
                    f"channel {self.name}: a {provider.type} provider cannot send {self.kind}"
                )
        names = [name for name, _ in self.named_providers()]
        if len(set(names)) != len(names):
            raise ValueError(f"channel {self.name}: provider name used more than once")
        return self

    def named_providers(self) -> tuple[tuple[str, ProviderSpec], ...]:
        """Each provider with its name: given, or ``<channel>.<type>`` (numbered if repeated)."""
        types = [p.type for p in self.providers]
        out = []
        for index, provider in enumerate(self.providers):
            name = provider.name
            if name is None:
                name = f"{self.name}.{provider.type}"
                if types.count(provider.type) > 1:
                    name += f"-{types[: index + 1].count(provider.type)}"
            out.append((name, provider))
        return tuple(out)


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
    places: tuple[str, ...] = Field(
        (), description="the place the moment is at (place ids; place moments carry one)"
    )
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
        providers = [name for c in self.channels for name, _ in c.named_providers()]
        if len(set(providers)) != len(providers):
            raise ValueError("provider name used more than once across channels")
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
