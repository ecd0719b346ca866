"""The API key table in PostgreSQL: the keys every ingest node of distributed mode accepts.

The same keys as the embedded engine's (:mod:`momently.auth.keys`: write keys per
source, admin keys with scopes and rate limits, the token kept only as its SHA-256
digest), in one table that every ingest node reads, so a key created or revoked
with ``momently keys … --store postgresql://…`` holds on every node at its next
request. Nothing is cached: each lookup is one indexed query (a fraction of a
millisecond on loopback), made only for a token that is not one of the node's
configured keys, so a revocation can never be outlived by a node's cache.

**Where the table lives** (:func:`key_table_url`). The URL given is the one the
ingest nodes take as ``--store``: the partitions' template, a schema per
partition (``?schema=p{partition}``). The key table is in that database, in the
schema the template names with ``{partition}`` replaced by ``keys``
(``p{partition}`` → ``pkeys``), beside the partitions' schemas and never one of
them (a partition's is a number); two installations sharing a database with
their own prefixes have their own key tables. A URL without ``{partition}``
names the key schema itself. Migrations run there as in every schema (the
other tables stay empty there, as ``api_keys`` stays empty in a partition's).

An ingest node opens the table in a thread of its own (``lazy``), so that its
configured keys, and ingestion with them, never wait for PostgreSQL. A lookup
waits at most :data:`FIND_TIMEOUT_S` for a connection: the tracking API checks
write keys on the event loop (as the embedded server does with its SQLite
table), so a PostgreSQL that does not answer must hold it briefly; the
``psycopg.OperationalError`` is the node's 503 to retry.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Final

import psycopg

from momently.auth.keys import KEY_COLUMNS, MAX_TOKEN, Key, digest, key_from_row, new_key
from momently.errors import ConfigError
from momently.store.postgres.connect import SchemaPool, Target, open_pool

KEY_SCHEMA: Final = "keys"  # what {partition} becomes in the key table's schema name
FIND_TIMEOUT_S: Final = 2.0
RETRY_S: Final = 1.0  # a lazy table that could not open is tried again after this
log = logging.getLogger(__name__)


def key_table_url(store_url: str) -> str:
    """The key table's URL for the partitions' store URL (module docstring).

    >>> key_table_url("postgresql://db/momently?schema=p{partition}")
    'postgresql://db/momently?schema=pkeys'
    >>> key_table_url("postgresql://db/momently?schema=shop_keys")
    'postgresql://db/momently?schema=shop_keys'
    """
    if not store_url.startswith(("postgresql:", "postgres:")):
        raise ConfigError(f"the key table needs a postgresql:// store URL, not {store_url!r}")
    return store_url.replace("{partition}", KEY_SCHEMA)


class PostgresKeyStore:
    """:class:`momently.auth.keys.KeyTable` on PostgreSQL (module docstring); ``url`` is
    the key table's own (:func:`key_table_url` gives it from the partitions')."""

    def __init__(
        self, url: str, *, lazy: bool = False, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        """Open the table now, or with ``lazy`` in a thread of its own (an ingest node:
        its configured keys, and ingestion with them, never wait for PostgreSQL). Until
        it is open a use waits at most :data:`FIND_TIMEOUT_S`, then is
        ``psycopg.OperationalError``; a failed open is tried again, in the background,
        at a use :data:`RETRY_S` after it began (on ``monotonic``: tests pass their own)."""
        self.url = url
        self.schema = Target(url).schema  # a bad URL fails here, at start
        self._lock = threading.Lock()
        self._opened: SchemaPool | None = None
        self._closed = False
        self._done = threading.Event()  # the latest attempt to open has ended
        self._monotonic = monotonic
        self._began = monotonic()
        if lazy:
            self._start()
        else:
            self._opened, _ = open_pool(url, name="momently-keys")
            self._done.set()

    def _start(self) -> None:
        self._began = self._monotonic()
        self._done.clear()
        threading.Thread(target=self._open, name="momently-keys-open", daemon=True).start()

    def _open(self) -> None:
        try:
            pool, _ = open_pool(self.url, name="momently-keys")
        except Exception as error:  # psycopg's, yoyo's: logged, tried again at a later use
            log.warning("could not open the key table (%s): %s", self.schema, error)
        else:
            with self._lock:
                keep = not self._closed
                if keep:
                    self._opened = pool
            if not keep:
                pool.close()  # the table was closed meanwhile
        finally:
            self._done.set()

    def _pool(self) -> SchemaPool:
        with self._lock:
            if self._opened is not None:
                return self._opened
            if self._closed:
                raise psycopg.OperationalError("the key table is closed")
            if self._done.is_set() and self._monotonic() - self._began >= RETRY_S:
                self._start()
            done = self._done
        done.wait(FIND_TIMEOUT_S)
        with self._lock:
            if self._opened is not None:
                return self._opened
        raise psycopg.OperationalError("the key table's PostgreSQL did not answer; retry")

    def opened(self, timeout_s: float) -> bool:
        """Whether the table is open, waiting up to ``timeout_s`` for an open under way."""
        self._done.wait(timeout_s)
        return self._opened is not None

    def create(
        self,
        kind: str,
        *,
        now_ms: int,
        scopes: Iterable[str] = (),
        source: str | None = None,
        rate: float | None = None,
        burst: int | None = None,
    ) -> tuple[Key, str]:
        """A new key and its token; the token is not kept and cannot be shown again."""
        key, token, row = new_key(
            kind, now_ms=now_ms, scopes=scopes, source=source, rate=rate, burst=burst
        )
        with self._pool().connection() as conn:
            conn.execute(
                f"INSERT INTO api_keys ({KEY_COLUMNS}, digest)"  # noqa: S608 - constant columns
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                row,
            )
        return key, token

    def list(self) -> list[Key]:
        """Every key, revoked ones included, oldest first."""
        with self._pool().connection() as conn:
            rows = conn.execute(
                f"SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created_ms, id"  # noqa: S608
            ).fetchall()
        return [key_from_row(row) for row in rows]

    def revoke(self, key_id: str, *, now_ms: int) -> Key:
        """Revoke a key (idempotent: a revoked key keeps its first revocation time)."""
        with self._pool().connection() as conn:
            conn.execute(
                "UPDATE api_keys SET revoked_ms = %s WHERE id = %s AND revoked_ms IS NULL",
                (now_ms, key_id),
            )
            row = conn.execute(
                f"SELECT {KEY_COLUMNS} FROM api_keys WHERE id = %s",  # noqa: S608
                (key_id,),
            ).fetchone()
        if row is None:
            raise ConfigError(f"no key {key_id!r}: `momently keys list` shows the ids")
        return key_from_row(row)

    def find(self, token: str) -> Key | None:
        """The active key behind ``token``, or None."""
        if not token or len(token) > MAX_TOKEN:
            return None
        with self._pool().connection(timeout=FIND_TIMEOUT_S) as conn:
            row = conn.execute(
                f"SELECT {KEY_COLUMNS} FROM api_keys"  # noqa: S608
                " WHERE digest = %s AND revoked_ms IS NULL",
                (digest(token),),
            ).fetchone()
        return None if row is None else key_from_row(row)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            opened, self._opened = self._opened, None
        if opened is not None:
            opened.close()

    def __enter__(self) -> PostgresKeyStore:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
