"""What only the PostgreSQL backends promise: URLs, concurrent workers, fencing, migrations."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator

import psycopg
import pytest

from momently.deliver.records import Entry
from momently.errors import ConfigError, Fenced
from momently.moments.records import MomentBatch
from momently.store import open_moment_store, open_outbox_store, open_store
from momently.store.postgres import PostgresMomentStore, PostgresOutboxStore, PostgresStore
from momently.store.postgres.connect import Target
from momently.types import Changes, Fence
from tests.deliver.fakes import message
from tests.postgres import Cluster
from tests.test_store_contract import event

pytestmark = pytest.mark.slow
START = 1_790_000_000_000


def entry(n: int, due: int = START) -> Entry:
    msg = message(f"de-{n}", "hook", f"c{n % 7}")
    return Entry(
        key=msg.key, decision_id=msg.decision_id, customer_id=msg.customer_id, channel="hook",
        state="pending", due_ms=due, send_at_ms=due, created_ms=START, updated_ms=START,
        message=msg,
    )  # fmt: skip


@pytest.fixture
def outbox_url(postgres: Cluster) -> str:
    return postgres.url()


@pytest.fixture
def outbox(outbox_url: str) -> Iterator[PostgresOutboxStore]:
    with PostgresOutboxStore(outbox_url) as store:
        yield store


def test_urls_open_every_store_through_the_registries(postgres: Cluster) -> None:
    url = postgres.url()
    for opened in (open_store(url), open_moment_store(url), open_outbox_store(url)):
        assert isinstance(opened, PostgresStore | PostgresMomentStore | PostgresOutboxStore)
        opened.close()
    with pytest.raises(ConfigError, match="schema"):
        Target(postgres.url_for_database("momently") + "?schema=Robert'); DROP TABLE x;--")
    with pytest.raises(ConfigError, match="pool_max"):
        Target(postgres.url_for_database("momently") + "?pool_max=lots")
    with pytest.raises(ConfigError):
        Target("mysql://localhost/momently")


def test_the_schemas_of_one_database_are_separate_stores(postgres: Cluster) -> None:
    a, b = PostgresStore(postgres.url()), PostgresStore(postgres.url())
    try:
        assert a.commit([("c1", event(1))], Changes()) == [1]
        assert b.stats()["events"] == 0
        assert b.commit([("c1", event(1))], Changes()) == [1]  # the same message: another log
    finally:
        a.close()
        b.close()


def test_migrations_are_recorded_and_run_once(postgres: Cluster) -> None:
    url = postgres.url()
    PostgresStore(url).close()
    target = Target(url)
    with psycopg.connect(target.conninfo) as conn:
        applied = conn.execute(
            f"SELECT migration_id FROM {target.schema}._yoyo_migration ORDER BY migration_id"
        ).fetchall()
    assert [m for (m,) in applied] == [
        "0001_log", "0002_moments", "0003_decisions", "0004_outbox", "0005_fences_privacy",
        "0006_keys",
    ]  # fmt: skip


def test_two_workers_never_claim_the_same_entry(
    outbox: PostgresOutboxStore, outbox_url: str
) -> None:
    """Threads, each with a store (and connections) of its own, race for 200 due sends."""
    for n in range(200):
        outbox.put(entry(n, due=START + n % 5))
    claimed: Counter[str] = Counter()
    lock = threading.Lock()
    start = threading.Barrier(4)

    def work(name: str) -> None:
        with PostgresOutboxStore(outbox_url) as mine:
            start.wait()
            while taken := mine.claim(now_ms=START + 10, lease_ms=60_000, limit=7, worker=name):
                with lock:
                    claimed.update(e.key for e in taken)
                for e in taken:
                    assert mine.finish(e.key, e.claims, state="sent", now_ms=START + 10)

    workers = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(4)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in workers)
    assert len(claimed) == 200
    assert set(claimed.values()) == {1}  # every send claimed exactly once
    assert outbox.counts()["sent"] == 200


def test_a_claim_skips_rows_another_worker_has_locked(
    outbox: PostgresOutboxStore, outbox_url: str
) -> None:
    """While one transaction holds the first due row, a claim takes the next, not waits."""
    first, second = entry(1, due=START), entry(2, due=START + 1)
    outbox.put(first)
    outbox.put(second)
    target = Target(outbox_url)
    taken: list[Entry] = []
    with psycopg.connect(target.conninfo, options=f"-c search_path={target.schema}") as holder:
        holder.execute("SELECT key FROM outbox WHERE key = %s FOR UPDATE", (first.key,))
        claimer = threading.Thread(
            target=lambda: taken.extend(
                outbox.claim(now_ms=START + 5, lease_ms=100, limit=10, worker="w")
            )
        )
        claimer.start()
        claimer.join(timeout=60)
        waited = claimer.is_alive()  # a claim that waits on the lock ends only after it
    claimer.join(timeout=60)
    assert not waited
    assert [e.key for e in taken] == [second.key]
    again = outbox.claim(now_ms=START + 5, lease_ms=100, limit=10, worker="w")
    assert [e.key for e in again] == [first.key]


def test_a_planned_send_is_claimed_only_when_due(outbox: PostgresOutboxStore) -> None:
    later = entry(1, due=START + 3_600_000)
    outbox.put(later)
    assert outbox.claim(now_ms=START, lease_ms=100, limit=10, worker="w") == []
    assert outbox.next_due_ms() == START + 3_600_000
    [taken] = outbox.claim(now_ms=START + 3_600_000, lease_ms=100, limit=10, worker="w")
    assert (taken.key, taken.claims, taken.recovered) == (later.key, 1, False)


def test_concurrent_commits_get_gap_free_positions_in_order(postgres: Cluster) -> None:
    url = postgres.url()
    stores = [PostgresStore(url) for _ in range(3)]
    seqs: list[int] = []
    lock = threading.Lock()

    def write(store: PostgresStore, offset: int) -> None:
        for n in range(20):
            got = store.commit(
                [("c1", event(offset + 2 * n)), ("c2", event(offset + 2 * n + 1))], Changes()
            )
            with lock:
                seqs.extend(got)

    threads = [
        threading.Thread(target=write, args=(store, 1000 * (i + 1)))
        for i, store in enumerate(stores)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    try:
        assert sorted(seqs) == list(range(1, 121))
        assert [r.seq for r in stores[0].read_log(0, 1000)] == list(range(1, 121))
    finally:
        for store in stores:
            store.close()


def test_an_older_fencing_token_writes_nothing(postgres: Cluster) -> None:
    url = postgres.url()
    store, moments = PostgresStore(url), PostgresMomentStore(url)
    try:
        store.commit([("c1", event(1))], Changes(fence=Fence(2, 10)))
        with pytest.raises(Fenced):
            store.commit([("c1", event(2))], Changes(fence=Fence(1, 11)))
        assert store.stats()["events"] == 1
        assert store.fence() == Fence(2, 10)
        store.commit([("c1", event(3))], Changes(fence=Fence(3, 12)))
        assert store.fence() == Fence(3, 12)

        moments.commit(MomentBatch(checkpoint=5, fence=4))
        with pytest.raises(Fenced):
            moments.commit(MomentBatch(checkpoint=9, fence=3))
        assert moments.checkpoint() == 5
    finally:
        store.close()
        moments.close()


def test_checkpoints_are_named_so_partitions_keep_their_own(postgres: Cluster) -> None:
    url = postgres.url()
    p1 = open_moment_store(url + "&checkpoint=p1")
    p2 = open_moment_store(url + "&checkpoint=p2")
    try:
        p1.commit(MomentBatch(checkpoint=7))
        p2.commit(MomentBatch(checkpoint=3))
        assert (p1.checkpoint(), p2.checkpoint()) == (7, 3)
    finally:
        p1.close()
        p2.close()


def test_a_server_restart_loses_no_commit_and_the_stores_reconnect() -> None:
    """A cluster of its own, stopped at once (immediate: as a crash) and started again;
    a stale pooled connection fails once, as the connect module says, then the pool heals."""
    own = Cluster(durable=True)
    try:
        url = own.url()
        store, outbox = PostgresStore(url), PostgresOutboxStore(url)
        try:
            store.commit([("c1", event(1))], Changes())
            outbox.put(entry(1))
            own.restart()
            for attempt in range(3):
                try:
                    assert store.commit([("c1", event(2))], Changes()) == [2]
                    break
                except psycopg.OperationalError:
                    assert attempt < 2
            for attempt in range(3):
                try:
                    [taken] = outbox.claim(now_ms=START, lease_ms=100, limit=5, worker="w")
                    break
                except psycopg.OperationalError:
                    assert attempt < 2
            assert taken.key == entry(1).key
            assert [r.seq for r in store.read_log(0, 10)] == [1, 2]
        finally:
            store.close()
            outbox.close()
    finally:
        own.stop()
