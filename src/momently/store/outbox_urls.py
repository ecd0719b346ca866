"""Outbox stores opened by URL, for :data:`momently.store.OUTBOX_BACKENDS`.

>>> memory("memory://").counts()["pending"]
0
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

from momently.deliver.store_memory import MemoryOutboxStore
from momently.deliver.store_sqlite import SqliteOutboxStore
from momently.errors import ConfigError


def memory(url: str) -> MemoryOutboxStore:
    """``memory://``: the in-memory outbox."""
    return MemoryOutboxStore()


def sqlite(url: str) -> SqliteOutboxStore:
    """``sqlite:///path/to/outbox.db?synchronous=FULL``: the embedded outbox."""
    parsed = urlparse(url)
    path = parsed.path if not parsed.netloc else parsed.netloc + parsed.path
    if not path:
        raise ConfigError(f"{url!r} names no file; use sqlite:///path/to/outbox.db")
    synchronous = parse_qs(parsed.query).get("synchronous", ["FULL"])[-1].upper()
    if synchronous not in ("OFF", "NORMAL", "FULL", "EXTRA"):
        raise ConfigError(f"synchronous in {url!r} must be OFF, NORMAL, FULL or EXTRA")
    return SqliteOutboxStore(path, synchronous=synchronous)
