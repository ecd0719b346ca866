"""The embedded moment store: a SQLite file of its own beside the event log.

A file of its own because the moment stage is a second writer: SQLite takes
one writer at a time per file, and the ingest writer must never wait on it.
Every :meth:`commit` is one transaction, the checkpoint and the population
models' snapshots included, so after a ``kill -9`` the stage resumes from a
position that matches its state.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qs, urlparse

import msgspec

from momently.decide.records import Decision, DecisionQuery
from momently.errors import ConfigError
from momently.moments.journey_stats import JourneyRecord
from momently.moments.model import Moment
from momently.moments.records import ModelSnapshot, MomentBatch, MomentQuery, StateRow
from momently.privacy import scrub
from momently.store import decisions_sql, fence_sql
from momently.types import Fence

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS moments (
    moment_id TEXT PRIMARY KEY, customer_id TEXT NOT NULL, kind TEXT NOT NULL,
    name TEXT NOT NULL, at_ms INTEGER NOT NULL, body BLOB NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS moments_by_time ON moments (at_ms, moment_id);
CREATE INDEX IF NOT EXISTS moments_by_customer ON moments (customer_id, at_ms);
CREATE TABLE IF NOT EXISTS states (
    customer_id TEXT PRIMARY KEY, body BLOB NOT NULL, due_ms INTEGER
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS states_by_due ON states (due_ms) WHERE due_ms IS NOT NULL;
CREATE TABLE IF NOT EXISTS journeys (
    journey TEXT NOT NULL, customer_id TEXT NOT NULL, run INTEGER NOT NULL, body BLOB NOT NULL,
    PRIMARY KEY (journey, customer_id, run)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS world_events (id TEXT PRIMARY KEY, body BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS models (
    name TEXT PRIMARY KEY, version TEXT NOT NULL, body BLOB NOT NULL
) WITHOUT ROWID;
"""
_moment_decoder = msgspec.json.Decoder(Moment)
_run_decoder = msgspec.json.Decoder(JourneyRecord)
_encoder = msgspec.json.Encoder()


