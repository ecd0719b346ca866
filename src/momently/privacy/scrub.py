"""Deleted rows out of SQLite's files, not just out of its tables.

A plain ``DELETE`` leaves the old bytes in the file: in freed cells and pages of
the database, and in the write-ahead log's frames until they are overwritten.
:func:`scrub` runs after a privacy delete: with ``secure_delete`` the delete
itself zeroes what it frees, ``VACUUM`` rebuilds the database so no page keeps
bytes from earlier updates, and a ``TRUNCATE`` checkpoint copies the WAL back
and cuts it to zero bytes.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from momently.errors import Unavailable


@contextmanager
def secure_delete(conn: sqlite3.Connection) -> Iterator[None]:
    """Deletes on ``conn`` inside overwrite what they free with zeros."""
    conn.execute("PRAGMA secure_delete=ON")
    try:
        yield
    finally:
        conn.execute("PRAGMA secure_delete=OFF")


def scrub(conn: sqlite3.Connection) -> None:
    """Rebuild the database and empty its WAL; raises Unavailable if a reader held the WAL.

    Runs outside any transaction on ``conn``; costs a rewrite of the whole file.
    """
    conn.execute("VACUUM")
    busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    if busy:
        # A reader kept a snapshot past the busy timeout: the rows are deleted, but old
        # frames may still sit in the WAL until the next scrub or checkpoint.
        raise Unavailable(retry_after=1)
