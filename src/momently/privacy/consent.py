"""Consent where it is enforced last: at send time, and on the sends already planned.

Consent lives in the profile (per ``<channel>:<purpose>``, with its source and
time; see :mod:`momently.state.profile`) and the decide step refuses a send it
does not allow. Two things remain for an opt-out to hold *before the next
send*:

* a send already in the outbox (scheduled for later, or due while the moment
  stage is still behind the log) — :class:`ConsentGate` sits in front of every
  provider and checks the profile as it is at send time, with the very rule
  the decide step uses (:func:`momently.decide.constraints.consent_refusal`);
* the scheduled sends themselves — :func:`cancel_scheduled` calls them off in
  the outbox as soon as the opt-out is committed (the moment stage does the
  same, and gives back their cap reservations, when it reaches the event).

Transactional messages are untouched by a marketing opt-out: the purpose is the
offer's (``purpose:`` in the playbook, marketing by default).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, Literal

from momently.decide.constraints import consent_refusal
from momently.decide.spec import ChannelSpec, DecideSpec, Purpose
from momently.deliver.errors import PermanentSendError
from momently.deliver.message import OutboundMessage, SendResult
from momently.deliver.outbox import Outbox
from momently.deliver.types import Channel
from momently.types import Store

ALL: Final = "all"
PURPOSES: Final[tuple[Purpose, ...]] = ("marketing", "transactional")


def purpose_of(spec: DecideSpec, offer: object) -> Purpose:
    """The purpose of the offer a message carries; marketing when unknown."""
    for candidate in spec.offers:
        if candidate.id == offer:
            return candidate.purpose
    return "marketing"


def covers(scope: str, channel: ChannelSpec) -> bool:
    """Whether a consent scope (a channel name, a channel kind or ``all``) covers a channel."""
    return scope in (ALL, channel.name, channel.kind)


class ConsentGate:
    """A provider behind a consent check: a send the customer no longer allows is refused
    permanently (recorded dead with the reason), never sent."""

    def __init__(self, inner: Channel, spec: DecideSpec, store: Store) -> None:
        self.inner = inner
        self.name = inner.name
        self.dedupes = inner.dedupes
        self._spec = spec
        self._store = store
        self._channels = {c.name: c for c in spec.channels}
        self.refused = 0

    def send(self, message: OutboundMessage) -> SendResult:
        channel = self._channels.get(message.channel)
        if channel is not None:
            customer = self._store.canonical(message.customer_id) or message.customer_id
            profile = self._store.profile(customer)
            purpose = purpose_of(self._spec, message.data.get("offer"))
            refusal = consent_refusal(channel, purpose, profile)
            if refusal is not None:
                self.refused += 1
                raise PermanentSendError(f"consent at send time: {refusal.reason}")
        return self.inner.send(message)

    def close(self) -> None:
        self.inner.close()


def gate_routes(
    routes: dict[str, list[Channel]], spec: DecideSpec, store: Store
) -> dict[str, list[Channel]]:
    """The same routes, each provider behind a :class:`ConsentGate`."""
    return {
        name: [ConsentGate(p, spec, store) for p in providers] for name, providers in routes.items()
    }


def cancel_scheduled(
    outbox: Outbox,
    spec: DecideSpec,
    customer_id: str,
    scope: str,
    purpose: Purpose,
    reason: str,
) -> list[str]:
    """Cancel a customer's pending sends that an opt-out of ``purpose`` on ``scope``
    forbids; returns the decision ids called off."""
    channels = {c.name: c for c in spec.channels}
    states: tuple[Literal["pending", "claimed"], ...] = ("pending", "claimed")
    done: list[str] = []
    for state in states:
        for entry in outbox.store.entries(state=state, customer_id=customer_id, limit=10_000):
            channel = channels.get(entry.channel)
            if channel is None or not covers(scope, channel):
                continue
            offer = entry.message.data.get("offer") if entry.message is not None else None
            if purpose_of(spec, offer) != purpose:
                continue
            if outbox.cancel(decision_id=entry.decision_id, reason=reason):
                done.append(entry.decision_id)
    return done


def cancel_unsubscribed(
    event: Mapping[str, Any], outbox: Outbox, spec: DecideSpec, store: Store
) -> list[str]:
    """After an unsubscribe link's ``Unsubscribed`` event is committed: cancel, at once,
    the customer's scheduled sends on that channel for that purpose."""
    if event.get("event") != "Unsubscribed":
        return []
    context = event.get("context")
    ids = context.get("momently") if isinstance(context, Mapping) else None
    customer = ids.get("customerId") if isinstance(ids, Mapping) else None
    properties = event.get("properties")
    props: Mapping[str, Any] = properties if isinstance(properties, Mapping) else {}
    channel, purpose = props.get("channel") or "email", props.get("purpose") or "marketing"
    if not isinstance(customer, str) or not isinstance(channel, str) or purpose not in PURPOSES:
        return []
    canonical = store.canonical(customer) or customer
    reason = f"the customer opted out of {purpose} on {channel}"
    return cancel_scheduled(outbox, spec, canonical, channel, purpose, reason)
