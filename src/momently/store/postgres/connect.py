"""Opening a PostgreSQL store: the URL, the connection pool and the migrations.

A URL is libpq's own (``postgresql://user:password@host:port/database?sslmode=…``)
plus momently's options, taken out before libpq sees it:

- ``schema`` — the schema momently's tables live in (default ``public``); several
  momently installations, or the tests, share one database this way;
- ``pool_max`` — the most connections the pool opens (default 10).

Stores of one process that reach the same server as the same user share one
pool, whatever their schema (:class:`SchemaPool`): a worker holding 128
partitions, each a schema with a log and a moment store, opens at most
``pool_max`` connections for all of them, not a pool per store (which ran
past PostgreSQL's default ``max_connections`` of 100). Each checkout sets the
connection's ``search_path`` to the store's schema when it was left on another.

Connections are not checked each time they leave the pool (that would double
the round trips of a one-statement read): after the server restarts, the first
use of each stale connection raises ``psycopg.OperationalError`` and the pool
replaces it, so a caller retries, as it does while the server is down.

Migrations are SQL files beside this module, applied by yoyo-migrations when a
store opens. yoyo rather than alembic: the schema is plain SQL written by hand,
with no ORM models to autogenerate from, and yoyo applies ``.sql`` files as
they are, records them in the database and takes a lock so that several
workers starting together migrate once; alembic would bring SQLAlchemy and an
``env.py`` only to run the same SQL.
"""

from __future__ import annotations

import functools
import re
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final
from urllib.parse import parse_qsl, urlencode, urlparse, urlunparse

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow
from psycopg_pool import ConnectionPool
from yoyo import get_backend, read_migrations  # type: ignore[import-untyped]
from yoyo.migrations import MigrationList  # type: ignore[import-untyped]

from momently.errors import ConfigError

MIGRATIONS: Final = Path(__file__).with_name("migrations")
_SCHEMA_NAME: Final = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_MIGRATE_LOCK: Final = 0x6D6F6D656E746C79  # "momently": one migrator per database at a time
_migrated: set[str] = set()  # URLs migrated by this process: a reopen skips yoyo
_migrated_lock = threading.Lock()


class IntegrityError(ValueError):
    """A commit broke a constraint (a message id the log has, a missing value); nothing
    was written. A ``ValueError``, as the in-memory store raises for the same commit."""


class Target:
    """A parsed store URL: what libpq connects to, and momently's options."""

    def __init__(self, url: str) -> None:
        parsed = urlparse(url)
        if parsed.scheme not in ("postgresql", "postgres"):
            raise ConfigError(f"{url!r} is not a postgresql:// URL")
        options = dict(parse_qsl(parsed.query, keep_blank_values=True))
        self.schema = options.pop("schema", "public")
        if not _SCHEMA_NAME.match(self.schema):
            raise ConfigError(
                f"schema {self.schema!r} in {url!r}: use lower-case letters, digits and _"
            )
        try:
            self.pool_max = int(options.pop("pool_max", "10"))
        except ValueError as e:
            raise ConfigError(f"pool_max in {url!r} is not a whole number") from e
        if self.pool_max < 1:
            raise ConfigError(f"pool_max in {url!r} must be at least 1")
        self.conninfo = urlunparse(parsed._replace(query=urlencode(options)))
        # The URL yoyo reads: its psycopg 3 backend, and the schema as its own option.
        self.yoyo_url = urlunparse(
            parsed._replace(
                scheme="postgresql+psycopg", query=urlencode({**options, "schema": self.schema})
            )
        )


class _Shared:
    """One process-wide pool and the schema each of its connections was last set to."""

    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool
        self.users = 0
        self.schemas: weakref.WeakKeyDictionary[psycopg.Connection[TupleRow], str] = (
            weakref.WeakKeyDictionary()
        )


_shared: dict[tuple[str, str], _Shared] = {}  # (conninfo, session options) -> its pool
_shared_lock = threading.Lock()


