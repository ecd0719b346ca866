"""Storage backends behind one Protocol (:class:`momently.types.Store`), chosen by URL.

>>> store = open_store("memory://")
>>> store.stats()["events"]
0
"""

from __future__ import annotations

import importlib
from typing import Final
from urllib.parse import urlparse

from momently.errors import ConfigError
from momently.types import Store

# Lazy "module:Class" registry: a backend's driver is imported only when used.
BACKENDS: Final = {
    "memory": "momently.store.memory:MemoryStore",
    "sqlite": "momently.store.sqlite:SqliteStore",
}


def open_store(url: str) -> Store:
    """Open the store a URL names: ``memory://`` or ``sqlite:///path/to/file.db``."""
    scheme = urlparse(url).scheme
    target = BACKENDS.get(scheme)
    if target is None:
        raise ConfigError(f"no store backend for {url!r}; known: {', '.join(sorted(BACKENDS))}")
    module_name, class_name = target.split(":")
    backend = getattr(importlib.import_module(module_name), class_name)
    store: Store = backend.from_url(url)
    return store
