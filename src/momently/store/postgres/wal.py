"""Erased rows out of PostgreSQL's write-ahead log too, where the server allows it.

``VACUUM FULL`` takes a deleted customer's rows out of the table files, but the
WAL still holds them: as they were inserted, and as the full-page images the
deletes themselves wrote. :func:`retire` closes the current WAL segment
(``pg_switch_wal``) and forces a checkpoint, after which no segment written
before the erasure is needed for crash recovery; with ``wal_recycle = off`` the
server then unlinks those segments instead of renaming them for reuse, so no WAL
file holds the rows. What keeps old segments anyway, and so the rows: WAL
archiving (``archive_mode``), replication slots, ``wal_keep_size``, and a standby
that has not caught up. Both calls need privileges (superuser, or ``pg_checkpoint``
and ``EXECUTE`` on ``pg_switch_wal``); without them the erasure stands and the WAL
keeps the rows until the server recycles its segments, which is logged.
"""

from __future__ import annotations

import logging

from psycopg import errors

from momently.store.postgres.connect import SchemaPool

log = logging.getLogger(__name__)


def retire(pool: SchemaPool) -> bool:
    """Switch to a new WAL segment and checkpoint; False (logged) if not allowed."""
    try:
        with pool.connection() as conn:
            conn.execute("SELECT pg_switch_wal()")
            conn.execute("CHECKPOINT")
    except errors.InsufficientPrivilege:
        log.warning(
            "erasure: not allowed to switch the WAL and checkpoint; the erased rows stay"
            " in PostgreSQL's WAL until its segments are recycled (grant pg_checkpoint"
            " and EXECUTE ON FUNCTION pg_switch_wal to momently's role)"
        )
        return False
    return True
