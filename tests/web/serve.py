"""A real HTTP server (uvicorn in a thread) on a free loopback port, stopped by the caller."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Literal

import uvicorn
from starlette.types import ASGIApp

from momently.web.live import StreamClosingServer
from tests.ports import free_port


@contextmanager
def serve(
    app: ASGIApp,
    *,
    lifespan: Literal["on", "off"] = "on",
    closing: Sequence[Callable[[], None]] = (),
) -> Iterator[str]:
    """Serve ``app`` until the block ends; yields its base URL. ``closing`` runs when the
    server starts to stop, as ``momently serve`` runs it (:class:`StreamClosingServer`)."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=free_port(), log_level="warning", lifespan=lifespan,
        ws="none", timeout_graceful_shutdown=30,
    )  # fmt: skip
    server = StreamClosingServer(config, closing)
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
        server.should_exit = True
        thread.join()
