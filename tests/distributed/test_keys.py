"""Created keys on ingest nodes: the key table in PostgreSQL (``momently keys --store``).

The key table's contract, run on the embedded SQLite table and on PostgreSQL alike;
then keys made with the CLI against PostgreSQL, checked by an ingest node built as
``momently serve --log … --store postgresql://…`` builds it, with the embedded
server's scopes, sources, rate limits and revocation at the next request.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient

from momently.auth.keys import FILE, KeyStore, KeyTable, digest
from momently.cli import main
from momently.config import Settings
from momently.distributed.command import ingest_node
from momently.distributed.log import EventLog
from momently.errors import ConfigError
from momently.events import Event, decode_event
from momently.store.postgres.connect import Target
from momently.store.postgres.keys import RETRY_S, PostgresKeyStore, key_table_url
from momently.web.auth import Access
from tests.conftest import ADMIN_KEY, WRITE_KEY
from tests.postgres import Cluster
from tests.web.test_auth import bearer

pytestmark = [pytest.mark.slow, pytest.mark.integration]
_installs = itertools.count(1)
_databases = itertools.count(1)  # a database of its own for each run of the retry test


@pytest.fixture(params=["sqlite", "postgresql"])
def table(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[KeyTable]:
    """The embedded key table and distributed mode's, for the one contract."""
    if request.param == "sqlite":
        found: KeyTable = KeyStore(tmp_path / FILE)
    else:
        postgres: Cluster = request.getfixturevalue("postgres")
        found = PostgresKeyStore(postgres.url())
    try:
        yield found
    finally:
        found.close()


def test_the_key_table_contract(table: KeyTable) -> None:
    admin, token = table.create("admin", scopes=["read", "privacy"], now_ms=10, rate=5, burst=2)
    write, write_token = table.create("write", source="ios-app", now_ms=20)
    assert token.startswith("mk_a_") and write_token.startswith("mk_w_")
    assert admin.hint == token[:9] and admin.scopes == {"read", "privacy"}
    assert table.find(token) == admin
    assert table.find(write_token) == write and write.source == "ios-app"
    assert (admin.rate, admin.burst) == (5, 2)
    assert table.list() == [admin, write]  # oldest first
    assert table.find("mk_a_" + "x" * 40) is None and table.find("") is None
    assert table.find("x" * 10_000) is None  # longer than any token: not looked up
    revoked = table.revoke(admin.id, now_ms=30)
    assert revoked.revoked_ms == 30
    assert table.find(token) is None  # refused from now on
    assert table.revoke(admin.id, now_ms=40).revoked_ms == 30  # the first revocation holds
    assert [k.revoked_ms for k in table.list()] == [30, None]  # listed, not deleted
    with pytest.raises(ConfigError, match="no key 'key_nope'"):
        table.revoke("key_nope", now_ms=50)
    with pytest.raises(ConfigError, match="at least one --scope"):
        table.create("admin", now_ms=60)
    with pytest.raises(ConfigError, match="--source"):
        table.create("write", now_ms=60)
    assert len(table.list()) == 2  # nothing written by a refused create


def test_postgresql_keeps_the_digest_never_the_token(postgres: Cluster) -> None:
    url = postgres.url()
    with PostgresKeyStore(url) as table:
        _, token = table.create("admin", scopes=["read"], now_ms=1)
        _, write = table.create("write", source="web", now_ms=2)
    target = Target(url)
    with psycopg.connect(target.conninfo) as conn:
        rows = conn.execute(f"SELECT * FROM {target.schema}.api_keys").fetchall()  # noqa: S608
        digests = conn.execute(f"SELECT digest FROM {target.schema}.api_keys").fetchall()
    text = repr(rows)
    assert len(rows) == 2
    assert token not in text and write not in text
    assert token[9:] not in text  # not even the part after the hint
    assert {bytes(d) for (d,) in digests} == {digest(token), digest(write)}


