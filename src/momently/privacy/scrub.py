"""Deleted rows out of SQLite's files, not just out of its tables.

A plain ``DELETE`` leaves the old bytes in the file: in freed cells and pages of
the database, and in the write-ahead log's frames until they are overwritten.
:func:`scrub` runs after a privacy delete: with ``secure_delete`` the delete
itself zeroes what it frees, ``VACUUM`` rebuilds the database so no page keeps
bytes from earlier updates, and a ``TRUNCATE`` checkpoint copies the WAL back
and cuts it to zero bytes.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)


@contextmanager
def secure_delete(conn: sqlite3.Connection) -> Iterator[None]:
    """Deletes on ``conn`` inside overwrite what they free with zeros."""
    conn.execute("PRAGMA secure_delete=ON")
    try:
        yield
    finally:
        conn.execute("PRAGMA secure_delete=OFF")


def scrub(conn: sqlite3.Connection) -> bool:
    """Rebuild the database and empty its WAL; False (logged) if a reader held the WAL.

    Runs outside any transaction on ``conn``; costs a rewrite of the whole file. A
    failure does not undo the delete before it, and is not raised: the rest of an
    erasure (the other stores, the suppression entries) must still happen.
    """
    conn.execute("VACUUM")
    busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    if busy:
        # A reader kept a snapshot past the busy timeout: the rows are deleted and the
        # freed pages zeroed, but old frames may sit in the WAL until its next reset.
        log.error("could not truncate the WAL after a privacy delete; old frames may remain")
        return False
    return True
