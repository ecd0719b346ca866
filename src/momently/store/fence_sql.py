"""The fencing check of distributed mode, inside a SQL store's write transaction.

A partition's owner writes with the fencing token its lease gave it
(:mod:`momently.distributed.lease`). The check runs in the same transaction as
the write it guards, after the write lock is taken, so a worker that lost its
lease (paused, partitioned away) cannot commit once the new owner has
committed: the classic fencing-token argument, with the store as the arbiter.
"""

from __future__ import annotations

import sqlite3

import msgspec

from momently.errors import Fenced
from momently.types import Fence

_decode = msgspec.json.Decoder(Fence).decode
_encode = msgspec.json.Encoder().encode


def read(conn: sqlite3.Connection) -> Fence | None:
    """The newest token committed and the stream position committed with it."""
    row = conn.execute("SELECT value FROM meta WHERE key = 'fence'").fetchone()
    return None if row is None else _decode(row[0])


def check_and_set(conn: sqlite3.Connection, fence: Fence) -> None:
    """Refuse an older token (raises :class:`Fenced`); else record token and position."""
    current = read(conn)
    if current is not None and current.token > fence.token:
        raise Fenced(fence.token, current.token)
    position = max(fence.position, current.position if current is not None else 0)
    conn.execute(
        "INSERT OR REPLACE INTO meta (key, value) VALUES ('fence', ?)",
        (_encode(Fence(fence.token, position)).decode(),),
    )


def check_memory(current: Fence | None, fence: Fence) -> Fence:
    """The same rule for the in-memory stores: the fence to keep, or :class:`Fenced`."""
    if current is not None and current.token > fence.token:
        raise Fenced(fence.token, current.token)
    return Fence(fence.token, max(fence.position, current.position if current else 0))
