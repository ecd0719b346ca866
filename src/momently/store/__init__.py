"""Storage backends behind one Protocol (:class:`momently.types.Store`), chosen by URL.

>>> store = open_store("memory://")
>>> store.stats()["events"]
0
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlparse

from momently.errors import ConfigError
from momently.types import MomentStore, Store

if TYPE_CHECKING:  # delivery imports stores; a type alone need not import delivery
    from momently.deliver.types import OutboxStore

# Lazy "module:Class" registry: a backend's driver is imported only when used.
BACKENDS: Final = {
    "memory": "momently.store.memory:MemoryStore",
    "sqlite": "momently.store.sqlite:SqliteStore",
    "postgresql": "momently.store.postgres.log:PostgresStore",
    "postgres": "momently.store.postgres.log:PostgresStore",
}
MOMENT_BACKENDS: Final = {
    "memory": "momently.store.moments_memory:MemoryMomentStore",
    "sqlite": "momently.store.moments_sqlite:SqliteMomentStore",
    "postgresql": "momently.store.postgres.moments:PostgresMomentStore",
    "postgres": "momently.store.postgres.moments:PostgresMomentStore",
}
# An entry is a class with ``from_url`` or a function of the URL.
OUTBOX_BACKENDS: Final = {
    "memory": "momently.store.outbox_urls:memory",
    "sqlite": "momently.store.outbox_urls:sqlite",
    "postgresql": "momently.store.postgres.outbox:PostgresOutboxStore",
    "postgres": "momently.store.postgres.outbox:PostgresOutboxStore",
}


def _backend(registry: dict[str, str], url: str) -> Any:
    scheme = urlparse(url).scheme
    target = registry.get(scheme)
    if target is None:
        raise ConfigError(f"no store backend for {url!r}; known: {', '.join(sorted(registry))}")
    module_name, class_name = target.split(":")
    found = getattr(importlib.import_module(module_name), class_name)
    return getattr(found, "from_url", found)(url)


def open_store(url: str) -> Store:
    """Open the store a URL names: ``memory://``, ``sqlite:///path/to/file.db`` or
    ``postgresql://user@host/db?schema=…`` (see :mod:`momently.store.postgres`)."""
    store: Store = _backend(BACKENDS, url)
    return store


def open_moment_store(url: str) -> MomentStore:
    """Open the moment store a URL names: ``memory://`` or ``sqlite:///path/to/moments.db``."""
    store: MomentStore = _backend(MOMENT_BACKENDS, url)
    return store


def open_outbox_store(url: str) -> OutboxStore:
    """Open the outbox a URL names: ``memory://``, ``sqlite:///path/to/outbox.db`` or
    ``postgresql://…``."""
    store: OutboxStore = _backend(OUTBOX_BACKENDS, url)
    return store
