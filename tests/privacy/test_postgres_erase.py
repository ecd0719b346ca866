"""Erasure on PostgreSQL, read as raw bytes: after ``POST /api/privacy/delete`` no file of
the cluster's data directory (tables, indexes, TOAST, free space maps, the WAL) holds any
of the customer's identifiers or trait values, once the server has written its buffers
out (a checkpoint). The erase rewrites the tables it touched (``VACUUM FULL``), so no dead
tuple keeps the rows until an autovacuum, then closes the WAL segment and checkpoints, so
a server that does not recycle its segments (``wal_recycle = off``, no archiving, no
slots: SECURITY.md) unlinks the ones that held them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.deliver.test_wiring import RigFactory
from tests.postgres import DATABASE, Cluster
from tests.privacy.test_rights import ERIN, TAG, erin_lives, someone_else

pytestmark = [pytest.mark.slow, pytest.mark.integration]


@pytest.fixture
def own_cluster() -> Iterator[Cluster]:
    """A cluster of its own: no other test's rows in the files this test reads."""
    made = Cluster(settings=("wal_recycle=off",))
    try:
        yield made
    finally:
        made.stop()


def checkpoint(cluster: Cluster) -> None:
    """Every dirty buffer written to the table files, so the scan reads what the server holds."""
    with psycopg.connect(cluster.url_for_database(DATABASE), autocommit=True) as conn:
        conn.execute("CHECKPOINT")


def scan(directory: Path, needles: list[str]) -> dict[str, list[str]]:
    """Which needles appear in which file under ``directory``, as raw bytes."""
    found: dict[str, list[str]] = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        raw = path.read_bytes()
        hits = [n for n in needles if n.encode() in raw]
        if hits:
            found[str(path.relative_to(directory))] = hits
    return found


def test_delete_leaves_no_trace_in_the_postgresql_files(
    own_cluster: Cluster, rig_factory: RigFactory, tmp_path: Path
) -> None:  # own_cluster first: it is stopped after the rig has closed its pools
    rig = rig_factory(store=own_cluster.url(tmp_path / "pg"))
    customer = erin_lives(rig)
    someone_else(rig)
    needles = [customer, *(v for k, v in ERIN.items() if k != "text"), TAG]
    checkpoint(own_cluster)
    before = scan(own_cluster.data, needles)
    assert any(name.startswith("base/") for name in before), before  # the scan finds her
    assert any(name.startswith("pg_wal/") for name in before), before  # in the WAL too
    assert set(needles) <= {n for hits in before.values() for n in hits}

    answer = rig.client.post("/api/privacy/delete", json={"id": ERIN["phone"]}, headers=rig.admin)
    assert answer.status_code == 200, answer.text
    done = answer.json()
    assert done["customers"] == 1 and done["events"] >= 5 and done["deliveries"] == 1
    checkpoint(own_cluster)
    assert scan(own_cluster.data, needles) == {}
    assert scan(rig.data_dir, needles) == {}  # nor beside it (keys, suppression)
    assert scan(own_cluster.data, ["olga.control@example.net"])  # others are untouched
    assert rig.client.get(f"/api/profiles/{ERIN['user']}", headers=rig.admin).status_code == 404
