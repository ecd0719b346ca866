"""From a decision to an addressed, rendered message, and into the outbox."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from momently.decide.records import Decision
from momently.decide.spec import ChannelSpec, DecideSpec, OfferSpec
from momently.deliver.errors import ComposeError
from momently.deliver.message import OutboundMessage, idempotency_key
from momently.deliver.outbox import Outbox
from momently.deliver.records import Entry
from momently.deliver.templates import Links, Renderer
from momently.deliver.tracking import TrackingLinks
from momently.moments.model import Moment
from momently.state.profile import Profile

ADAPTED = ("email", "sms", "web_push", "in_app", "webhook", "push")


def address(channel: ChannelSpec, profile: Profile | None, device: str | None) -> str:
    """Where the message goes on this channel; ComposeError if the customer has no address."""
    if channel.kind == "webhook":
        return profile.customer_id if profile else ""
    if profile is None:
        raise ComposeError(f"{channel.name}: no profile to address")
    if channel.kind == "email" and profile.emails:
        return profile.emails[0]
    if channel.kind == "sms" and profile.phones:
        return profile.phones[0]
    if channel.kind == "push" and profile.push_tokens:
        return profile.push_tokens[-1]  # native push goes through the provider configured
    if channel.kind == "in_app" and device:
        return device
    if channel.kind == "web_push":
        stamped = profile.traits.get("web_push_subscription")
        value = stamped.value if stamped is not None else None
        if isinstance(value, str):
            return value
        if isinstance(value, dict):
            return json.dumps(value, separators=(",", ":"), sort_keys=True)
    if channel.kind not in ADAPTED:
        raise ComposeError(f"{channel.name}: no adapter for channel kind {channel.kind}")
    raise ComposeError(f"{channel.name}: the customer has no {channel.kind} address")


class Composer:
    """Renders a decision's message for its customer, with tracking links."""

    def __init__(
        self,
        spec: DecideSpec,
        renderer: Renderer,
        links: TrackingLinks | None = None,
        *,
        unsubscribe_mailto: str | None = None,
    ) -> None:
        self.spec = spec
        self.renderer = renderer
        self.links = links
        self.unsubscribe_mailto = unsubscribe_mailto
        self._offers: dict[str, OfferSpec] = {o.id: o for o in spec.offers}

    def compose(
        self, decision: Decision, profile: Profile | None, moment: Moment | None
    ) -> OutboundMessage:
        """The message for a send or schedule decision; raise ComposeError with the reason."""
        if decision.offer is None or decision.channel is None:
            raise ComposeError(f"decision {decision.decision_id} sends nothing")
        offer = self._offers.get(decision.offer)
        if offer is None:
            raise ComposeError(f"unknown offer {decision.offer}")
        try:
            channel = self.spec.channel(decision.channel)
        except KeyError:
            raise ComposeError(f"unknown channel {decision.channel}") from None
        to = address(channel, profile, decision.device)
        ids = (decision.decision_id, decision.customer_id, channel.name)
        links, mailto = Links(), None
        if self.links is not None:
            tracking = self.links
            email = channel.kind == "email"
            links = Links(
                unsubscribe=tracking.unsubscribe(*ids),
                open_pixel=tracking.open_pixel(*ids) if email else None,
                track=lambda url: tracking.click(*ids, url=url),
            )
            if email and self.unsubscribe_mailto:
                token = links.unsubscribe.rsplit("/", 1)[-1] if links.unsubscribe else ""
                mailto = f"mailto:{self.unsubscribe_mailto}?subject={quote('unsubscribe ' + token)}"
        rendered = self.renderer.render(
            offer,
            channel.name,
            profile=profile,
            moment=moment,
            links=links,
            html=channel.kind == "email",
        )
        data: dict[str, Any] = {"offer": offer.id, "moment_id": decision.moment_id}
        if moment is not None:
            data.update(moment_name=moment.name, moment_kind=moment.kind)
        return OutboundMessage(
            key=idempotency_key(decision.decision_id, channel.name),
            decision_id=decision.decision_id,
            customer_id=decision.customer_id,
            channel=channel.name,
            kind=channel.kind,
            to=to,
            text=rendered.text,
            subject=rendered.subject,
            title=rendered.title,
            html=rendered.html,
            url=links.track(rendered.url) if rendered.url else None,
            unsubscribe_url=links.unsubscribe,
            unsubscribe_mailto=mailto,
            device=decision.device,
            locale=rendered.variant.partition("@")[2] or None,
            data=data,
        )


def preview(
    spec: DecideSpec,
    renderer: Renderer,
    *,
    offer_id: str,
    channel: str,
    profile: Profile | None,
    moment: Moment | None,
    locale: str | None = None,
) -> dict[str, Any]:
    """Render an offer's message as a customer would get it, for the preview endpoint.

    Links point at ``https://preview.invalid`` so a preview mints no real tracking
    token. A failure is an answer too: ``{"ok": False, "reason": ...}``.
    """
    offers = {o.id: o for o in spec.offers}
    try:
        offer = offers[offer_id]
        kind = spec.channel(channel).kind
    except KeyError as exc:
        return {"ok": False, "reason": f"unknown offer or channel: {exc.args[0]}"}
    links = Links(
        unsubscribe="https://preview.invalid/unsubscribe",
        open_pixel="https://preview.invalid/open.gif" if kind == "email" else None,
        track=lambda url: url,
    )
    try:
        out = renderer.render(
            offer, channel, profile=profile, moment=moment, links=links, locale=locale,
            html=kind == "email",
        )  # fmt: skip
    except ComposeError as exc:
        return {"ok": False, "reason": exc.reason}
    return {
        "ok": True, "variant": out.variant, "subject": out.subject, "title": out.title,
        "text": out.text, "html": out.html, "url": out.url,
    }  # fmt: skip


def submit(
    outbox: Outbox,
    composer: Composer,
    decision: Decision,
    profile: Profile | None,
    moment: Moment | None,
) -> Entry | None:
    """Put a decision's send in the outbox, or record why it cannot be sent.

    Silent and held-out decisions give None. A message that cannot be composed
    is written as a dead entry with the reason, so the failure is visible and a
    replay does not try again.
    """
    if decision.action not in ("send", "schedule") or decision.holdout is not None:
        return None
    try:
        message = composer.compose(decision, profile, moment)
    except ComposeError as exc:
        return outbox.record_failure(
            key=idempotency_key(decision.decision_id, decision.channel or ""),
            decision_id=decision.decision_id,
            customer_id=decision.customer_id,
            channel=decision.channel or "",
            reason=f"compose: {exc.reason}",
        )
    return outbox.enqueue(
        message,
        send_at_ms=decision.send_at_ms,
        expires_ms=decision.expires_ms or None,
    )
