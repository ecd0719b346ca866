"""Stores in many schemas of one database share one pool per process (a worker holds a
schema per partition: a pool per store ran past PostgreSQL's ``max_connections``)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from momently.store.postgres import PostgresMomentStore, PostgresStore
from momently.types import Changes
from tests.postgres import Cluster
from tests.test_store_contract import event

pytestmark = pytest.mark.slow
SCHEMAS = 12


def client_connections(postgres: Cluster, application: str) -> int:
    with psycopg.connect(postgres.url_for_database("postgres")) as conn:
        row = conn.execute(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE application_name = %s", (application,)
        ).fetchone()
    return int(row[0]) if row is not None else 0


def server_lets_go(postgres: Cluster, application: str, within_s: float = 10.0) -> bool:
    """Whether the server's count of the application's connections falls to 0 within
    ``within_s``: a backend leaves ``pg_stat_activity`` when its process exits, a moment
    after the client's close (a full run saw one still there right after)."""
    deadline = time.monotonic() + within_s
    while client_connections(postgres, application):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)  # polling another process's state, not waiting out a time
    return True


def test_many_schemas_share_a_bounded_pool_and_stay_apart(postgres: Cluster) -> None:
    app = "momently-pool-test"
    urls = [
        f"{postgres.url()}&pool_max=3&application_name={app}"  # a schema each
        for _ in range(SCHEMAS)
    ]
    stores = [PostgresStore(url) for url in urls]
    moments = [PostgresMomentStore(url) for url in urls]
    try:

        def write(n: int) -> list[int]:
            # Interleaved across threads, so one connection serves several schemas in turn.
            store = stores[n]
            seqs: list[int] = []
            for k in range(5):
                seqs += store.commit([(f"c{n}", event(100 * n + k))], Changes())
            return seqs

        with ThreadPoolExecutor(6) as pool:
            results = list(pool.map(write, range(SCHEMAS)))
        # Each schema numbered its own log from 1: no write went to another schema.
        assert results == [[1, 2, 3, 4, 5]] * SCHEMAS
        for n, store in enumerate(stores):
            records = store.read_log(0, 100)
            assert [r.event.message_id for r in records] == [f"m{100 * n + k}" for k in range(5)]
            assert moments[n].checkpoint() == 0
        # 24 stores, at most pool_max connections to the server for all of them.
        assert 1 <= client_connections(postgres, app) <= 3
        # Every store but one let go: the pool stays open for that one.
        for moment_store in moments:
            moment_store.close()
        for store in stores[:-1]:
            store.close()
        assert stores[-1].read_log(0, 1)
        assert client_connections(postgres, app) >= 1
        stores[-1].close()
        assert server_lets_go(postgres, app)  # the last store closed the pool
    finally:
        for moment_store in moments:
            moment_store.close()
        for store in stores:
            store.close()  # a second close is a no-op
