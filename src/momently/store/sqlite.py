"""The embedded store: one SQLite file in WAL mode holds the log and the state.

One connection writes (the engine's writer thread); every other thread reads
through a connection of its own, which WAL lets run beside the writer.
``commit`` is one transaction, so a ``kill -9`` leaves either all of a group
commit or none of it.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final, TypeVar
from urllib.parse import parse_qs, urlparse

import msgspec

from momently.errors import ConfigError
from momently.events import Event, decode_event, encode_event
from momently.privacy import scrub
from momently.state.profile import Profile
from momently.store import fence_sql
from momently.types import Changes, Fence, IdentityKey, LogRecord

SCHEMA_VERSION: Final = 2  # 2: profile bodies are JSON, not msgpack
_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    message_id TEXT NOT NULL UNIQUE,
    customer_id TEXT NOT NULL,
    ts_ms INTEGER NOT NULL,
    payload BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_customer ON events (customer_id, seq);
CREATE TABLE IF NOT EXISTS identities (
    kind TEXT NOT NULL, value TEXT NOT NULL, customer_id TEXT NOT NULL,
    PRIMARY KEY (kind, value)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS identities_by_customer ON identities (customer_id);
CREATE TABLE IF NOT EXISTS profiles (
    customer_id TEXT PRIMARY KEY, body BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS merges (loser TEXT PRIMARY KEY, winner TEXT NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS merges_by_winner ON merges (winner);
CREATE TABLE IF NOT EXISTS suppressed (digest TEXT PRIMARY KEY) WITHOUT ROWID;
"""

# Rows go in as multi-row INSERTs of at most this many parameters (under SQLite's
# oldest limit of 999): the sqlite3 module releases the GIL around every statement
# step, and on a busy server each release costs the writer a wait for the GIL, so
# one statement per few hundred rows beats executemany's one step per row.
_MAX_PARAMS: Final = 996
_Row = tuple[Any, ...]
_T = TypeVar("_T")

# JSON, not msgpack: a trait may hold any integer a client's JSON held, and
# msgpack cannot encode one outside 64 bits (the commit, and its group, would fail).
_profile_encoder = msgspec.json.Encoder()
_profile_decoder = msgspec.json.Decoder(Profile)


