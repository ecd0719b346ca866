"""A real HTTP server (uvicorn in a thread) on a free loopback port, stopped by the caller."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Literal

import uvicorn
from starlette.types import ASGIApp

from tests.conftest import free_port


@contextmanager
def serve(
    app: ASGIApp,
    *,
    lifespan: Literal["on", "off"] = "on",
    before_stop: Callable[[], None] | None = None,
) -> Iterator[str]:
    """Serve ``app`` until the block ends; yields its base URL.

    ``before_stop`` runs first when the block ends: it must end any open stream
    (``LiveFeed.close``), since uvicorn waits for open responses before it stops.
    """
    config = uvicorn.Config(
        app, host="127.0.0.1", port=free_port(), log_level="warning", lifespan=lifespan,
        ws="none", timeout_graceful_shutdown=10,
    )  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn-dashboard", daemon=True)
    thread.start()
    try:
        for _ in range(3000):  # readiness, not timing: up to ~30 s on a loaded machine
            if server.started or not thread.is_alive():
                break
            thread.join(0.01)
        assert server.started, "uvicorn did not start"
        yield f"http://127.0.0.1:{config.port}"
    finally:
        if before_stop is not None:
            before_stop()
        server.should_exit = True
        thread.join()
