"""PostgreSQL backends for distributed mode: one database holds what the SQLite files hold.

- :class:`PostgresStore` — the event log, identities, profiles and merges
  (:class:`momently.types.Store`);
- :class:`PostgresMomentStore` — moments, customer state and timers, journeys,
  world events, model snapshots, decisions and checkpoints
  (:class:`momently.types.MomentStore`);
- :class:`PostgresOutboxStore` — the outbox and its schedule
  (:class:`momently.deliver.types.OutboxStore`), claimed with
  ``FOR UPDATE SKIP LOCKED`` so that workers never claim one send twice.

All three open a ``postgresql://`` URL (see :mod:`.connect` for its options),
apply the migrations on open and run every write as one transaction. They
import psycopg, so this package is imported only when such a URL is opened.
"""

from __future__ import annotations

from momently.store.postgres.connect import IntegrityError
from momently.store.postgres.log import PostgresStore
from momently.store.postgres.moments import PostgresMomentStore
from momently.store.postgres.outbox import PostgresOutboxStore

__all__ = ["IntegrityError", "PostgresMomentStore", "PostgresOutboxStore", "PostgresStore"]
