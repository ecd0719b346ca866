"""Real nats-server processes with JetStream on loopback, started and stopped by fixtures.

The session's server (``nats_server``) is a fixture of the whole suite (imported by
``tests/conftest.py``): the distributed tests and the end-to-end tests run in
distributed mode share it, each with streams of its own.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.ports import free_port

NATS = shutil.which("nats-server")
needs_nats = pytest.mark.skipif(NATS is None, reason="nats-server is not installed (make system)")


def _wait_listening(port: int, proc: subprocess.Popen[bytes], timeout_s: float = 15.0) -> None:
    """Until the server accepts connections (start-up polling, not a timing sleep)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"nats-server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nats-server did not listen on {port} within {timeout_s}s")


@dataclass
class NatsServer:
    """One nats-server; ``url`` is the log URL a test's stream goes in (one stream per test)."""

    port: int
    store_dir: Path
    proc: subprocess.Popen[bytes]
    args: list[str]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self, kill: bool = False) -> None:
        if self.proc.poll() is None:
            if kill:
                self.proc.kill()
            else:
                self.proc.terminate()
            self.proc.wait(timeout=15)


def start_server(store_dir: Path, extra: list[str] | None = None) -> NatsServer:
    assert NATS is not None
    port = free_port()
    args = [NATS, "-js", "-sd", str(store_dir), "-p", str(port), "-a", "127.0.0.1", *(extra or [])]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_listening(port, proc)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return NatsServer(port, store_dir, proc, args)


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    if NATS is None:
        pytest.skip("nats-server is not installed (make system)")
    server = start_server(tmp_path_factory.mktemp("nats"))
    yield server
    server.stop()
