"""Who may call what: write keys for ingestion, admin keys with scopes, rate limits.

Keys come from two places. *Configured* keys (``--write-key`` /
``MOMENTLY_WRITE_KEYS``, ``--admin-key`` / ``MOMENTLY_ADMIN_KEY``) work as they
always did: a configured admin key holds every scope. *Created* keys live hashed
in the data directory's key table (``momently keys create|list|revoke``): write
keys belong to one source and only ingest; admin keys hold some of the scopes

* ``read`` — every ``GET`` of the admin API, ``/metrics``, the live feed, and
  the few ``POST`` routes that change nothing (:data:`READ_POSTS`);
* ``write`` — every other admin call that changes something;
* ``privacy`` — ``/api/privacy/*`` (export and erasure), and nothing else.

A missing or unknown key is a 401, a known key without the scope a 403, a key
over its rate limit a 429 with ``Retry-After``. Open to all: ingestion
(``/v1/*``, which checks write keys itself), tracking links (signed tokens),
the in-app stream (a signed, expiring token per customer and device, minted by
``POST /api/inapp/token``), ``/api/health``, and the dashboard's page and
scripts, which hold no data.

Routers use :meth:`Access.guard` (scope from the method and path) or the
module-level :func:`require_scope`, which finds the app's :class:`Access` on
``app.state.access``.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Final

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from momently.auth.keys import FILE, SCOPES, KeyStore, KeyTable
from momently.auth.ratelimit import RateLimiter
from momently.clock import Clock, SystemClock
from momently.config import Settings
from momently.errors import Forbidden, RateLimited, Unauthorized
from momently.ingest.http import WriteKeys

OFF: Final = "the admin API is off: start the server with an admin key"
# POSTs that read: they mint a short-lived token for reading, or render a preview.
READ_POSTS: Final = frozenset({"/api/live/token", "/api/inapp/token", "/api/templates/preview"})
READ_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
CONFIGURED_ADMIN: Final = "admin:configured"

_bearer = HTTPBearer(auto_error=False, description="an admin key")


@dataclass(frozen=True)
class Principal:
    """The key behind a request: its id (never the token) and what it may do."""

    id: str
    scopes: frozenset[str]


def scope_for(method: str, path: str) -> str:
    """The scope a request needs.

    >>> scope_for("GET", "/api/stats"), scope_for("POST", "/api/world-events")
    ('read', 'write')
    >>> scope_for("GET", "/api/privacy/export/c1"), scope_for("POST", "/api/live/token")
    ('privacy', 'read')
    """
    if path == "/api/privacy" or path.startswith("/api/privacy/"):
        return "privacy"
    if method.upper() in READ_METHODS or path in READ_POSTS:
        return "read"
    return "write"


class Access:
    """The keys a server accepts and the limits on them; see the module docstring.

    ``rate`` (requests per second) and ``burst`` are the limit of every key
    that has none of its own; ``rate=None`` leaves such keys unlimited.
    """

    def __init__(
        self,
        *,
        admin_key: str | None = None,
        write_keys: tuple[str, ...] = (),
        store: KeyTable | None = None,
        clock: Clock | None = None,
        rate: float | None = None,
        burst: int | None = None,
    ) -> None:
        if rate is not None and rate <= 0:
            raise ValueError("rate must be positive")
        self._admin = admin_key.encode() if admin_key else None
        self._writes = tuple((k.encode(), "wk_" + _short(k)) for k in write_keys)
        self.store = store
        self.limiter = RateLimiter(clock or SystemClock())
        self.rate = rate
        self.burst = burst
        self.enabled = self._admin is not None or store is not None
        # Live-stream tokens are signed with this: the configured key, as before, or
        # a secret of this process (tokens last a minute; a restart may void them).
        self.stream_secret = admin_key if admin_key else secrets.token_hex(32)

    def _limit(self, key_id: str, rate: float | None, burst: int | None) -> None:
        if rate is None:  # the server's limit, if any
            rate, burst = self.rate, burst if burst is not None else self.burst
        if rate is None:
            return
        # a bucket holds a second's worth of requests unless told otherwise
        wait = self.limiter.take(key_id, rate=rate, burst=burst or max(1, math.ceil(rate)))
        if wait > 0:
            raise RateLimited(max(1, math.ceil(wait)))

    def write_source(self, token: str | None) -> str:
        """The source behind a write key; Unauthorized if unknown, RateLimited if over."""
        if token is None:
            raise Unauthorized(
                "no write key: send it as the HTTP Basic user or as writeKey in the body"
            )
        given = token.encode("utf-8", "surrogatepass")
        for known, source in self._writes:
            if hmac.compare_digest(given, known):
                self._limit(source, None, None)
                return source
        key = self.store.find(token) if self.store is not None else None
        if key is None or key.kind != "write" or key.source is None:
            raise Unauthorized("unknown write key")
        self._limit(key.id, key.rate, key.burst)
        return key.source

    def admin(self, token: str | None, scope: str) -> Principal:
        """The admin key behind ``token`` if it holds ``scope``; else the error to answer."""
        if not self.enabled:
            raise Unauthorized(OFF)
        if not token:
            raise Unauthorized("missing or wrong admin key", "Authorization")
        if self._admin is not None and hmac.compare_digest(
            token.encode("utf-8", "surrogatepass"), self._admin
        ):
            self._limit(CONFIGURED_ADMIN, None, None)
            return Principal(CONFIGURED_ADMIN, frozenset(SCOPES))
        key = self.store.find(token) if self.store is not None else None
        if key is None or key.kind != "admin":
            raise Unauthorized("missing or wrong admin key", "Authorization")
        if scope not in key.scopes:
            raise Forbidden(f"key {key.id} lacks the {scope!r} scope", "Authorization")
        self._limit(key.id, key.rate, key.burst)
        return Principal(key.id, key.scopes)

    def guard(self, scope: str | None = None) -> Callable[..., Principal]:
        """A FastAPI dependency: a Bearer admin key with ``scope``, or the one
        :func:`scope_for` gives the request's method and path."""

        def require_admin(
            request: Request,
            credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
        ) -> Principal:
            needed = scope or scope_for(request.method, request.url.path)
            return self.admin(credentials.credentials if credentials else None, needed)

        return require_admin

    def close(self) -> None:
        if self.store is not None:
            self.store.close()


