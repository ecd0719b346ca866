"""The moment stage's store in PostgreSQL: moments, customer state and timers, journeys,
world events, model snapshots, decisions and the checkpoint.

Every :meth:`PostgresMomentStore.commit` is one transaction, the checkpoint
included, as in SQLite: after a crash the stage resumes from a position that
matches its state. Checkpoints are named (``?checkpoint=`` in the URL, default
``moments``), so that several stages — one per partition in distributed mode —
can each keep their own in one database.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode, urlparse, urlunparse

import msgspec
import psycopg
from psycopg.rows import TupleRow

from momently.decide.records import Decision, DecisionQuery, cancelled_copy
from momently.moments.journey_stats import JourneyRecord
from momently.moments.model import Moment
from momently.moments.records import ModelSnapshot, MomentBatch, MomentQuery, StateRow
from momently.store.postgres import fence as fences
from momently.store.postgres import wal
from momently.store.postgres.connect import open_pool, transaction
from momently.types import Fence

_moment_decoder = msgspec.json.Decoder(Moment)
_run_decoder = msgspec.json.Decoder(JourneyRecord)
_decision_decoder = msgspec.json.Decoder(Decision)
_encoder = msgspec.json.Encoder()
_Conn = psycopg.Connection[TupleRow]
_ACTIONS: Final = ("send", "schedule", "silent")


def _where(filters: Sequence[tuple[str, Any]], query: Any, key: str) -> tuple[str, list[Any]]:
    """The WHERE clause shared by moment and decision queries (column names are ours)."""
    where: list[str] = []
    params: list[Any] = []
    for column, value in filters:
        if value is not None:
            where.append(f"{column} = %s")
            params.append(value)
    if query.since_ms is not None:
        where.append("at_ms >= %s")
        params.append(query.since_ms)
    if query.until_ms is not None:
        where.append("at_ms < %s")
        params.append(query.until_ms)
    if query.before is not None:
        where.append(f"(at_ms, {key}) < (%s, %s)")
        params.extend(query.before)
    return (" WHERE " + " AND ".join(where) if where else ""), params


class PostgresMomentStore:
    """:class:`momently.types.MomentStore` on PostgreSQL; safe to share between threads."""

    def __init__(self, url: str, *, checkpoint: str = "moments") -> None:
        self.url = url
        self.checkpoint_name = checkpoint
        self._pool, _ = open_pool(url, name="momently-moments")

    @classmethod
    def from_url(cls, url: str) -> PostgresMomentStore:
        parsed = urlparse(url)
        options = dict(parse_qsl(parsed.query, keep_blank_values=True))
        checkpoint = options.pop("checkpoint", "moments")
        return cls(urlunparse(parsed._replace(query=urlencode(options))), checkpoint=checkpoint)

    def commit(self, batch: MomentBatch) -> None:
        with transaction(self._pool) as conn, conn.cursor() as cur:
            if batch.fence is not None:  # first: a stale owner fails before writing
                fences.check_and_set(conn, self.checkpoint_name, Fence(batch.fence))
            cur.executemany(
                "INSERT INTO moments (moment_id, customer_id, kind, name, at_ms, body)"
                " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (moment_id) DO NOTHING",
                [
                    (m.moment_id, m.customer_id, m.kind, m.name, m.at_ms, _encoder.encode(m))
                    for m in batch.moments
                ],
            )
            if batch.dropped:
                cur.execute(
                    "DELETE FROM states WHERE customer_id = ANY(%s)", (list(batch.dropped),)
                )
            cur.executemany(
                "INSERT INTO states (customer_id, body, due_ms) VALUES (%s, %s, %s)"
                " ON CONFLICT (customer_id) DO UPDATE"
                " SET body = excluded.body, due_ms = excluded.due_ms",
                [(c, row.body, row.due_ms) for c, row in sorted(batch.states.items())],
            )
            cur.executemany(
                "INSERT INTO journeys (journey, customer_id, run, body) VALUES (%s, %s, %s, %s)"
                " ON CONFLICT (journey, customer_id, run) DO UPDATE SET body = excluded.body",
                [(r.journey, r.customer_id, r.run, _encoder.encode(r)) for r in batch.journeys],
            )
            cur.executemany(
                "INSERT INTO world_events (id, body) VALUES (%s, %s) ON CONFLICT (id) DO NOTHING",
                [(k, _encoder.encode(v)) for k, v in batch.world_events.items()],
            )
            cur.executemany(
                "INSERT INTO models (name, version, body) VALUES (%s, %s, %s)"
                " ON CONFLICT (name) DO UPDATE"
                " SET version = excluded.version, body = excluded.body",
                [(name, snap.version, snap.body) for name, snap in sorted(batch.models.items())],
            )
            cur.executemany(
                "INSERT INTO decisions"
                " (decision_id, customer_id, moment_id, action, offer, status, at_ms, body)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (decision_id) DO NOTHING",
                [
                    (
                        d.decision_id, d.customer_id, d.moment_id, d.action, d.offer, d.status,
                        d.at_ms, _encoder.encode(d),
                    )
                    for d in batch.decisions
                ],
            )  # fmt: skip
            self._cancel(conn, batch.cancelled)
            if batch.checkpoint is not None:
                cur.execute(
                    "INSERT INTO checkpoints (name, position) VALUES (%s, %s)"
                    " ON CONFLICT (name) DO UPDATE"
                    " SET position = GREATEST(checkpoints.position, excluded.position)",
                    (self.checkpoint_name, batch.checkpoint),
                )

    def fence(self) -> Fence | None:
        """Distributed mode: the newest fencing token this store's stage committed."""
        with self._pool.connection() as conn:
            return fences.read(conn, self.checkpoint_name)

    @staticmethod
    def _cancel(conn: _Conn, cancelled: dict[str, str]) -> None:
        if not cancelled:
            return
        rows = conn.execute(
            "SELECT decision_id, body FROM decisions"
            " WHERE decision_id = ANY(%s) AND status <> 'cancelled' ORDER BY decision_id"
            " FOR UPDATE",
            (sorted(cancelled),),
        ).fetchall()
        changed = [cancelled_copy(_decision_decoder.decode(body), cancelled[d]) for d, body in rows]
        with conn.cursor() as cur:
            cur.executemany(
                "UPDATE decisions SET status = %s, body = %s WHERE decision_id = %s",
                [(d.status, _encoder.encode(d), d.decision_id) for d in changed],
            )

    def checkpoint(self) -> int:
        with self._pool.connection() as conn:
            row = conn.execute(
                "SELECT position FROM checkpoints WHERE name = %s", (self.checkpoint_name,)
            ).fetchone()
        return 0 if row is None else int(row[0])

    def states(self, customer_ids: Sequence[str]) -> dict[str, StateRow]:
        if not customer_ids:
            return {}
        with self._pool.connection() as conn:
            rows = conn.execute(
                "SELECT customer_id, body, due_ms FROM states WHERE customer_id = ANY(%s)",
                (list(customer_ids),),
            ).fetchall()
        return {str(c): StateRow(bytes(b), d) for c, b, d in rows}

    def all_states(self) -> Iterator[tuple[str, StateRow]]:
        with self._pool.connection() as conn, conn.transaction():
            # A server-side cursor: every state, without holding them all in memory.
            with conn.cursor(name="all_states") as cur:
                cur.itersize = 1000
                cur.execute("SELECT customer_id, body, due_ms FROM states ORDER BY customer_id")
                for customer, body, due in cur:
                    yield str(customer), StateRow(bytes(body), due)

    def timers(self) -> list[tuple[int, str]]:
        with self._pool.connection() as conn:
            rows = conn.execute(
                "SELECT due_ms, customer_id FROM states WHERE due_ms IS NOT NULL"
                " ORDER BY due_ms, customer_id"
            ).fetchall()
        return [(int(d), str(c)) for d, c in rows]

    def moments(self, query: MomentQuery) -> list[Moment]:
        filters = (("customer_id", query.customer_id), ("kind", query.kind), ("name", query.name))
        where, params = _where(filters, query, "moment_id")
        with self._pool.connection() as conn:
            rows = conn.execute(
                f"SELECT body FROM moments{where}"  # noqa: S608 (columns are ours)
                " ORDER BY at_ms DESC, moment_id DESC LIMIT %s",
                [*params, query.limit],
            ).fetchall()
        return [_moment_decoder.decode(body) for (body,) in rows]

    def journey_runs(self, journey: str, customer_id: str | None = None) -> list[JourneyRecord]:
        with self._pool.connection() as conn:
            if customer_id is None:
                rows = conn.execute(
                    "SELECT body FROM journeys WHERE journey = %s ORDER BY customer_id, run",
                    (journey,),
                ).fetchall()
            else:
                rows = conn.execute(
                    "SELECT body FROM journeys WHERE journey = %s AND customer_id = %s"
                    " ORDER BY run",
                    (journey, customer_id),
                ).fetchall()
        return [_run_decoder.decode(body) for (body,) in rows]

    def world_event(self, event_id: str) -> dict[str, Any] | None:
        with self._pool.connection() as conn:
            row = conn.execute(
                "SELECT body FROM world_events WHERE id = %s", (event_id,)
            ).fetchone()
        if row is None:
            return None
        body: dict[str, Any] = msgspec.json.decode(row[0])
        return body

    def model_snapshots(self) -> dict[str, ModelSnapshot]:
        with self._pool.connection() as conn:
            rows = conn.execute("SELECT name, version, body FROM models ORDER BY name").fetchall()
        return {str(name): ModelSnapshot(str(version), bytes(body)) for name, version, body in rows}

    def decisions(self, query: DecisionQuery) -> list[Decision]:
        filters = (
            ("customer_id", query.customer_id),
            ("moment_id", query.moment_id),
            ("action", query.action),
            ("offer", query.offer),
            ("status", query.status),
        )
        where, params = _where(filters, query, "decision_id")
        with self._pool.connection() as conn:
            rows = conn.execute(
                f"SELECT body FROM decisions{where}"  # noqa: S608 (columns are ours)
                " ORDER BY at_ms DESC, decision_id DESC LIMIT %s",
                [*params, query.limit],
            ).fetchall()
        return [_decision_decoder.decode(body) for (body,) in rows]

    def decision(self, decision_id: str) -> Decision | None:
        with self._pool.connection() as conn:
            row = conn.execute(
                "SELECT body FROM decisions WHERE decision_id = %s", (decision_id,)
            ).fetchone()
        return None if row is None else _decision_decoder.decode(row[0])

    def moment_stats(self) -> dict[str, int]:
        with self._pool.connection() as conn:  # one statement: one snapshot
            row = conn.execute(
                "SELECT (SELECT COUNT(*) FROM moments), (SELECT COUNT(*) FROM states),"
                " (SELECT COUNT(*) FROM journeys), (SELECT COUNT(*) FROM world_events),"
                " (SELECT COUNT(*) FROM decisions WHERE action = 'send'),"
                " (SELECT COUNT(*) FROM decisions WHERE action = 'schedule'),"
                " (SELECT COUNT(*) FROM decisions WHERE action = 'silent'),"
                " (SELECT COUNT(*) FROM decisions WHERE status = 'held_out'),"
                " (SELECT position FROM checkpoints WHERE name = %s)",
                (self.checkpoint_name,),
            ).fetchone()
        assert row is not None  # noqa: S101 (a SELECT without FROM returns one row)
        names = (
            "moments", "customerStates", "journeyRuns", "worldEvents",
            *(f"decisions.{a}" for a in _ACTIONS), "decisions.heldOut", "checkpoint",
        )  # fmt: skip
        return {name: int(value or 0) for name, value in zip(names, row, strict=True)}

    def erase(self, customer_ids: Sequence[str]) -> int:
        ids = sorted(set(customer_ids))
        tables = ("moments", "states", "journeys", "decisions")
        with transaction(self._pool) as conn:
            gone = sum(
                conn.execute(
                    f"DELETE FROM {table} WHERE customer_id = ANY(%s)",  # noqa: S608 (ours)
                    (ids,),
                ).rowcount
                for table in tables
            )
        with self._pool.connection() as conn:  # the rows' bytes out of the table files
            conn.execute(f"VACUUM FULL {', '.join(tables)}")
        wal.retire(self._pool)  # and out of the WAL, where allowed
        return int(gone)

    def close(self) -> None:
        self._pool.close()
