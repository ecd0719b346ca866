"""The fencing check of distributed mode, inside a PostgreSQL store's write transaction.

As :mod:`momently.store.fence_sql` does for SQLite: the check and the write it
guards commit together. One statement both checks and records: the upsert
takes the fence row's lock, so two owners committing at once are ordered, and
the later one sees the token the earlier one wrote.
"""

from __future__ import annotations

import psycopg
from psycopg.rows import TupleRow

from momently.errors import Fenced
from momently.types import Fence


def check_and_set(conn: psycopg.Connection[TupleRow], name: str, fence: Fence) -> None:
    """Refuse a token older than the one committed (raises :class:`Fenced`); else record
    the token and the furthest position."""
    row = conn.execute(
        "INSERT INTO fences (name, token, position) VALUES (%s, %s, %s)"
        " ON CONFLICT (name) DO UPDATE SET token = excluded.token,"
        " position = GREATEST(fences.position, excluded.position)"
        " WHERE fences.token <= excluded.token RETURNING token",
        (name, fence.token, fence.position),
    ).fetchone()
    if row is None:
        current = conn.execute("SELECT token FROM fences WHERE name = %s", (name,)).fetchone()
        raise Fenced(fence.token, int(current[0]) if current is not None else 0)


def read(conn: psycopg.Connection[TupleRow], name: str) -> Fence | None:
    """The newest token committed under ``name`` and the position committed with it."""
    row = conn.execute("SELECT token, position FROM fences WHERE name = %s", (name,)).fetchone()
    return None if row is None else Fence(int(row[0]), int(row[1]))
