"""A real PostgreSQL server for the tests: one cluster per session, a fresh schema per store.

The cluster is started on first use (by a fixture or by a state machine that
needs it) on a free loopback port, from the Debian server binaries
(``postgresql`` in the Makefile's system packages), and stopped when the test
session ends. ``initdb`` refuses to run as root, so under root (CI, ``make
test``) the server runs as the ``postgres`` user the Debian package creates.
The server is a child of the test process and is told to stop when its parent
dies, so an interrupted run leaves no server behind.

Each store gets a schema of its own in one database (``?schema=`` in the URL),
so a test needs no ``CREATE DATABASE`` and no cluster of its own; the same key
(a test's directory) names the same schema again, which is how a test
reopens a store after a simulated restart. Durability is switched off
(``fsync=off``) unless asked for: these tests check behaviour, not the disk.
"""

from __future__ import annotations

import atexit
import ctypes
import glob
import itertools
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import psycopg
import pytest

from tests.ports import free_port

DATABASE: Final = "momently"
_OWNER: Final = "postgres"
_PR_SET_PDEATHSIG: Final = 1
# Tests check behaviour, not the disk: no fsync (a benchmark asks for durable=True).
_FAST: Final = ("-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")


def _bindir() -> Path:
    found = os.environ.get("MOMENTLY_PG_BINDIR")
    if found:
        return Path(found)
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3])
    )
    if not candidates:
        raise RuntimeError(
            "no PostgreSQL server binaries in /usr/lib/postgresql/*/bin: "
            "install Debian's postgresql package (make system)"
        )
    return Path(candidates[-1]).parent


class Cluster:
    """One running PostgreSQL server in a temporary directory."""

    def __init__(self, *, durable: bool = False, settings: tuple[str, ...] = ()) -> None:
        """``settings``: server settings (``"wal_recycle=off"``…) beside the defaults."""
        self.bindir = _bindir()
        self.base = Path(tempfile.mkdtemp(prefix="momently-pg-"))
        self.data = self.base / "data"
        self.port = free_port()
        self._owner: pwd.struct_passwd | None = None
        if os.geteuid() == 0:  # initdb and postgres refuse root
            self._owner = pwd.getpwnam(_OWNER)
            os.chown(self.base, self._owner.pw_uid, self._owner.pw_gid)
        self._names = itertools.count(1)
        self._schemas: dict[Path, str] = {}  # a test's directory -> the schema it uses
        subprocess.run(
            [
                str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres",
                "--auth=trust", "-E", "UTF8", "--no-locale", "--no-sync", "--no-instructions",
            ],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120,
            preexec_fn=self._as_owner,
        )  # fmt: skip
        self._log = (self.base / "server.log").open("wb")
        self._durable = durable
        self._settings = [arg for setting in settings for arg in ("-c", setting)]
        self._start()
        with psycopg.connect(self.url_for_database("postgres"), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {DATABASE}")

    def _start(self) -> None:
        # The server is this process's child, not a daemon (pg_ctl): it dies with the
        # test run however that ends, a kill -9 included (see _as_owner).
        self.process = subprocess.Popen(
            [
                str(self.bindir / "postgres"), "-D", str(self.data), "-p", str(self.port),
                "-h", "127.0.0.1", "-k", str(self.base),
                "-c", "max_connections=400", "-c", "shared_buffers=32MB",
                *([] if self._durable else _FAST),
                *self._settings,
            ],
            stdout=self._log, stderr=subprocess.STDOUT, preexec_fn=self._as_owner,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while True:  # readiness, not timing: poll until the server accepts a connection
            try:
                psycopg.connect(self.url_for_database("postgres")).close()
                return
            except psycopg.OperationalError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"PostgreSQL did not start; see {self.base}") from None
                time.sleep(0.05)

    def restart(self) -> None:
        """Stop the server at once (as a crash would) and start it again on the same port."""
        self.process.send_signal(signal.SIGQUIT)
        self.process.wait(timeout=60)
        self._start()

    def _as_owner(self) -> None:
        """In the child, before exec: become the owner, and die with the parent."""
        if self._owner is not None:
            os.setgid(self._owner.pw_gid)
            os.setuid(self._owner.pw_uid)
        # After setuid, which clears it: SIGINT (a fast shutdown) when the parent dies.
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGINT)

    def url_for_database(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def url(self, key: Path | None = None) -> str:
        """A store URL in a schema of its own: the same ``key`` names the same schema.

        A new key takes over, emptied, the schema of a key whose directory is gone (its
        test has ended), and creates one only when there is none: emptying a schema is
        one statement, creating one runs every migration.
        """
        if key is None:
            return self._url(f"s{next(self._names)}")
        if key in self._schemas:
            return self._url(self._schemas[key])
        for old, schema in list(self._schemas.items()):
            if not old.exists():
                del self._schemas[old]
                self._empty(schema)
                break
        else:
            schema = f"k{next(self._names)}"
        self._schemas[key] = schema
        return self._url(schema)

    def _url(self, schema: str) -> str:
        return f"{self.url_for_database(DATABASE)}?schema={schema}"

    def _empty(self, schema: str) -> None:
        with psycopg.connect(self.url_for_database(DATABASE), autocommit=True) as conn:
            tables = [
                f"{schema}.{name}"
                for (name,) in conn.execute(
                    "SELECT tablename FROM pg_tables WHERE schemaname = %s"
                    " AND tablename NOT LIKE '%%yoyo%%'",
                    (schema,),
                )
            ]
            with conn.transaction():
                conn.execute(f"TRUNCATE {', '.join(tables)}")
                conn.execute(f"INSERT INTO {schema}.log_head (id, seq) VALUES (TRUE, 0)")

    def stop(self) -> None:
        try:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGQUIT)  # immediate: a throwaway cluster
                try:
                    self.process.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(timeout=60)
        finally:
            self._log.close()
            shutil.rmtree(self.base, ignore_errors=True)


_cluster: Cluster | None = None


def cluster() -> Cluster:
    """The session's cluster, started on first use."""
    global _cluster
    if _cluster is None:
        _cluster = Cluster()
        atexit.register(stop_cluster)  # if the session fixture never ran (a plain script)
    return _cluster


def stop_cluster() -> None:
    """Stop the session's cluster, if one was started."""
    global _cluster
    if _cluster is not None:
        found, _cluster = _cluster, None
        found.stop()


@pytest.fixture(scope="session", autouse=True)
def _stop_postgres_at_session_end() -> Iterator[None]:
    """Starts nothing; stops the cluster at the end if a test started one."""
    yield
    stop_cluster()


@pytest.fixture(scope="session")
def postgres() -> Cluster:
    """The session's PostgreSQL cluster (``postgres.url()`` is a fresh schema's store URL)."""
    return cluster()
