"""A real HTTP server (uvicorn in a thread) on a free loopback port, stopped by the caller."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Literal

import uvicorn
from starlette.types import ASGIApp

from tests.conftest import free_port


class ClosingServer(uvicorn.Server):
    """uvicorn that ends open streams before it waits for open responses to finish.

    uvicorn's shutdown waits for every response in flight, and an event stream
    never finishes by itself: ``closing`` (``LiveFeed.close``) runs first, on
    the server's loop, so a stop never hangs on a dashboard left open.
    """

    def __init__(self, config: uvicorn.Config, closing: Sequence[Callable[[], None]]) -> None:
        super().__init__(config)
        self.closing = list(closing)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for close in self.closing:
            close()
        await super().shutdown(sockets)


@contextmanager
def serve(
    app: ASGIApp,
    *,
    lifespan: Literal["on", "off"] = "on",
    closing: Sequence[Callable[[], None]] = (),
) -> Iterator[str]:
    """Serve ``app`` until the block ends; yields its base URL."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=free_port(), log_level="warning", lifespan=lifespan,
        ws="none", timeout_graceful_shutdown=30,
    )  # fmt: skip
    server = ClosingServer(config, closing)
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