def _short(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:12]


AdminAuth = Access | str | None
"""What a router takes: the app's :class:`Access`, or (routers built alone, in tests)
one configured admin key, or None for an admin API that is off."""


def as_access(auth: AdminAuth) -> Access:
    return auth if isinstance(auth, Access) else Access(admin_key=auth)


def bearer_token(request: Request) -> str | None:
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    return given.strip() or None if scheme.lower() == "bearer" else None


def require_scope(scope: str) -> Callable[..., Principal]:
    """A dependency for any router: an admin key with ``scope`` on the app's Access.

    ``APIRouter(dependencies=[Depends(require_scope("privacy"))])``.
    """
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}")

    def dependency(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Principal:
        access = getattr(request.app.state, "access", None)
        if not isinstance(access, Access):
            raise Unauthorized(OFF)
        return access.admin(credentials.credentials if credentials else None, scope)

    return dependency


class KeyedWriteKeys(WriteKeys):
    """The tracking API's write keys, as :class:`Access` knows them."""

    def __init__(self, access: Access) -> None:
        super().__init__(())
        self.access = access

    def source_of(self, key: str | None) -> str:
        return self.access.write_source(key)


def open_access(settings: Settings, clock: Clock, *, memory: bool = False) -> Access:
    """The server's Access: its configured keys, and the key table in the data directory
    (none beside a memory store, which keeps nothing on disk)."""
    store = None
    if not memory:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        store = KeyStore(settings.data_dir / FILE)
    return Access(
        admin_key=settings.admin_key,
        write_keys=settings.write_keys,
        store=store,
        clock=clock,
        rate=settings.rate_limit,
    )