def _slices(items: Sequence[_T], size: int) -> Iterator[Sequence[_T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _insert(conn: sqlite3.Connection, head: str, rows: list[_Row]) -> list[int]:
    """``head VALUES (...),(...)`` for all ``rows``, a few statements in all; their rowids.

    With one writer, no deletes and a plain rowid, the rows of one statement
    take the next rowids in order and ``lastrowid`` is the last of them.
    """
    if not rows:
        return []
    width = len(rows[0])
    size = _MAX_PARAMS // width
    marks = "(" + ",".join("?" * width) + ")"
    rowids: list[int] = []
    for chunk in _slices(rows, size):
        sql = f"{head} VALUES {','.join([marks] * len(chunk))}"  # placeholders only
        last = int(conn.execute(sql, [value for row in chunk for value in row]).lastrowid or 0)
        rowids.extend(range(last - len(chunk) + 1, last + 1))
    return rowids


class SqliteStore:
    """The log, identities, profiles and merges in one SQLite database."""

    def __init__(self, path: str | Path, *, synchronous: str = "FULL") -> None:
        if synchronous not in ("FULL", "NORMAL", "OFF"):
            raise ConfigError(f"synchronous must be FULL, NORMAL or OFF, not {synchronous!r}")
        self.path = Path(path)
        self._synchronous = synchronous
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._writer = self._connect()
        self._writer.executescript(_SCHEMA)
        row = self._writer.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        if row is None:
            self._writer.execute(
                "INSERT INTO meta (key, value) VALUES ('schema', ?)", (str(SCHEMA_VERSION),)
            )
        elif int(row[0]) != SCHEMA_VERSION:
            raise ConfigError(
                f"{self.path} has schema {row[0]}, this momently reads {SCHEMA_VERSION}"
            )

    @classmethod
    def from_url(cls, url: str) -> SqliteStore:
        parsed = urlparse(url)
        path = parsed.path if not parsed.netloc else parsed.netloc + parsed.path
        if not path:
            raise ConfigError(f"{url!r} names no file; use sqlite:///path/to/momently.db")
        options = parse_qs(parsed.query)
        synchronous = options.get("synchronous", ["FULL"])[-1].upper()
        return cls(path, synchronous=synchronous)

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self._synchronous}")
        conn.execute("PRAGMA busy_timeout=30000")
        with self._lock:
            self._all.append(conn)
        return conn

    @property
    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
        return conn

    @contextmanager
    def _snapshot(self) -> Iterator[sqlite3.Connection]:
        """Several reads that must see one state of the database."""
        conn = self._reader
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            conn.execute("COMMIT")

    def commit(self, records: Sequence[tuple[str, Event]], changes: Changes) -> list[int]:
        encoded = changes.encoded  # the parse workers' payloads, where they gave them
        log = [
            (e.message_id, c, e.timestamp_ms, encoded.get(e.message_id) or encode_event(e))
            for c, e in records
        ]
        ids = [(k, v, c) for (k, v), c in changes.identities.items()]
        profiles = [(c, _profile_encoder.encode(p)) for c, p in changes.profiles.items()]
        conn = self._writer
        conn.execute("BEGIN IMMEDIATE")
        try:
            if changes.fence is not None:
                fence_sql.check_and_set(conn, changes.fence)
            seqs = _insert(
                conn, "INSERT INTO events (message_id, customer_id, ts_ms, payload)", log
            )
            _insert(conn, "INSERT OR REPLACE INTO identities (kind, value, customer_id)", ids)
            _insert(conn, "INSERT OR REPLACE INTO profiles (customer_id, body)", profiles)
            for loser, winner in changes.merged.items():
                conn.execute("DELETE FROM profiles WHERE customer_id = ?", (loser,))
                conn.execute("UPDATE merges SET winner = ? WHERE winner = ?", (winner, loser))
                conn.execute(
                    "INSERT OR REPLACE INTO merges (loser, winner) VALUES (?,?)", (loser, winner)
                )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return seqs

    def fence(self) -> Fence | None:
        """Distributed mode: the newest fencing token and stream position committed."""
        return fence_sql.read(self._reader)

    def known_messages(self, message_ids: Sequence[str]) -> set[str]:
        if not message_ids:
            return set()
        marks = ",".join("?" * len(message_ids))
        rows = self._reader.execute(
            f"SELECT message_id FROM events WHERE message_id IN ({marks})",  # noqa: S608
            list(message_ids),
        )
        return {row[0] for row in rows}

    def owner(self, key: IdentityKey) -> str | None:
        row = self._reader.execute(
            "SELECT customer_id FROM identities WHERE kind = ? AND value = ?", key
        ).fetchone()
        return None if row is None else str(row[0])

    def profile(self, customer_id: str) -> Profile | None:
        row = self._reader.execute(
            "SELECT body FROM profiles WHERE customer_id = ?", (customer_id,)
        ).fetchone()
        return None if row is None else _profile_decoder.decode(row[0])

    def owners(self, keys: Sequence[IdentityKey]) -> dict[IdentityKey, str]:
        by_kind: dict[str, list[str]] = {}
        for kind, value in keys:
            by_kind.setdefault(kind, []).append(value)
        found: dict[IdentityKey, str] = {}
        for kind, values in by_kind.items():
            for part in _slices(values, _MAX_PARAMS - 1):
                rows = self._reader.execute(
                    "SELECT value, customer_id FROM identities"  # noqa: S608
                    f" WHERE kind = ? AND value IN ({','.join('?' * len(part))})",
                    [kind, *part],
                )
                found.update({(kind, str(v)): str(c) for v, c in rows})
        return found

    def profiles(self, customer_ids: Sequence[str]) -> dict[str, Profile]:
        found: dict[str, Profile] = {}
        for part in _slices(customer_ids, _MAX_PARAMS):
            rows = self._reader.execute(
                "SELECT customer_id, body FROM profiles"  # noqa: S608
                f" WHERE customer_id IN ({','.join('?' * len(part))})",
                part,
            )
            found.update({str(c): _profile_decoder.decode(b) for c, b in rows})
        return found

    def canonical(self, customer_id: str) -> str | None:
        with self._snapshot() as conn:
            if conn.execute(
                "SELECT 1 FROM profiles WHERE customer_id = ?", (customer_id,)
            ).fetchone():
                return customer_id
            row = conn.execute(
                "SELECT winner FROM merges WHERE loser = ?", (customer_id,)
            ).fetchone()
            return None if row is None else str(row[0])

    def identities(self, customer_id: str) -> list[IdentityKey]:
        rows = self._reader.execute(
            "SELECT kind, value FROM identities WHERE customer_id = ? ORDER BY kind, value",
            (customer_id,),
        )
        return [(str(k), str(v)) for k, v in rows]

    def customer_events(self, customer_id: str, after: int, limit: int) -> list[LogRecord]:
        with self._snapshot() as conn:
            members = [customer_id] + [
                str(r[0])
                for r in conn.execute("SELECT loser FROM merges WHERE winner = ?", (customer_id,))
            ]
            marks = ",".join("?" * len(members))
            rows = conn.execute(
                "SELECT seq, customer_id, payload FROM events"  # noqa: S608
                f" WHERE customer_id IN ({marks}) AND seq > ? ORDER BY seq LIMIT ?",
                [*members, after, limit],
            ).fetchall()
        return [LogRecord(int(s), str(c), decode_event(p)) for s, c, p in rows]

    def read_log(self, after: int, limit: int) -> list[LogRecord]:
        rows = self._reader.execute(
            "SELECT seq, customer_id, payload FROM events"
            " WHERE seq > ? AND customer_id <> '' ORDER BY seq LIMIT ?",  # '': a placeholder
            (after, limit),
        ).fetchall()
        return [LogRecord(int(s), str(c), decode_event(p)) for s, c, p in rows]

    def stats(self) -> dict[str, int]:
        with self._snapshot() as conn:
            events = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0]
            customers = conn.execute("SELECT COUNT(*) FROM profiles").fetchone()[0]
            identities = conn.execute("SELECT COUNT(*) FROM identities").fetchone()[0]
        return {"events": int(events), "customers": int(customers), "identities": int(identities)}

    # -- privacy ---------------------------------------------------------------------------

    def _delete_events(self, conn: sqlite3.Connection, where: str, args: list[Any]) -> int:
        """Delete events; if the newest goes, a placeholder row (customer '', no payload)
        keeps its seq, so the next event does not reuse a seq the stage has passed."""
        top = conn.execute("SELECT MAX(seq) FROM events").fetchone()[0]
        gone = conn.execute(f"DELETE FROM events WHERE {where}", args).rowcount  # noqa: S608
        if top is not None and gone:
            conn.execute(
                "INSERT OR IGNORE INTO events (seq, message_id, customer_id, ts_ms, payload)"
                " VALUES (?, ?, '', 0, x'')",
                (top, f"erased:{top}"),
            )
        return int(gone)

    def erase(self, customer_ids: Sequence[str], suppress: Sequence[str]) -> int:
        conn = self._writer
        with scrub.secure_delete(conn):
            conn.execute("BEGIN IMMEDIATE")
            try:
                members = set(customer_ids)
                for part in _slices(sorted(members), _MAX_PARAMS):
                    marks = ",".join("?" * len(part))
                    rows = conn.execute(
                        f"SELECT loser FROM merges WHERE winner IN ({marks})",  # noqa: S608
                        list(part),
                    )
                    members.update(str(r[0]) for r in rows)
                gone = 0
                for part in _slices(sorted(members), _MAX_PARAMS // 2):
                    marks = ",".join("?" * len(part))
                    ids = list(part)
                    gone += self._delete_events(conn, f"customer_id IN ({marks})", ids)
                    # placeholders only: the ids are parameters
                    for sql in (
                        f"DELETE FROM identities WHERE customer_id IN ({marks})",  # noqa: S608
                        f"DELETE FROM profiles WHERE customer_id IN ({marks})",  # noqa: S608
                        f"DELETE FROM merges WHERE loser IN ({marks})"  # noqa: S608
                        f" OR winner IN ({marks})",
                    ):
                        conn.execute(sql, ids * sql.count("IN ("))
                _insert(conn, "INSERT OR IGNORE INTO suppressed (digest)", [(d,) for d in suppress])
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        scrub.scrub(conn)
        return gone

    def suppressed(self) -> set[str]:
        return {str(row[0]) for row in self._reader.execute("SELECT digest FROM suppressed")}

    def expire_events(self, before_ms: int, through_seq: int) -> int:
        conn = self._writer
        with scrub.secure_delete(conn):
            conn.execute("BEGIN IMMEDIATE")
            try:
                gone = self._delete_events(
                    conn, "ts_ms < ? AND seq <= ? AND customer_id <> ''", [before_ms, through_seq]
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        if gone:
            scrub.scrub(conn)
        return gone

    def close(self) -> None:
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            conn.close()