class SqliteMomentStore:
    """Moments, per-customer moment state, journey runs and world events in SQLite."""

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
        self._writer.executescript(decisions_sql.SCHEMA)

    @classmethod
    def from_url(cls, url: str) -> SqliteMomentStore:
        parsed = urlparse(url)
        path = parsed.path if not parsed.netloc else parsed.netloc + parsed.path
        if not path:
            raise ConfigError(f"{url!r} names no file; use sqlite:///path/to/moments.db")
        synchronous = parse_qs(parsed.query).get("synchronous", ["FULL"])[-1].upper()
        return cls(path, synchronous=synchronous)

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self._synchronous}")
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

    def commit(self, batch: MomentBatch) -> None:
        conn = self._writer
        conn.execute("BEGIN IMMEDIATE")
        try:
            if batch.fence is not None:
                fence_sql.check_and_set(conn, Fence(batch.fence))
            conn.executemany(
                "INSERT OR IGNORE INTO moments (moment_id, customer_id, kind, name, at_ms, body)"
                " VALUES (?,?,?,?,?,?)",
                [
                    (m.moment_id, m.customer_id, m.kind, m.name, m.at_ms, _encoder.encode(m))
                    for m in batch.moments
                ],
            )
            conn.executemany(
                "DELETE FROM states WHERE customer_id = ?", [(c,) for c in batch.dropped]
            )
            conn.executemany(
                "INSERT OR REPLACE INTO states (customer_id, body, due_ms) VALUES (?,?,?)",
                [(c, row.body, row.due_ms) for c, row in batch.states.items()],
            )
            conn.executemany(
                "INSERT OR REPLACE INTO journeys (journey, customer_id, run, body)"
                " VALUES (?,?,?,?)",
                [(r.journey, r.customer_id, r.run, _encoder.encode(r)) for r in batch.journeys],
            )
            conn.executemany(
                "INSERT OR IGNORE INTO world_events (id, body) VALUES (?,?)",
                [(k, _encoder.encode(v)) for k, v in batch.world_events.items()],
            )
            conn.executemany(
                "INSERT OR REPLACE INTO models (name, version, body) VALUES (?,?,?)",
                [(name, snap.version, snap.body) for name, snap in batch.models.items()],
            )
            decisions_sql.write(conn, batch.decisions)
            decisions_sql.cancel(conn, batch.cancelled)
            if batch.checkpoint is not None:
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('checkpoint', ?)"
                    " ON CONFLICT (key) DO UPDATE SET value = MAX(CAST(value AS INTEGER),"
                    " CAST(excluded.value AS INTEGER))",
                    (str(batch.checkpoint),),
                )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def checkpoint(self) -> int:
        row = self._reader.execute("SELECT value FROM meta WHERE key = 'checkpoint'").fetchone()
        return 0 if row is None else int(row[0])

    def states(self, customer_ids: Sequence[str]) -> dict[str, StateRow]:
        found: dict[str, StateRow] = {}
        ids = list(customer_ids)
        for start in range(0, len(ids), 900):
            part = ids[start : start + 900]
            rows = self._reader.execute(
                "SELECT customer_id, body, due_ms FROM states"  # noqa: S608
                f" WHERE customer_id IN ({','.join('?' * len(part))})",
                part,
            )
            found.update({str(c): StateRow(bytes(b), d) for c, b, d in rows})
        return found

    def all_states(self) -> Iterator[tuple[str, StateRow]]:
        rows = self._reader.execute(
            "SELECT customer_id, body, due_ms FROM states ORDER BY customer_id"
        )
        for customer, body, due in rows:
            yield str(customer), StateRow(bytes(body), due)

    def timers(self) -> list[tuple[int, str]]:
        rows = self._reader.execute(
            "SELECT due_ms, customer_id FROM states WHERE due_ms IS NOT NULL ORDER BY due_ms"
        )
        return [(int(d), str(c)) for d, c in rows]

    def moments(self, query: MomentQuery) -> list[Moment]:
        where: list[str] = []
        params: list[Any] = []
        for column, value in (
            ("customer_id", query.customer_id),
            ("kind", query.kind),
            ("name", query.name),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if query.since_ms is not None:
            where.append("at_ms >= ?")
            params.append(query.since_ms)
        if query.until_ms is not None:
            where.append("at_ms < ?")
            params.append(query.until_ms)
        if query.before is not None:
            where.append("(at_ms, moment_id) < (?, ?)")
            params.extend(query.before)
        sql = "SELECT body FROM moments"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY at_ms DESC, moment_id DESC LIMIT ?"
        rows = self._reader.execute(sql, [*params, query.limit])
        return [_moment_decoder.decode(body) for (body,) in rows]

    def journey_runs(self, journey: str, customer_id: str | None = None) -> list[JourneyRecord]:
        if customer_id is None:
            rows = self._reader.execute(
                "SELECT body FROM journeys WHERE journey = ? ORDER BY customer_id, run",
                (journey,),
            )
        else:
            rows = self._reader.execute(
                "SELECT body FROM journeys WHERE journey = ? AND customer_id = ? ORDER BY run",
                (journey, customer_id),
            )
        return [_run_decoder.decode(body) for (body,) in rows]

    def world_event(self, event_id: str) -> dict[str, Any] | None:
        row = self._reader.execute(
            "SELECT body FROM world_events WHERE id = ?", (event_id,)
        ).fetchone()
        if row is None:
            return None
        body: dict[str, Any] = msgspec.json.decode(row[0])
        return body

    def model_snapshots(self) -> dict[str, ModelSnapshot]:
        rows = self._reader.execute("SELECT name, version, body FROM models ORDER BY name")
        return {str(name): ModelSnapshot(str(version), bytes(body)) for name, version, body in rows}

    def decisions(self, query: DecisionQuery) -> list[Decision]:
        return decisions_sql.query(self._reader, query)

    def decision(self, decision_id: str) -> Decision | None:
        return decisions_sql.by_id(self._reader, decision_id)

    def moment_stats(self) -> dict[str, int]:
        conn = self._reader
        counts = {
            key: int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])  # noqa: S608
            for key, table in (
                ("moments", "moments"),
                ("customerStates", "states"),
                ("journeyRuns", "journeys"),
                ("worldEvents", "world_events"),
            )
        }
        counts.update(decisions_sql.counts(conn))
        counts["checkpoint"] = self.checkpoint()
        return counts

    def erase(self, customer_ids: Sequence[str]) -> int:
        conn = self._writer
        ids = sorted(set(customer_ids))
        gone = 0
        with scrub.secure_delete(conn):
            conn.execute("BEGIN IMMEDIATE")
            try:
                for start in range(0, len(ids), 900):
                    part = ids[start : start + 900]
                    marks = ",".join("?" * len(part))
                    for table in ("moments", "states", "journeys", "decisions"):
                        gone += conn.execute(
                            f"DELETE FROM {table} WHERE customer_id IN ({marks})",  # noqa: S608
                            part,
                        ).rowcount
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        scrub.scrub(conn)
        return gone

    def close(self) -> None:
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            conn.close()
