"""Storage backends behind one Protocol (:class:`momently.types.Store`), chosen by URL.

>>> store = open_store("memory://")
>>> store.stats()["events"]
0
"""

from __future__ import annotations

import importlib
from typing import Any, Final
from urllib.parse import urlparse

from momently.errors import ConfigError
from momently.types import MomentStore, Store

# Lazy "module:Class" registry: a backend's driver is imported only when used.
BACKENDS: Final = {
    "memory": "momently.store.memory:MemoryStore",
    "sqlite": "momently.store.sqlite:SqliteStore",
}
MOMENT_BACKENDS: Final = {
    "memory": "momently.store.moments_memory:MemoryMomentStore",
    "sqlite": "momently.store.moments_sqlite:SqliteMomentStore",
}


def _backend(registry: dict[str, str], url: str) -> Any:
    scheme = urlparse(url).scheme
    target = registry.get(scheme)
    if target is None:
        raise ConfigError(f"no store backend for {url!r}; known: {', '.join(sorted(registry))}")
    module_name, class_name = target.split(":")
    return getattr(importlib.import_module(module_name), class_name).from_url(url)


def open_store(url: str) -> Store:
    """Open the store a URL names: ``memory://`` or ``sqlite:///path/to/file.db``."""
    store: Store = _backend(BACKENDS, url)
    return store


def open_moment_store(url: str) -> MomentStore:
    """Open the moment store a URL names: ``memory://`` or ``sqlite:///path/to/moments.db``."""
    store: MomentStore = _backend(MOMENT_BACKENDS, url)
    return store
