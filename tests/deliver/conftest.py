"""Delivery fixtures: a fake clock and every outbox store."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from momently.clock import FakeClock
from momently.deliver.store_memory import MemoryOutboxStore
from momently.deliver.store_sqlite import SqliteOutboxStore
from momently.deliver.types import OutboxStore
from momently.store.postgres import PostgresOutboxStore
from tests.deliver.servers import Recorder, http_server
from tests.postgres import cluster

START = 1_790_000_000_000

StoreFactory = Callable[[], OutboxStore]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """Opens the store under test; on SQLite (PostgreSQL) each call reopens the same file
    (schema): a restart."""
    opened: list[OutboxStore] = []
    memory = MemoryOutboxStore()

    def open_store() -> OutboxStore:
        store: OutboxStore
        if request.param == "memory":
            store = memory
        elif request.param == "sqlite":
            store = SqliteOutboxStore(tmp_path / "outbox.db")
        else:
            store = PostgresOutboxStore(cluster().url(tmp_path))
        opened.append(store)
        return store

    yield open_store
    for store in opened:
        store.close()


@pytest.fixture
def store(store_factory: StoreFactory) -> OutboxStore:
    return store_factory()


@pytest.fixture
def http() -> Iterator[Recorder]:
    with http_server() as recorder:
        yield recorder
