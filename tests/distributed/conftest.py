"""The distributed tests' fixtures: the session's nats-server (from :mod:`tests.nats_server`,
a fixture of the whole suite) and a stream of each test's own on it."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest

from tests.distributed.e2e import distributed_server  # noqa: F401 (fixture)
from tests.nats_server import NATS, NatsServer, needs_nats, start_server

__all__ = ["NATS", "NatsServer", "needs_nats", "start_server"]
_streams = itertools.count(1)


@pytest.fixture
def log_url(nats_server: NatsServer) -> Callable[..., str]:
    """A log URL on the session's server with a stream of this test's own."""

    def make(partitions: int = 8, **options: object) -> str:
        query = "&".join(
            [f"stream=T{next(_streams)}", f"partitions={partitions}"]
            + [f"{k}={v}" for k, v in options.items()]
        )
        return f"nats://{nats_server.address}?{query}"

    return make
