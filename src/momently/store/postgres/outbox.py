"""The outbox and its schedule in PostgreSQL, shared by every worker.

Sends due now and sends planned for later are the same rows, told apart by
``due_ms``. ``claim`` picks due rows with ``FOR UPDATE SKIP LOCKED``: a
worker skips the rows another worker is claiming at that moment instead of
waiting for them, and a row it does lock is checked again after the lock (a
row another claim has just moved to a later ``due_ms`` no longer matches), so
two workers never claim one send. The ``claims`` count fences the rest: only
the holder of the latest claim may release or finish it.

As in SQLite, only ``put``, ``cancel`` and ``batch()`` wait for the disk;
claims and outcomes are single statements committed with ``synchronous_commit
= off`` (one round trip each), which a server crash may undo (the entry is
then claimed again and sent under the same idempotency key) but never loses a
send.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from types import TracebackType
from typing import Any, Final

import msgspec
import psycopg
from psycopg.rows import TupleRow

from momently.deliver.message import decode, encode
from momently.deliver.records import DONE, STATES, Entry, State
from momently.store.postgres import wal
from momently.store.postgres.connect import open_pool, transaction

_COLUMNS: Final = (
    "key, decision_id, customer_id, channel, state, due_ms, created_ms, updated_ms, send_at_ms,"
    " expires_ms, attempts, claims, worker, provider, provider_message_id, reason, message"
)
_LIVE: Final = "state IN ('pending', 'claimed')"
_SELECT: Final = f"SELECT {_COLUMNS} FROM outbox"  # noqa: S608
_Conn = psycopg.Connection[TupleRow]


def _row(entry: Entry) -> tuple[Any, ...]:
    message = encode(entry.message) if entry.message is not None else None
    return (
        entry.key, entry.decision_id, entry.customer_id, entry.channel, entry.state,
        entry.due_ms, entry.created_ms, entry.updated_ms, entry.send_at_ms, entry.expires_ms,
        entry.attempts, entry.claims, entry.worker, entry.provider, entry.provider_message_id,
        entry.reason, message,
    )  # fmt: skip


def _entry(row: Sequence[Any], recovered: bool = False) -> Entry:
    return Entry(
        key=row[0], decision_id=row[1], customer_id=row[2], channel=row[3], state=row[4],
        due_ms=row[5], created_ms=row[6], updated_ms=row[7], send_at_ms=row[8],
        expires_ms=row[9], attempts=row[10], claims=row[11], worker=row[12], provider=row[13],
        provider_message_id=row[14], reason=row[15],
        message=decode(row[16]) if row[16] is not None else None, recovered=recovered,
    )  # fmt: skip


class PostgresOutboxStore:
    """:class:`momently.deliver.types.OutboxStore` on PostgreSQL; many workers may share it."""

    def __init__(self, url: str) -> None:
        self.url = url
        # Sessions commit without waiting for the disk; put, cancel and batch() ask for it.
        self._pool, _ = open_pool(
            url, name="momently-outbox", settings={"synchronous_commit": "off"}
        )
        self._local = threading.local()  # this thread's batch(): its connection and depth

    @classmethod
    def from_url(cls, url: str) -> PostgresOutboxStore:
        return cls(url)

    def __enter__(self) -> PostgresOutboxStore:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._pool.close()

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Writes of this thread inside join one transaction: one commit for many sends."""
        if getattr(self._local, "conn", None) is not None:
            yield  # nested: the outer batch commits
            return
        with transaction(self._pool) as conn:
            conn.execute("SET LOCAL synchronous_commit = on")
            self._local.conn = conn
            try:
                yield
            finally:
                self._local.conn = None

    @contextmanager
    def _tx(self, *, durable: bool) -> Iterator[_Conn]:
        """A durable transaction, or (not durable) a connection for one statement, which
        commits on its own without waiting for the disk; inside batch(), its transaction."""
        joined: _Conn | None = getattr(self._local, "conn", None)
        if joined is not None:
            yield joined
        elif durable:
            with transaction(self._pool) as conn:
                conn.execute("SET LOCAL synchronous_commit = on")
                yield conn
        else:
            with self._pool.connection() as conn:
                yield conn

    def put(self, entry: Entry) -> tuple[Entry, bool]:
        with self._tx(durable=True) as conn:
            inserted = conn.execute(
                f"INSERT INTO outbox ({_COLUMNS}) VALUES ({','.join(['%s'] * 17)})"  # noqa: S608
                " ON CONFLICT (key) DO NOTHING RETURNING key",
                _row(entry),
            ).fetchone()
            if inserted is not None:
                return msgspec.structs.replace(entry, recovered=False), True
            row = conn.execute(f"{_SELECT} WHERE key = %s", (entry.key,)).fetchone()
        assert row is not None  # noqa: S101 (the conflicting row; entries are never deleted)
        return _entry(row), False

    def get(self, key: str) -> Entry | None:
        with self._pool.connection() as conn:
            row = conn.execute(f"{_SELECT} WHERE key = %s", (key,)).fetchone()
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
        only = "" if channels is None else " AND channel = ANY(%(channels)s)"
        returning = ", ".join(f"o.{c.strip()}" for c in _COLUMNS.split(","))
        with self._tx(durable=False) as conn:
            rows = conn.execute(
                "UPDATE outbox o SET state = 'claimed', due_ms = %(lease)s, claims = o.claims + 1,"  # noqa: S608
                " worker = %(worker)s, updated_ms = %(now)s"
                f" FROM (SELECT key, state, due_ms FROM outbox WHERE {_LIVE}"
                f" AND due_ms <= %(now)s{only} ORDER BY due_ms, key LIMIT %(limit)s"
                " FOR UPDATE SKIP LOCKED) picked"
                f" WHERE o.key = picked.key RETURNING {returning}, picked.state, picked.due_ms",
                {
                    "lease": now_ms + lease_ms,
                    "worker": worker,
                    "now": now_ms,
                    "limit": limit,
                    "channels": None if channels is None else list(channels),
                },
            ).fetchall()
        rows.sort(key=lambda row: (row[18], row[0]))  # the order they fell due in
        return [_entry(row, recovered=row[17] == "claimed") for row in rows]

    def release(
        self, key: str, claims: int, *, due_ms: int, attempts: int, reason: str, now_ms: int
    ) -> bool:
        with self._tx(durable=False) as conn:
            cursor = conn.execute(
                "UPDATE outbox SET state = 'pending', due_ms = %s, attempts = %s, reason = %s,"
                " updated_ms = %s WHERE key = %s AND state = 'claimed' AND claims = %s",
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
        with self._tx(durable=False) as conn:
            cursor = conn.execute(
                "UPDATE outbox SET state = %s, reason = %s, provider = %s,"
                " provider_message_id = %s, updated_ms = %s"
                " WHERE key = %s AND state = 'claimed' AND claims = %s",
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
                where += f" AND {column} = %s"
                args.append(value)
        with self._tx(durable=True) as conn:
            rows = conn.execute(
                "UPDATE outbox SET state = 'cancelled', reason = %s, updated_ms = %s"  # noqa: S608
                f" WHERE {_LIVE}{where} AND (state = 'pending' OR due_ms <= %s)"
                f" RETURNING {_COLUMNS}",
                [reason, now_ms, *args, now_ms],
            ).fetchall()
        return sorted((_entry(row) for row in rows), key=lambda e: e.key)

    def entries(
        self,
        *,
        state: State | None = None,
        customer_id: str | None = None,
        decision_id: str | None = None,
        limit: int = 100,
    ) -> list[Entry]:
        where, args = "TRUE", []
        for column, value in (
            ("state", state),
            ("customer_id", customer_id),
            ("decision_id", decision_id),
        ):
            if value is not None:
                where += f" AND {column} = %s"
                args.append(value)
        with self._pool.connection() as conn:
            rows = conn.execute(
                f"{_SELECT} WHERE {where} ORDER BY created_ms DESC, key LIMIT %s",
                [*args, limit],
            ).fetchall()
        return [_entry(row) for row in rows]

    def counts(self) -> dict[str, int]:
        with self._pool.connection() as conn:
            rows = conn.execute("SELECT state, COUNT(*) FROM outbox GROUP BY state").fetchall()
        counts: dict[str, int] = dict.fromkeys(STATES, 0)
        counts.update({str(state): int(n) for state, n in rows})
        return counts

    def erase(self, customer_ids: Collection[str]) -> int:
        with self._tx(durable=True) as conn:
            gone = conn.execute(
                "DELETE FROM outbox WHERE customer_id = ANY(%s)", (sorted(set(customer_ids)),)
            ).rowcount
        if getattr(self._local, "conn", None) is None:  # VACUUM cannot run in a batch
            with self._pool.connection() as conn:  # the rows' bytes out of the table file
                conn.execute("VACUUM FULL outbox")
            wal.retire(self._pool)  # and out of the WAL, where allowed
        return int(gone)

    def next_due_ms(self, channels: Collection[str] | None = None) -> int | None:
        only, args = ("", []) if channels is None else (" AND channel = ANY(%s)", [list(channels)])
        with self._pool.connection() as conn:
            row = conn.execute(
                f"SELECT MIN(due_ms) FROM outbox WHERE {_LIVE}{only}",  # noqa: S608
                args,
            ).fetchone()
        return None if row is None or row[0] is None else int(row[0])
