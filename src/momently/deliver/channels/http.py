"""What an HTTP provider's answer or failure means for a retry (shared by HTTP adapters)."""

from __future__ import annotations

from collections.abc import Collection
from email.utils import parsedate_to_datetime
from typing import Final

import httpx

from momently.deliver.errors import PermanentSendError, RetryableSendError, SendError

RETRY_STATUSES: Final = frozenset({401, 403, 404, 408, 409, 425, 429})


def retry_after_ms(value: str | None, now_ms: int) -> int | None:
    """``Retry-After`` as ms from now: delta seconds or an HTTP date.

    >>> retry_after_ms("120", 0), retry_after_ms(None, 0), retry_after_ms("soon", 0)
    (120000, None, None)
    """
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return int(value) * 1000
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0, int(when.timestamp() * 1000) - now_ms)


def status_error(
    status: int,
    text: str,
    retry_after: str | None,
    now_ms: int,
    *,
    permanent: Collection[int] | None = None,
) -> SendError:
    """The error for a non-2xx answer.

    5xx and the statuses in :data:`RETRY_STATUSES` (throttling, timeouts, and our
    credentials or endpoint being wrong — a fault of the provider set-up, not of
    the message) are retryable; another 4xx is permanent. ``permanent``, when
    given, lists the only statuses that are permanent instead.

    >>> type(status_error(400, "bad", None, 0)).__name__
    'PermanentSendError'
    >>> status_error(503, "", "7", 0).retry_after_ms
    7000
    """
    snippet = text[:200].replace("\n", " ")
    reason = f"HTTP {status} {snippet}".strip()
    is_permanent = (
        status in permanent
        if permanent is not None
        else 400 <= status < 500 and status not in RETRY_STATUSES
    )
    if is_permanent:
        return PermanentSendError(reason)
    return RetryableSendError(reason, retry_after_ms=retry_after_ms(retry_after, now_ms))


def response_error(
    response: httpx.Response, now_ms: int, *, permanent: Collection[int] | None = None
) -> SendError:
    """:func:`status_error` for an httpx answer."""
    return status_error(
        response.status_code,
        response.text,
        response.headers.get("retry-after"),
        now_ms,
        permanent=permanent,
    )


def transport_error(exc: httpx.HTTPError) -> SendError:
    """A failure to get an answer: was the request surely not processed, or maybe?"""
    reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    unsent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
    return RetryableSendError(reason, maybe_sent=not unsent)
