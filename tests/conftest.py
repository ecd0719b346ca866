"""Shared fixtures: an in-process app, and a real ``momently serve`` on a free loopback port."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings

from momently.clock import FakeClock
from momently.config import Settings
from momently.store.sqlite import SqliteStore
from momently.web.app import create_app
from tests.nats_server import nats_server  # noqa: F401 (fixture)
from tests.ports import free_port
from tests.postgres import _stop_postgres_at_session_end, postgres  # noqa: F401 (fixtures)

# Property tests are deterministic and database-free: the same examples on every run.
settings.register_profile(
    "momently",
    max_examples=100,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("momently")

WRITE_KEY = "test-write-key"
ADMIN_KEY = "test-admin-key"
START = 1_790_000_000_000  # 2026-09-21T14:13:20Z, the fake clock's start


@dataclass
class App:
    """An in-process engine on a SQLite store, driven through Starlette's TestClient."""

    client: TestClient
    store: SqliteStore
    clock: FakeClock
    admin: dict[str, str] = field(default_factory=lambda: {"Authorization": f"Bearer {ADMIN_KEY}"})

    def event_count(self) -> int:
        return self.store.stats()["events"]


@pytest.fixture
def app_factory(tmp_path: Path) -> Iterator[Callable[..., App]]:
    clients: list[TestClient] = []

    def make(**overrides: object) -> App:
        settings = Settings(
            data_dir=tmp_path / f"app{len(clients)}",
            write_keys=(WRITE_KEY,),
            admin_key=ADMIN_KEY,
            **overrides,  # type: ignore[arg-type]
        )
        store = SqliteStore(settings.data_dir / "momently.db", synchronous="NORMAL")
        clock = FakeClock(START)
        client = TestClient(create_app(settings, store=store, clock=clock))
        client.__enter__()
        clients.append(client)
        return App(client, store, clock)

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def app(app_factory: Callable[..., App]) -> App:
    return app_factory()


@dataclass
class Server:
    """A real ``momently serve`` process on a free loopback port."""

    url: str
    port: int
    data_dir: Path
    process: subprocess.Popen[bytes]
    write_key: str = WRITE_KEY
    admin_key: str = ADMIN_KEY

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_key}"}

    def kill(self) -> None:
        """SIGKILL: no shutdown hook runs, as in a crash."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)


def start_server(data_dir: Path, port: int | None = None, *extra: str) -> Server:
    port = port or free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOMENTLY_")}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "momently.cli",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
            "--write-key",
            WRITE_KEY,
            "--admin-key",
            ADMIN_KEY,
            *extra,
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:  # readiness, not timing: poll health until the server answers
        if process.poll() is not None:
            err = process.stderr.read().decode() if process.stderr else ""
            raise RuntimeError(f"momently serve exited with {process.returncode}: {err}")
        try:
            if httpx.get(url + "/api/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError("momently serve did not become ready in 60 s")
        time.sleep(0.05)
    return Server(url, port, data_dir, process)


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    servers: list[Server] = []

    def make(data_dir: Path | None = None, port: int | None = None) -> Server:
        server = start_server(data_dir or tmp_path / f"server{len(servers)}", port)
        servers.append(server)
        return server

    yield make
    for server in servers:
        if server.process.poll() is None:
            server.process.terminate()
            try:
                server.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
        if server.process.stderr:
            server.process.stderr.close()


@pytest.fixture
def server(server_factory: Callable[..., Server]) -> Server:
    return server_factory()
