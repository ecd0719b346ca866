"""API keys: write keys per source (ingestion only) and admin keys with scopes.

A key is a random token shown once, at creation; the table keeps only its
SHA-256 digest. Why a fast, unkeyed hash and not scrypt or bcrypt: those slow
the guessing of *low-entropy* secrets (passwords). A key here carries 256
random bits (``secrets.token_urlsafe(32)``), so neither guessing nor a
precomputed table can find one from its digest however fast the hash is,
while a slow hash would cost every ingest request milliseconds. (GitHub stores
its tokens the same way.) A lookup is by digest, so no comparison of secrets
happens in Python at all.

>>> store = KeyStore(":memory:")
>>> key, token = store.create("admin", scopes=["read"], now_ms=0)
>>> store.find(token) == key, store.find(token + "x")
(True, None)
>>> store.revoke(key.id, now_ms=1).revoked_ms
1
>>> store.find(token) is None
True
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal, Protocol, cast

from momently.errors import ConfigError

Kind = Literal["write", "admin"]
KINDS: Final = ("write", "admin")
SCOPES: Final = ("read", "write", "privacy")
MAX_TOKEN: Final = 256  # longer is not a key of ours; refused before hashing
FILE: Final = "keys.db"
_SOURCE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS keys (
    id TEXT PRIMARY KEY,
    digest BLOB NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    scopes TEXT NOT NULL,
    source TEXT,
    hint TEXT NOT NULL,
    rate REAL,
    burst INTEGER,
    created_ms INTEGER NOT NULL,
    revoked_ms INTEGER
) WITHOUT ROWID;
"""


@dataclass(frozen=True)
class Key:
    """One key as the table holds it (never the token itself)."""

    id: str
    kind: Kind
    scopes: frozenset[str]
    source: str | None
    hint: str  # the token's first characters, to tell keys apart in a list
    created_ms: int
    revoked_ms: int | None = None
    rate: float | None = None  # requests per second; None: the server's default
    burst: int | None = None

    @property
    def active(self) -> bool:
        return self.revoked_ms is None

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "kind": self.kind,
            "scopes": sorted(self.scopes),
            "source": self.source,
            "hint": self.hint,
            "rate": self.rate,
            "burst": self.burst,
            "createdMs": self.created_ms,
            "revokedMs": self.revoked_ms,
        }


def digest(token: str) -> bytes:
    """The stored form of a token."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def new_token(kind: Kind) -> str:
    """A fresh token: a prefix naming its kind (for secret scanners), then 256 random bits."""
    return f"mk_{'w' if kind == 'write' else 'a'}_{secrets.token_urlsafe(32)}"


def check_key_args(
    kind: str, scopes: Iterable[str], source: str | None, rate: float | None, burst: int | None
) -> frozenset[str]:
    """The scopes a new key gets; ConfigError saying what is wrong with the arguments."""
    if kind not in KINDS:
        raise ConfigError(f"a key's kind is write or admin, not {kind!r}")
    wanted = frozenset(scopes)
    unknown = sorted(wanted - set(SCOPES))
    if unknown:
        raise ConfigError(f"unknown scope {unknown[0]!r}: scopes are {', '.join(SCOPES)}")
    if kind == "write":
        if wanted:
            raise ConfigError("a write key only ingests events: it takes no --scope")
        if source is None:
            raise ConfigError("a write key belongs to one source: give --source NAME")
    else:
        if source is not None:
            raise ConfigError("--source is for write keys; admin keys take --scope")
        if not wanted:
            raise ConfigError(f"an admin key needs at least one --scope ({', '.join(SCOPES)})")
    if source is not None and not _SOURCE.fullmatch(source):
        raise ConfigError(
            "a source name is 1-64 letters, digits, '_', '.', ':' or '-', starting with a "
            "letter or digit"
        )
    if rate is not None and not 0 < rate <= 1e6:
        raise ConfigError("--rate is requests per second, above 0 and at most 1,000,000")
    if burst is not None and not 1 <= burst <= 10_000_000:
        raise ConfigError("--burst is a number of requests, at least 1")
    return wanted


KEY_COLUMNS: Final = "id, kind, scopes, source, hint, rate, burst, created_ms, revoked_ms"
"""The columns a key is read from (:func:`key_from_row`), in every key table."""


def key_from_row(row: tuple[object, ...]) -> Key:
    """The key in a row of :data:`KEY_COLUMNS`."""
    id_, kind, scopes, source, hint, rate, burst, created, revoked = row
    return Key(
        id=str(id_),
        kind=cast(Kind, kind),
        scopes=frozenset(str(scopes).split()) if scopes else frozenset(),
        source=None if source is None else str(source),
        hint=str(hint),
        created_ms=cast(int, created),
        revoked_ms=cast("int | None", revoked),
        rate=cast("float | None", rate),
        burst=cast("int | None", burst),
    )


def new_key(
    kind: str,
    *,
    now_ms: int,
    scopes: Iterable[str] = (),
    source: str | None = None,
    rate: float | None = None,
    burst: int | None = None,
) -> tuple[Key, str, tuple[object, ...]]:
    """A new key (arguments checked), its token, and its row: :data:`KEY_COLUMNS`
    then the token's digest (the token itself is kept nowhere)."""
    granted = check_key_args(kind, scopes, source, rate, burst)
    token = new_token(cast(Kind, kind))
    key = Key(
        id="key_" + secrets.token_hex(6),
        kind=cast(Kind, kind),
        scopes=granted,
        source=source,
        hint=token[:9],
        created_ms=now_ms,
        rate=rate,
        burst=burst,
    )
    row = (
        key.id, key.kind, " ".join(sorted(granted)), source, key.hint, rate, burst,
        now_ms, None, digest(token),
    )  # fmt: skip
    return key, token, row