class SchemaPool:
    """A store's view of a shared pool: connections with ``search_path`` on its schema."""

    def __init__(self, key: tuple[str, str], shared: _Shared, schema: str) -> None:
        self._key = key
        self._shared: _Shared | None = shared
        self.schema = schema
        self._set_path = sql.SQL("SET search_path TO {}").format(sql.Identifier(schema))

    @contextmanager
    def connection(self, timeout: float | None = None) -> Iterator[psycopg.Connection[TupleRow]]:
        """A connection on the store's schema; ``timeout``: the most seconds to wait for
        one (default the pool's 30), then ``psycopg_pool.PoolTimeout`` (an
        ``OperationalError``)."""
        shared = self._shared
        if shared is None:
            raise psycopg.OperationalError("the store is closed")
        with shared.pool.connection(timeout=timeout) as conn:
            if shared.schemas.get(conn) != self.schema:
                # Session-wide (autocommit): it holds until another schema's checkout.
                # Prepared statements are re-planned by the server when it changes.
                shared.schemas.pop(conn, None)  # unknown until the SET has succeeded
                conn.execute(self._set_path)
                shared.schemas[conn] = self.schema
            yield conn

    def close(self) -> None:
        """Let go of the shared pool; the last store to close it closes it."""
        with _shared_lock:
            shared, self._shared = self._shared, None
            if shared is None:
                return
            shared.users -= 1
            if shared.users > 0:
                return
            del _shared[self._key]
        shared.pool.close()


def open_pool(
    url: str, *, name: str, settings: dict[str, str] | None = None
) -> tuple[SchemaPool, Target]:
    """Autocommit connections to the URL's schema, migrated to the latest, from the
    process's pool for that server and user (made on first use); ``settings`` are
    server settings for every session (``synchronous_commit``…), and stores with other
    settings get a pool of their own."""
    target = Target(url)
    migrate(target)
    options = " ".join(f"-c {key}={value}" for key, value in sorted((settings or {}).items()))
    key = (target.conninfo, options)
    with _shared_lock:
        shared = _shared.get(key)
        if shared is not None:
            if target.pool_max > shared.pool.max_size:
                shared.pool.resize(shared.pool.min_size, target.pool_max)
            shared.users += 1
            return SchemaPool(key, shared, target.schema), target
    # Opened outside the lock: a server that does not answer holds up only this open
    # (up to the wait's 30 s), not every other store's open and close in the process.
    pool = ConnectionPool(
        target.conninfo,
        min_size=1,
        max_size=target.pool_max,
        kwargs={"autocommit": True, "options": options} if options else {"autocommit": True},
        name=name,
        open=True,
    )
    try:
        pool.wait(timeout=30)
    except BaseException:
        pool.close()
        raise
    with _shared_lock:
        shared = _shared.get(key)
        spare = shared is not None  # another thread opened the same one meanwhile
        if shared is None:
            shared = _shared[key] = _Shared(pool)
        elif target.pool_max > shared.pool.max_size:
            shared.pool.resize(shared.pool.min_size, target.pool_max)
        shared.users += 1
    if spare:
        pool.close()  # theirs is used
    return SchemaPool(key, shared, target.schema), target


@functools.cache
def _migrations() -> MigrationList:
    """The migration files, parsed once (parsing their SQL is most of yoyo's work)."""
    migrations = read_migrations(str(MIGRATIONS))
    for migration in migrations:
        migration.load()
    return migrations


def migrate(target: Target) -> None:
    """Create the schema and apply every migration not yet applied to it."""
    with _migrated_lock:
        if target.yoyo_url in _migrated:
            return
    with psycopg.connect(target.conninfo, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_MIGRATE_LOCK,))
        try:
            conn.execute(
                sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(target.schema))
            )
            backend = get_backend(target.yoyo_url)
            try:
                with backend.lock():
                    backend.apply_migrations(backend.to_apply(_migrations()))
            finally:
                backend.connection.close()
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATE_LOCK,))
    with _migrated_lock:
        _migrated.add(target.yoyo_url)


@contextmanager
def transaction(pool: SchemaPool) -> Iterator[psycopg.Connection[TupleRow]]:
    """One transaction on a pooled connection; a broken constraint is an IntegrityError."""
    with pool.connection() as conn:
        try:
            with conn.transaction():
                yield conn
        except psycopg.IntegrityError as e:
            raise IntegrityError(str(e).strip()) from e
