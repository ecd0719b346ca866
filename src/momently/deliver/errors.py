"""Delivery's errors, a subtree of :mod:`momently.errors`.

::

    MomentlyError
    ├── InvalidInput
    │   └── TokenError              a tracking token momently refuses (400)
    │       └── TokenExpired        a genuine token past its expiry (410)
    └── DeliveryError
        ├── ComposeError            no message can be made (no address, no template)
        │   └── RenderError         a template failed: the message is not sent
        └── SendError               a channel could not send
            ├── RetryableSendError  worth trying again (timeouts, 4xx SMTP, 5xx, 429)
            └── PermanentSendError  never worth retrying (bad address, 4xx, 5xx SMTP)
"""

from __future__ import annotations

from momently.errors import InvalidInput, MomentlyError


class TokenError(InvalidInput):
    """A tracking token that is malformed, tampered with or of the wrong kind."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, "token")


class TokenExpired(TokenError):
    """A token whose signature holds but whose time is up."""

    status = 410


class DeliveryError(MomentlyError):
    """Base of what can go wrong between a decision and the customer."""


class ComposeError(DeliveryError):
    """No message can be made for a decision; ``reason`` says why. Nothing is sent."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RenderError(ComposeError):
    """A message template could not be rendered; ``reason`` says where and why."""


class SendError(DeliveryError):
    """A channel adapter failed to send.

    ``maybe_sent`` is true when the request may have reached the provider before
    the failure (a timeout while waiting for the answer): resending can then
    duplicate, unless the provider dedupes on the idempotency key.
    """

    retryable = False

    def __init__(self, reason: str, *, maybe_sent: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.maybe_sent = maybe_sent


class RetryableSendError(SendError):
    """A failure that may pass: the provider is down, slow, or asked us to back off."""

    retryable = True

    def __init__(
        self, reason: str, *, maybe_sent: bool = False, retry_after_ms: int | None = None
    ) -> None:
        super().__init__(reason, maybe_sent=maybe_sent)
        self.retry_after_ms = retry_after_ms


class PermanentSendError(SendError):
    """A failure that will not pass by retrying: the message or address is refused."""