class KeyTable(Protocol):
    """Where created keys live: :class:`KeyStore` (a SQLite file beside the embedded
    engine's data) or ``momently.store.postgres.keys.PostgresKeyStore`` (every ingest
    node of distributed mode reads the one table)."""

    def create(
        self,
        kind: str,
        *,
        now_ms: int,
        scopes: Iterable[str] = (),
        source: str | None = None,
        rate: float | None = None,
        burst: int | None = None,
    ) -> tuple[Key, str]: ...

    def list(self) -> list[Key]: ...

    def revoke(self, key_id: str, *, now_ms: int) -> Key: ...

    def find(self, token: str) -> Key | None: ...

    def close(self) -> None: ...


class KeyStore:
    """The key table in one SQLite file; safe to share between threads and processes.

    Lookups are cached in memory; the cache is dropped whenever the file changed
    (SQLite's ``data_version``), so a key revoked by ``momently keys revoke`` in
    another process stops working at its next request.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        fresh = self.path != ":memory:" and not Path(self.path).exists()
        try:
            self._db = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=30
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise ConfigError(f"cannot open the key table {self.path}: {exc}") from exc
        if fresh:
            os.chmod(self.path, 0o600)  # digests only, but nobody else's business
        self._lock = threading.Lock()
        self._cache: dict[bytes, Key] = {}
        self._version = self._data_version()

    def _data_version(self) -> int:
        row = self._db.execute("PRAGMA data_version").fetchone()
        return int(row[0])

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
        with self._lock:
            self._db.execute(
                f"INSERT INTO keys ({KEY_COLUMNS}, digest)"  # noqa: S608 - constant columns
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            )
            self._cache.clear()
        return key, token

    def list(self) -> list[Key]:
        """Every key, revoked ones included, oldest first."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {KEY_COLUMNS} FROM keys ORDER BY created_ms, id"  # noqa: S608
            ).fetchall()
        return [key_from_row(row) for row in rows]

    def revoke(self, key_id: str, *, now_ms: int) -> Key:
        """Revoke a key (idempotent: a revoked key keeps its first revocation time)."""
        with self._lock:
            self._db.execute(
                "UPDATE keys SET revoked_ms = ? WHERE id = ? AND revoked_ms IS NULL",
                (now_ms, key_id),
            )
            row = self._db.execute(
                f"SELECT {KEY_COLUMNS} FROM keys WHERE id = ?",  # noqa: S608
                (key_id,),
            ).fetchone()
            self._cache.clear()
        if row is None:
            raise ConfigError(f"no key {key_id!r}: `momently keys list` shows the ids")
        return key_from_row(row)

    def find(self, token: str) -> Key | None:
        """The active key behind ``token``, or None."""
        if not token or len(token) > MAX_TOKEN:
            return None
        wanted = digest(token)
        with self._lock:
            version = self._data_version()
            if version != self._version:
                self._cache.clear()
                self._version = version
            found = self._cache.get(wanted)
            if found is not None:
                return found
            row = self._db.execute(
                f"SELECT {KEY_COLUMNS} FROM keys"  # noqa: S608 - constant columns
                " WHERE digest = ? AND revoked_ms IS NULL",
                (wanted,),
            ).fetchone()
            if row is None:
                return None
            key = key_from_row(row)
            self._cache[wanted] = key
            return key

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> KeyStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
