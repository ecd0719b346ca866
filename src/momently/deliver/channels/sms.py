"""SMS through a Twilio-style Messages API (any provider that speaks its request shape).

``POST {base_url}/2010-04-01/Accounts/{account_sid}/Messages.json`` with the form
fields ``To``, ``From`` (or ``MessagingServiceSid``) and ``Body``, HTTP Basic
auth with the account SID and auth token; the answer's ``sid`` is the id.
The API takes no idempotency key, so a resend after a crash can duplicate.

``base_url`` is checked like every outbound target (:mod:`momently.deliver.ssrf`):
a private, loopback or link-local address is refused unless the provider says
``allow_private_targets: true``, and each connection goes to the address checked.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from momently.clock import Clock
from momently.deliver.channels.http import response_error, transport_error
from momently.deliver.message import OutboundMessage, SendResult
from momently.deliver.ssrf import Resolver, TargetPolicy, checked_client, system_resolver


@dataclass(frozen=True)
class SmsSettings:
    account_sid: str
    auth_token: str
    from_number: str | None = None
    messaging_service_sid: str | None = None
    base_url: str = "https://api.twilio.com"
    status_callback: str | None = None
    name: str = "twilio"
    timeout_s: float = 10.0
    allow_private: bool = False  # private, loopback and link-local targets (see deliver.ssrf)

    def __post_init__(self) -> None:
        if (self.from_number is None) == (self.messaging_service_sid is None):
            raise ValueError("give exactly one of from_number and messaging_service_sid")
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"SMS base_url must be http(s): {self.base_url!r}")


def sms_body(message: OutboundMessage) -> str:
    """The text, with the tracked link appended when the template did not place it."""
    if message.url and message.url not in message.text:
        return f"{message.text.rstrip()} {message.url}"
    return message.text


class SmsChannel:
    dedupes = False

    def __init__(
        self,
        settings: SmsSettings,
        clock: Clock,
        *,
        transport: httpx.BaseTransport | None = None,
        resolver: Resolver = system_resolver,
    ) -> None:
        self.settings = settings
        self.name = settings.name
        self._clock = clock
        auth = (settings.account_sid, settings.auth_token)
        if transport is None:  # the real network: every connection checked (SSRF)
            policy = TargetPolicy(settings.allow_private, resolver)
            self._client = checked_client(policy, timeout=settings.timeout_s, auth=auth)
        else:  # a test's transport
            self._client = httpx.Client(
                timeout=settings.timeout_s, transport=transport, auth=auth, follow_redirects=False
            )
        base = settings.base_url.rstrip("/")
        self.url = f"{base}/2010-04-01/Accounts/{settings.account_sid}/Messages.json"

    def send(self, message: OutboundMessage) -> SendResult:
        form = {"To": message.to, "Body": sms_body(message)}
        if self.settings.from_number is not None:
            form["From"] = self.settings.from_number
        if self.settings.messaging_service_sid is not None:
            form["MessagingServiceSid"] = self.settings.messaging_service_sid
        if self.settings.status_callback is not None:
            form["StatusCallback"] = self.settings.status_callback
        try:
            response = self._client.post(self.url, data=form)
        except httpx.HTTPError as exc:
            raise transport_error(exc) from exc
        if not response.is_success:
            raise response_error(response, self._clock.now_ms())
        try:
            answer = response.json()
        except ValueError:
            answer = None
        sid = answer.get("sid") if isinstance(answer, dict) else None
        if not isinstance(sid, str):
            # Accepted (2xx) all the same: resending would duplicate the text.
            return SendResult(provider=self.name, message_id="", detail="accepted without a sid")
        status = answer.get("status", "") if isinstance(answer, dict) else ""
        return SendResult(provider=self.name, message_id=sid, detail=str(status))

    def close(self) -> None:
        self._client.close()
