"""The outbox on SQLite (WAL): entries survive a crash and a restart.

Every change is one transaction; ``put`` commits before it returns, so an
entry the outbox has accepted is on disk before anything is sent. With
``synchronous="FULL"`` (the default) that holds across a power cut too.

Only the writes whose loss would break a promise are synced: ``put`` (a send
must not be lost) and ``cancel`` (an opt-out must hold). Claims and outcomes
are committed without waiting for the disk; a power cut may lose the last
of them, which looks like a crash between send and acknowledgement — the
entry is sent again under the same idempotency key — and never loses a send.
A process crash loses nothing: WAL commits survive it either way.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Final

import msgspec

from momently.deliver.message import decode, encode
from momently.deliver.records import DONE, STATES, Entry, State
from momently.privacy import scrub

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS outbox (
    key TEXT PRIMARY KEY,
    decision_id TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    state TEXT NOT NULL,
    due_ms INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    send_at_ms INTEGER NOT NULL,
    expires_ms INTEGER,
    attempts INTEGER NOT NULL,
    claims INTEGER NOT NULL,
    worker TEXT NOT NULL,
    provider TEXT NOT NULL,
    provider_message_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    message BLOB
);
CREATE INDEX IF NOT EXISTS outbox_live ON outbox(due_ms) WHERE state IN ('pending', 'claimed');
CREATE INDEX IF NOT EXISTS outbox_decision ON outbox(decision_id);
CREATE INDEX IF NOT EXISTS outbox_customer ON outbox(customer_id);
"""
_COLUMNS: Final = (
    "key, decision_id, customer_id, channel, state, due_ms, created_ms, updated_ms, send_at_ms,"
    " expires_ms, attempts, claims, worker, provider, provider_message_id, reason, message"
)
_LIVE: Final = "state IN ('pending', 'claimed')"
_SELECT: Final = f"SELECT {_COLUMNS} FROM outbox"  # noqa: S608
_INSERT: Final = f"INSERT OR IGNORE INTO outbox ({_COLUMNS}) VALUES ({','.join('?' * 17)})"  # noqa: S608, E501
_BY_KEY: Final = f"{_SELECT} WHERE key = ?"


def _row(entry: Entry) -> tuple[Any, ...]:
    message = encode(entry.message) if entry.message is not None else None
    return (
        entry.key, entry.decision_id, entry.customer_id, entry.channel, entry.state,
        entry.due_ms, entry.created_ms, entry.updated_ms, entry.send_at_ms, entry.expires_ms,
        entry.attempts, entry.claims, entry.worker, entry.provider, entry.provider_message_id,
        entry.reason, message,
    )  # fmt: skip


def _entry(row: tuple[Any, ...], recovered: bool = False) -> Entry:
    return Entry(
        key=row[0], decision_id=row[1], customer_id=row[2], channel=row[3], state=row[4],
        due_ms=row[5], created_ms=row[6], updated_ms=row[7], send_at_ms=row[8],
        expires_ms=row[9], attempts=row[10], claims=row[11], worker=row[12], provider=row[13],
        provider_message_id=row[14], reason=row[15],
        message=decode(row[16]) if row[16] is not None else None, recovered=recovered,
    )  # fmt: skip


def _in(column: str, values: Collection[str] | None) -> tuple[str, list[str]]:
    if values is None:
        return "", []
    return f" AND {column} IN ({','.join('?' * len(values))})", list(values)


