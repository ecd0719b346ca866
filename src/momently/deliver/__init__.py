"""Delivery: render, write to the outbox, send through a channel, track what comes back.

The core modules here import no channel drivers: :mod:`.templates` (Jinja2),
:mod:`.tracking`, :mod:`.outbox` with its stores, :mod:`.compose`. Each channel
adapter lives in :mod:`momently.deliver.channels` and imports its own driver.
"""

from momently.deliver.message import OutboundMessage, SendResult, idempotency_key
from momently.deliver.outbox import Outbox, Tally
from momently.deliver.policy import Health, RateLimit, RetryPolicy
from momently.deliver.records import Entry
from momently.deliver.store_memory import MemoryOutboxStore
from momently.deliver.store_sqlite import SqliteOutboxStore
from momently.deliver.types import Channel, OutboxStore

__all__ = [
    "Channel",
    "Entry",
    "Health",
    "MemoryOutboxStore",
    "OutboundMessage",
    "Outbox",
    "OutboxStore",
    "RateLimit",
    "RetryPolicy",
    "SendResult",
    "SqliteOutboxStore",
    "Tally",
    "idempotency_key",
]
