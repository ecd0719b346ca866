"""The event log, identities, profiles and merges in PostgreSQL.

``commit`` is one transaction. Log positions come from the one row of
``log_head``, updated in that transaction: its row lock orders concurrent
committers, so positions are gap-free and become visible in order, and a
reader that tails the log by position (``read_log(after, …)``) never skips an
event that commits late — which a sequence (``BIGSERIAL``) would allow, since
it hands out numbers outside transactions and leaves gaps on rollback.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from momently.events import Event, decode_event, encode_event
from momently.state.profile import Profile
from momently.store.postgres import fence as fences
from momently.store.postgres import wal
from momently.store.postgres.connect import open_pool, transaction
from momently.types import Changes, Fence, IdentityKey, LogRecord

_profile_encoder = msgspec.json.Encoder()  # JSON as in SQLite: traits may hold any integer
_profile_decoder = msgspec.json.Decoder(Profile)


class PostgresStore:
    """:class:`momently.types.Store` on PostgreSQL; safe to share between threads.

    Opened as ``PostgresStore("postgresql://momently@db.example/momently?schema=shop")``
    or through ``momently.store.open_store`` with the same URL.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._pool, _ = open_pool(url, name="momently-log")

    @classmethod
    def from_url(cls, url: str) -> PostgresStore:
        return cls(url)

    def commit(self, records: Sequence[tuple[str, Event]], changes: Changes) -> list[int]:
        ids = list(changes.identities.items())
        profiles = list(changes.profiles.items())
        with transaction(self._pool) as conn:
            if changes.fence is not None:  # first: a stale owner fails before writing
                fences.check_and_set(conn, "log", changes.fence)
            seqs: list[int] = []
            if records:
                row = conn.execute(
                    "UPDATE log_head SET seq = seq + %s RETURNING seq", (len(records),)
                ).fetchone()
                last = int(row[0]) if row is not None else 0
                seqs = list(range(last - len(records) + 1, last + 1))
                conn.execute(
                    "INSERT INTO events (seq, message_id, customer_id, ts_ms, payload)"
                    " SELECT * FROM unnest(%s::bigint[], %s::text[], %s::text[],"
                    " %s::bigint[], %s::bytea[])",
                    (
                        seqs,
                        [e.message_id for _, e in records],
                        [c for c, _ in records],
                        [e.timestamp_ms for _, e in records],
                        [encode_event(e) for _, e in records],
                    ),
                )
            if ids:
                conn.execute(
                    "INSERT INTO identities (kind, value, customer_id)"
                    " SELECT * FROM unnest(%s::text[], %s::text[], %s::text[])"
                    " ON CONFLICT (kind, value) DO UPDATE SET customer_id = excluded.customer_id",
                    ([k for (k, _), _ in ids], [v for (_, v), _ in ids], [c for _, c in ids]),
                )
            if profiles:
                conn.execute(
                    "INSERT INTO profiles (customer_id, body)"
                    " SELECT * FROM unnest(%s::text[], %s::bytea[])"
                    " ON CONFLICT (customer_id) DO UPDATE SET body = excluded.body",
                    ([c for c, _ in profiles], [_profile_encoder.encode(p) for _, p in profiles]),
                )
            for loser, winner in changes.merged.items():
                conn.execute("DELETE FROM profiles WHERE customer_id = %s", (loser,))
                conn.execute("UPDATE merges SET winner = %s WHERE winner = %s", (winner, loser))
                conn.execute(
                    "INSERT INTO merges (loser, winner) VALUES (%s, %s)"
                    " ON CONFLICT (loser) DO UPDATE SET winner = excluded.winner",
                    (loser, winner),
                )
        return seqs

    def fence(self) -> Fence | None:
        """Distributed mode: the newest fencing token and stream position committed."""
        with self._pool.connection() as conn:
            return fences.read(conn, "log")

    def known_messages(self, message_ids: Sequence[str]) -> set[str]:
        if not message_ids:
            return set()
        with self._pool.connection() as conn:
            rows = conn.execute(
                "SELECT message_id FROM events WHERE message_id = ANY(%s)", (list(message_ids),)
            )
            return {str(m) for (m,) in rows}

    def owner(self, key: IdentityKey) -> str | None:
        with self._pool.connection() as conn:
            row = conn.execute(
                "SELECT customer_id FROM identities WHERE kind = %s AND value = %s", key
            ).fetchone()
        return None if row is None else str(row[0])

    def profile(self, customer_id: str) -> Profile | None:
        with self._pool.connection() as conn:
            row = conn.execute(
                "SELECT body FROM profiles WHERE customer_id = %s", (customer_id,)
            ).fetchone()
        return None if row is None else _profile_decoder.decode(row[0])

    def owners(self, keys: Sequence[IdentityKey]) -> dict[IdentityKey, str]:
        if not keys:
            return {}
        with self._pool.connection() as conn:
            rows = conn.execute(
                "SELECT i.kind, i.value, i.customer_id FROM identities i"
                " JOIN unnest(%s::text[], %s::text[]) AS k (kind, value)"
                " ON i.kind = k.kind AND i.value = k.value",
                ([k for k, _ in keys], [v for _, v in keys]),
            ).fetchall()
        return {(str(k), str(v)): str(c) for k, v, c in rows}

    def profiles(self, customer_ids: Sequence[str]) -> dict[str, Profile]:
        if not customer_ids:
            return {}
        with self._pool.connection() as conn:
            rows = conn.execute(
                "SELECT customer_id, body FROM profiles WHERE customer_id = ANY(%s)",
                (list(customer_ids),),
            ).fetchall()
        return {str(c): _profile_decoder.decode(b) for c, b in rows}

    def canonical(self, customer_id: str) -> str | None:
        with self._pool.connection() as conn:  # one statement: one snapshot
            row = conn.execute(
                "SELECT COALESCE((SELECT customer_id FROM profiles WHERE customer_id = %s),"
                " (SELECT winner FROM merges WHERE loser = %s))",
                (customer_id, customer_id),
            ).fetchone()
        return None if row is None or row[0] is None else str(row[0])

    def identities(self, customer_id: str) -> list[IdentityKey]:
        with self._pool.connection() as conn:
            rows = conn.execute(
                "SELECT kind, value FROM identities WHERE customer_id = %s ORDER BY kind, value",
                (customer_id,),
            ).fetchall()
        return [(str(k), str(v)) for k, v in rows]

    def customer_events(self, customer_id: str, after: int, limit: int) -> list[LogRecord]:
        with self._pool.connection() as conn:  # one statement: one snapshot
            rows = conn.execute(
                "SELECT seq, customer_id, payload FROM events"
                " WHERE customer_id IN (SELECT %s UNION ALL"
                " SELECT loser FROM merges WHERE winner = %s)"
                " AND seq > %s ORDER BY seq LIMIT %s",
                (customer_id, customer_id, after, limit),
            ).fetchall()
        return [LogRecord(int(s), str(c), decode_event(p)) for s, c, p in rows]

    def read_log(self, after: int, limit: int) -> list[LogRecord]:
        with self._pool.connection() as conn:
            rows = conn.execute(
                "SELECT seq, customer_id, payload FROM events WHERE seq > %s ORDER BY seq LIMIT %s",
                (after, limit),
            ).fetchall()
        return [LogRecord(int(s), str(c), decode_event(p)) for s, c, p in rows]

    def stats(self) -> dict[str, int]:
        with self._pool.connection() as conn:  # one statement: one snapshot
            row = conn.execute(
                "SELECT (SELECT seq FROM log_head), (SELECT COUNT(*) FROM profiles),"
                " (SELECT COUNT(*) FROM identities)"
            ).fetchone()
        events, customers, identities = row if row is not None else (0, 0, 0)
        return {"events": int(events), "customers": int(customers), "identities": int(identities)}

    # -- privacy ---------------------------------------------------------------------------

    def erase(self, customer_ids: Sequence[str], suppress: Sequence[str]) -> int:
        with transaction(self._pool) as conn:
            members = sorted(
                {*customer_ids}
                | {
                    str(loser)
                    for (loser,) in conn.execute(
                        "SELECT loser FROM merges WHERE winner = ANY(%s)", (list(customer_ids),)
                    )
                }
            )
            gone = conn.execute(
                "DELETE FROM events WHERE customer_id = ANY(%s)", (members,)
            ).rowcount
            conn.execute("DELETE FROM identities WHERE customer_id = ANY(%s)", (members,))
            conn.execute("DELETE FROM profiles WHERE customer_id = ANY(%s)", (members,))
            conn.execute(
                "DELETE FROM merges WHERE loser = ANY(%s) OR winner = ANY(%s)", (members, members)
            )
            conn.execute(
                "INSERT INTO suppressed (digest) SELECT unnest(%s::text[])"
                " ON CONFLICT (digest) DO NOTHING",
                (list(suppress),),
            )
        self._scrub("events", "identities", "profiles", "merges")
        return int(gone)

    def _scrub(self, *tables: str) -> None:
        """Rewrite the tables, so the deleted rows' bytes leave their files, then retire
        the WAL that holds them (see :mod:`momently.store.postgres.wal`); not backups."""
        with self._pool.connection() as conn:
            conn.execute(f"VACUUM FULL {', '.join(tables)}")
        wal.retire(self._pool)

    def suppressed(self) -> set[str]:
        with self._pool.connection() as conn:
            return {str(d) for (d,) in conn.execute("SELECT digest FROM suppressed")}

    def expire_events(self, before_ms: int, through_seq: int) -> int:
        # Positions come from log_head, never from the events left: deleting even the
        # newest event cannot make a later commit reuse its seq.
        with transaction(self._pool) as conn:
            gone = conn.execute(
                "DELETE FROM events WHERE ts_ms < %s AND seq <= %s", (before_ms, through_seq)
            ).rowcount
        if gone:
            self._scrub("events")
        return int(gone)

    def close(self) -> None:
        self._pool.close()