def test_a_lazy_key_table_that_could_not_open_tries_again_later(postgres: Cluster) -> None:
    """An ingest node's table opens in the background; one that failed (its database not
    there yet) is tried again at a use :data:`RETRY_S` after the attempt began, on the
    table's clock, and not before."""
    database = f"keys_later_{next(_databases)}"
    now = [50.0]
    with PostgresKeyStore(
        postgres.url_for_database(database) + "?schema=keys", lazy=True, monotonic=lambda: now[0]
    ) as table:
        assert not table.opened(30)  # tried, in the background, and failed
        with psycopg.connect(postgres.url_for_database("postgres"), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {database}")
        now[0] += RETRY_S / 2
        with pytest.raises(psycopg.OperationalError, match="did not answer"):
            table.list()  # too soon: not tried again
        assert not table.opened(0)
        now[0] += RETRY_S / 2
        with contextlib.suppress(psycopg.OperationalError):
            table.list()  # tried again, in the background: it may still be migrating
        assert table.opened(30)
        assert table.list() == []
        key, token = table.create("write", source="web", now_ms=1)
        assert table.find(token) == key


def test_the_key_schema_sits_beside_the_partitions_schemas() -> None:
    template = "postgresql://db/momently?schema=shop_p{partition}"
    assert Target(key_table_url(template)).schema == "shop_pkeys"
    assert key_table_url("postgresql://db/momently?schema=mykeys").endswith("schema=mykeys")
    with pytest.raises(ConfigError, match="postgresql"):
        key_table_url("sqlite:///data/p{partition}.db")


# -- on an ingest node --------------------------------------------------------------------------


@pytest.fixture
def install(postgres: Cluster) -> str:
    """The partitions' store URL of an installation of this test's own."""
    n = next(_installs)
    return f"{postgres.url_for_database('momently')}?schema=ak{n}_p{{partition}}"


@pytest.fixture
def node(install: str, log_url: Callable[..., str], tmp_path: Path) -> Iterator[TestClient]:
    """An ingest node as ``momently serve --log … --store <install>`` builds it."""
    settings = Settings(
        data_dir=tmp_path, write_keys=(WRITE_KEY,), admin_key=ADMIN_KEY, store=install
    )
    with TestClient(ingest_node(settings, log_url(partitions=2))) as client:
        access = client.app.state.access  # type: ignore[attr-defined]
        assert isinstance(access, Access) and isinstance(access.store, PostgresKeyStore)
        assert access.store.opened(60)  # opened in the background (a node never waits)
        yield client


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> list[str]:
    """``momently keys …`` as the operator runs it; its output lines."""
    assert main(["keys", *argv]) == 0, capsys.readouterr().err
    return capsys.readouterr().out.splitlines()


def stream_events(client: TestClient) -> list[Event]:
    """Every event in the node's stream (no worker reads it here)."""
    log: EventLog = client.app.state.writer.log  # type: ignore[attr-defined]

    async def read() -> list[Event]:
        info = await log.js.stream_info(log.settings.stream)
        found = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            msg = await log.js.get_msg(log.settings.stream, seq=seq)
            assert msg.data is not None
            found.append(decode_event(msg.data))
        return found

    assert client.portal is not None
    return client.portal.call(read)


def test_cli_keys_in_postgresql_hold_on_an_ingest_node(
    node: TestClient, install: str, capsys: pytest.CaptureFixture[str]
) -> None:
    access = node.app.state.access  # type: ignore[attr-defined]
    assert access.store.schema == Target(key_table_url(install)).schema
    reader_line, reader = cli(capsys, "create", "--store", install, "--scope", "read")
    writer_line, writer = cli(
        capsys, "create", "--store", install, "--kind", "write", "--source", "ios-app"
    )
    # An admin key with the read scope reads, and is refused what it lacks.
    assert node.get("/api/stats", headers=bearer(reader)).status_code == 200
    world = {"name": "Hot doughnuts", "kind": "store", "place": "nowhere"}
    refused = node.post("/api/world-events", json=world, headers=bearer(reader))
    assert refused.status_code == 403, refused.text
    assert "'write' scope" in refused.json()["reason"]
    assert node.get("/api/privacy/export/c1", headers=bearer(reader)).status_code == 403
    # A write key ingests under its source, and administers nothing.
    batch = {"batch": [{"type": "track", "event": "Product Viewed", "userId": "u1",
                        "messageId": "k-1"}]}  # fmt: skip
    assert node.post("/v1/batch", json=batch, auth=(writer, "")).status_code == 200
    assert [e.source for e in stream_events(node)] == ["ios-app"]
    assert node.get("/api/stats", headers=bearer(writer)).status_code == 401
    assert node.post("/v1/batch", json=batch, auth=(reader, "")).status_code == 401
    # The listing names both, never a token.
    listing = "\n".join(cli(capsys, "list", "--store", install))
    assert reader_line.split()[0] in listing and writer_line.split()[0] in listing
    assert reader not in listing and writer not in listing
    # Revoked with the CLI: refused at the node's next request.
    cli(capsys, "revoke", "--store", install, reader_line.split()[0])
    cli(capsys, "revoke", "--store", install, writer_line.split()[0])
    assert node.get("/api/stats", headers=bearer(reader)).status_code == 401
    again = {"batch": [{**batch["batch"][0], "messageId": "k-2"}]}
    answer = node.post("/v1/batch", json=again, auth=(writer, ""))
    assert answer.status_code == 401 and answer.json()["error"] == "Unauthorized"
    assert len(stream_events(node)) == 1  # nothing more written
    # The configured keys still work beside the table.
    assert node.get("/api/stats", headers=bearer(ADMIN_KEY)).status_code == 200
    assert node.post("/v1/batch", json=again, auth=(WRITE_KEY, "")).status_code == 200


def test_a_created_keys_rate_limit_holds_on_an_ingest_node(
    node: TestClient, install: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # One request per 100 s: the second, whenever it comes in a test, is over.
    argv = ["create", "--store", install, "--scope", "read", "--rate", "0.01", "--burst", "1"]
    _, token = cli(capsys, *argv)
    assert node.get("/api/stats", headers=bearer(token)).status_code == 200
    over = node.get("/api/stats", headers=bearer(token))
    assert over.status_code == 429 and over.json()["error"] == "RateLimited"
    assert int(over.headers["Retry-After"]) >= 1
    assert node.get("/api/stats", headers=bearer(ADMIN_KEY)).status_code == 200  # its own


def test_the_cli_says_what_is_wrong_with_a_store(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["keys", "list", "--store", f"sqlite:///{tmp_path}/p{{partition}}.db"]) == 2
    assert "postgresql" in capsys.readouterr().err
    dead = "postgresql://nobody@127.0.0.1:1/momently?schema=p{partition}&connect_timeout=1"
    assert main(["keys", "list", "--store", dead]) == 2
    assert "could not open the key table" in capsys.readouterr().err


def test_a_node_whose_postgresql_is_down_ingests_with_its_configured_keys(
    log_url: Callable[..., str], tmp_path: Path
) -> None:
    dead = "postgresql://postgres@127.0.0.1:1/momently?schema=dead_p{partition}"
    settings = Settings(data_dir=tmp_path, write_keys=(WRITE_KEY,), admin_key=ADMIN_KEY, store=dead)
    with TestClient(ingest_node(settings, log_url(partitions=2))) as node:
        access = node.app.state.access  # type: ignore[attr-defined]
        assert not access.store.opened(30)  # tried, in the background, and failed
        batch = {"batch": [{"type": "track", "event": "Product Viewed", "userId": "u1",
                            "messageId": "d-1"}]}  # fmt: skip
        assert node.post("/v1/batch", json=batch, auth=(WRITE_KEY, "")).status_code == 200
        assert node.post("/api/live/token", headers=bearer(ADMIN_KEY)).status_code == 200
        # A key only the table could know: a 503 to retry, never a 500 or a 401.
        unknown = node.post("/v1/batch", json=batch, auth=("mk_w_" + "x" * 43, ""))
        assert unknown.status_code == 503, unknown.text
        assert unknown.headers["Retry-After"] == "1"
        assert node.get("/api/stats", headers=bearer("mk_a_" + "x" * 43)).status_code == 503