class SqliteOutboxStore:
    """Outbox entries in one SQLite file; safe to share between threads of one process."""

    def __init__(self, path: str | Path, *, synchronous: str = "FULL") -> None:
        if synchronous.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ValueError(f"unknown synchronous mode {synchronous!r}")
        self.path = str(path)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._lock = threading.RLock()
        self._batch_depth = 0  # > 0 inside batch(): puts join one transaction
        self._batch_owner = 0  # the thread in batch()
        self._db.execute("PRAGMA journal_mode=WAL")
        self.synchronous = synchronous.upper()
        self._db.execute(f"PRAGMA synchronous={self.synchronous}")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)

    def __enter__(self) -> SqliteOutboxStore:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Writes inside join one durable transaction: one fsync for many sends."""
        with self._lock:
            if self._batch_depth:
                self._batch_depth += 1
                try:
                    yield
                finally:
                    self._batch_depth -= 1
                return
            self._db.execute("BEGIN IMMEDIATE")
            self._batch_depth, self._batch_owner = 1, threading.get_ident()
            try:
                yield
            except BaseException:
                self._batch_depth = 0
                self._db.execute("ROLLBACK")
                raise
            self._batch_depth = 0
            self._db.execute("COMMIT")

    @contextmanager
    def _tx(self, *, durable: bool = False) -> Iterator[sqlite3.Connection]:
        if self._batch_depth and self._batch_owner == threading.get_ident():
            yield self._db  # inside batch(): its transaction commits everything at once
            return
        relax = not durable and self.synchronous in ("FULL", "EXTRA")
        with self._lock:
            if relax:  # a WAL commit that does not wait for fsync; the next synced one covers it
                self._db.execute("PRAGMA synchronous=NORMAL")
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            finally:
                if relax:
                    self._db.execute(f"PRAGMA synchronous={self.synchronous}")

    def put(self, entry: Entry) -> tuple[Entry, bool]:
        with self._tx(durable=True) as db:
            if db.execute(_INSERT, _row(entry)).rowcount == 1:
                return msgspec.structs.replace(entry, recovered=False), True
            row = db.execute(_BY_KEY, (entry.key,)).fetchone()
        return _entry(row), False

    def get(self, key: str) -> Entry | None:
        with self._lock:
            row = self._db.execute(_BY_KEY, (key,)).fetchone()
        return _entry(row) if row is not None else None

    def claim(
        self,
        *,
        now_ms: int,
        lease_ms: int,
        limit: int,
        worker: str,
        channels: Collection[str] | None = None,
    ) -> list[Entry]:
        where, args = _in("channel", channels)
        with self._tx() as db:
            rows = db.execute(
                f"{_SELECT} WHERE {_LIVE} AND due_ms <= ?{where} ORDER BY due_ms, key LIMIT ?",
                [now_ms, *args, limit],
            ).fetchall()
            db.executemany(
                "UPDATE outbox SET state = 'claimed', due_ms = ?, claims = claims + 1,"
                " worker = ?, updated_ms = ? WHERE key = ?",
                [(now_ms + lease_ms, worker, now_ms, row[0]) for row in rows],
            )
        claimed = []
        for row in rows:
            claimed.append(
                msgspec.structs.replace(
                    _entry(row, recovered=row[4] == "claimed"),
                    state="claimed",
                    due_ms=now_ms + lease_ms,
                    claims=row[11] + 1,
                    worker=worker,
                    updated_ms=now_ms,
                )
            )
        return claimed

    def release(
        self, key: str, claims: int, *, due_ms: int, attempts: int, reason: str, now_ms: int
    ) -> bool:
        with self._tx() as db:
            cursor = db.execute(
                "UPDATE outbox SET state = 'pending', due_ms = ?, attempts = ?, reason = ?,"
                " updated_ms = ? WHERE key = ? AND state = 'claimed' AND claims = ?",
                (due_ms, attempts, reason, now_ms, key, claims),
            )
            return cursor.rowcount == 1

    def finish(
        self,
        key: str,
        claims: int,
        *,
        state: State,
        now_ms: int,
        reason: str = "",
        provider: str = "",
        provider_message_id: str = "",
    ) -> bool:
        if state not in DONE:
            raise ValueError(f"finish needs a final state, not {state!r}")
        with self._tx() as db:
            cursor = db.execute(
                "UPDATE outbox SET state = ?, reason = ?, provider = ?, provider_message_id = ?,"
                " updated_ms = ? WHERE key = ? AND state = 'claimed' AND claims = ?",
                (state, reason, provider, provider_message_id, now_ms, key, claims),
            )
            return cursor.rowcount == 1

    def cancel(
        self,
        *,
        now_ms: int,
        reason: str,
        decision_id: str | None = None,
        customer_id: str | None = None,
    ) -> list[Entry]:
        if decision_id is None and customer_id is None:
            raise ValueError("cancel needs a decision_id or a customer_id")
        where, args = "", []
        for column, value in (("decision_id", decision_id), ("customer_id", customer_id)):
            if value is not None:
                where += f" AND {column} = ?"
                args.append(value)
        match = f"{_LIVE}{where} AND (state = 'pending' OR due_ms <= ?)"
        with self._tx(durable=True) as db:
            rows = db.execute(f"{_SELECT} WHERE {match} ORDER BY key", [*args, now_ms]).fetchall()
            db.execute(
                f"UPDATE outbox SET state = 'cancelled', reason = ?, updated_ms = ? WHERE {match}",  # noqa: S608
                [reason, now_ms, *args, now_ms],
            )
        return [
            msgspec.structs.replace(
                _entry(row), state="cancelled", reason=reason, updated_ms=now_ms
            )
            for row in rows
        ]

    def entries(
        self,
        *,
        state: State | None = None,
        customer_id: str | None = None,
        decision_id: str | None = None,
        limit: int = 100,
    ) -> list[Entry]:
        where, args = "1 = 1", []
        for column, value in (
            ("state", state),
            ("customer_id", customer_id),
            ("decision_id", decision_id),
        ):
            if value is not None:
                where += f" AND {column} = ?"
                args.append(value)
        with self._lock:
            rows = self._db.execute(
                f"{_SELECT} WHERE {where} ORDER BY created_ms DESC, key LIMIT ?",
                [*args, limit],
            ).fetchall()
        return [_entry(row) for row in rows]

    def counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute("SELECT state, COUNT(*) FROM outbox GROUP BY state").fetchall()
        counts: dict[str, int] = dict.fromkeys(STATES, 0)
        counts.update({state: n for state, n in rows})
        return counts

    def erase(self, customer_ids: Collection[str]) -> int:
        where, args = _in("customer_id", sorted(set(customer_ids)))
        with self._lock, scrub.secure_delete(self._db):
            with self._tx(durable=True) as db:
                gone = db.execute(f"DELETE FROM outbox WHERE 1 = 1{where}", args).rowcount  # noqa: S608
            scrub.scrub(self._db)
        return int(gone)

    def next_due_ms(self, channels: Collection[str] | None = None) -> int | None:
        where, args = _in("channel", channels)
        with self._lock:
            row = self._db.execute(
                f"SELECT MIN(due_ms) FROM outbox WHERE {_LIVE}{where}",  # noqa: S608
                args,
            ).fetchone()
        return row[0] if row is not None else None
