"""Decisions in SQL: the table, the insert and the queries, shared by the SQLite stores.

Decisions are written in the same transaction as the moments and customer
state that caused them (the caller passes its connection), so the contact
history a cap counts and the decisions it counted can never disagree. A
decision's id is deterministic (one per moment), so writing it again on a
replay changes nothing.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any, Final

import msgspec

from momently.decide.records import Decision, DecisionQuery, cancelled_copy

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS decisions (
    decision_id TEXT PRIMARY KEY, customer_id TEXT NOT NULL, moment_id TEXT NOT NULL,
    action TEXT NOT NULL, offer TEXT, status TEXT NOT NULL, at_ms INTEGER NOT NULL,
    body BLOB NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS decisions_by_time ON decisions (at_ms, decision_id);
CREATE INDEX IF NOT EXISTS decisions_by_customer ON decisions (customer_id, at_ms);
"""
_decoder = msgspec.json.Decoder(Decision)
_encoder = msgspec.json.Encoder()


def write(conn: sqlite3.Connection, decisions: Sequence[Decision]) -> None:
    """Insert decisions inside the caller's transaction; an id already there is kept."""
    conn.executemany(
        "INSERT OR IGNORE INTO decisions"
        " (decision_id, customer_id, moment_id, action, offer, status, at_ms, body)"
        " VALUES (?,?,?,?,?,?,?,?)",
        [
            (
                d.decision_id, d.customer_id, d.moment_id, d.action, d.offer, d.status,
                d.at_ms, _encoder.encode(d),
            )
            for d in decisions
        ],
    )  # fmt: skip


def cancel(conn: sqlite3.Connection, cancelled: dict[str, str]) -> None:
    """Mark planned sends called off, with the reason, inside the caller's transaction."""
    for decision_id, reason in sorted(cancelled.items()):
        found = by_id(conn, decision_id)
        if found is None or found.status == "cancelled":
            continue
        changed = cancelled_copy(found, reason)
        conn.execute(
            "UPDATE decisions SET status = ?, body = ? WHERE decision_id = ?",
            (changed.status, _encoder.encode(changed), decision_id),
        )


def query(conn: sqlite3.Connection, q: DecisionQuery) -> list[Decision]:
    """Decisions matching ``q``, newest first."""
    where: list[str] = []
    params: list[Any] = []
    for column, value in (
        ("customer_id", q.customer_id),
        ("moment_id", q.moment_id),
        ("action", q.action),
        ("offer", q.offer),
        ("status", q.status),
    ):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    if q.since_ms is not None:
        where.append("at_ms >= ?")
        params.append(q.since_ms)
    if q.until_ms is not None:
        where.append("at_ms < ?")
        params.append(q.until_ms)
    if q.before is not None:
        where.append("(at_ms, decision_id) < (?, ?)")
        params.extend(q.before)
    sql = "SELECT body FROM decisions"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY at_ms DESC, decision_id DESC LIMIT ?"
    return [_decoder.decode(body) for (body,) in conn.execute(sql, [*params, q.limit])]


def by_id(conn: sqlite3.Connection, decision_id: str) -> Decision | None:
    row = conn.execute("SELECT body FROM decisions WHERE decision_id = ?", (decision_id,))
    found = row.fetchone()
    return None if found is None else _decoder.decode(found[0])


def counts(conn: sqlite3.Connection) -> dict[str, int]:
    """Decisions by action, and held out."""
    out = {f"decisions.{a}": 0 for a in ("send", "schedule", "silent")}
    for action, n in conn.execute("SELECT action, COUNT(*) FROM decisions GROUP BY action"):
        out[f"decisions.{action}"] = int(n)
    held = conn.execute("SELECT COUNT(*) FROM decisions WHERE status = 'held_out'").fetchone()
    out["decisions.heldOut"] = int(held[0])
    return out
