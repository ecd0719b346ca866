"""The project's error hierarchy.

::

    MomentlyError
    ├── InvalidInput            bad input from a client; maps to a 4xx answer
    │   ├── InvalidMessage      one message breaks the Segment spec (field + reason)
    │   ├── PayloadTooLarge     a body or message over the Segment size limits
    │   ├── BadEncoding         bad gzip or an unsupported content encoding
│   ├── UnsupportedMediaType  a content type the endpoint does not take
    │   ├── Unauthorized        unknown or missing write key / admin key
    │   └── Forbidden           a known key without the scope the endpoint needs
    ├── Overloaded              the engine cannot take more right now (429 + Retry-After)
    │   └── RateLimited         one key went over its rate limit (429 + Retry-After)
    ├── Unavailable             the store failed to commit; nothing was written (503 + Retry-After)
    ├── Fenced                  a partition's lease passed to a newer owner; the write was refused
    └── ConfigError             bad settings at start-up
"""

from __future__ import annotations


def error_body(name: str, reason: str, field: str | None = None) -> dict[str, object]:
    """The one JSON shape of every error answer.

    ``error``/``reason``/``field`` are momently's; ``code``/``message`` repeat them in
    the shape Segment's and RudderStack's clients read, so they report the error
    and give up on a 4xx instead of failing to parse it and retrying.

    >>> sorted(error_body("Unauthorized", "unknown write key", "writeKey"))
    ['code', 'error', 'field', 'message', 'reason']
    """
    body: dict[str, object] = {"error": name, "code": name, "message": reason, "reason": reason}
    if field is not None:
        body["field"] = field
    return body


class MomentlyError(Exception):
    """Base of every error momently raises on purpose."""


class InvalidInput(MomentlyError):
    """Input a client sent that momently refuses; ``status`` is the HTTP answer."""

    status = 400

    def __init__(self, reason: str, field: str | None = None) -> None:
        super().__init__(f"{field}: {reason}" if field else reason)
        self.reason = reason
        self.field = field

    def to_json(self) -> dict[str, object]:
        return error_body(type(self).__name__, self.reason, self.field)


class InvalidMessage(InvalidInput):
    """One message does not follow the Segment spec."""


class PayloadTooLarge(InvalidInput):
    """A body or one message is over the size limit."""

    status = 413


class BadEncoding(InvalidInput):
    """The body cannot be decoded: bad gzip, a gzip bomb, not UTF-8 or not JSON."""


class UnsupportedMediaType(InvalidInput):
    """The body's content type is not one the endpoint accepts."""

    status = 415


class Unauthorized(InvalidInput):
    """No credentials, or credentials momently does not know."""

    status = 401


class Forbidden(InvalidInput):
    """A known key that lacks the scope the endpoint needs."""

    status = 403


class Overloaded(MomentlyError):
    """Backpressure: the client should retry after ``retry_after`` seconds."""

    def __init__(self, retry_after: int = 1) -> None:
        super().__init__(f"overloaded, retry after {retry_after}s")
        self.retry_after = retry_after


class RateLimited(Overloaded):
    """One key sent more requests than its rate limit allows."""

    def __init__(self, retry_after: int = 1) -> None:
        MomentlyError.__init__(self, f"rate limit of this key exceeded, retry after {retry_after}s")
        self.retry_after = retry_after


class Unavailable(MomentlyError):
    """The store could not commit (disk full, I/O error); it rolled back, so a retry is safe."""

    def __init__(self, retry_after: int = 1) -> None:
        super().__init__(f"the event store could not commit; retry after {retry_after}s")
        self.retry_after = retry_after


class ConfigError(MomentlyError):
    """Settings that cannot work, found at start-up."""


class Fenced(MomentlyError):
    """A write carried an older fencing token than the store has seen: the partition's
    lease passed to another worker, and this one must stop writing it (nothing was written)."""

    def __init__(self, token: int, current: int) -> None:
        super().__init__(f"fencing token {token} is older than the store's {current}")
        self.token = token
        self.current = current
