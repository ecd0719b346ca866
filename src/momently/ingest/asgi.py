"""The tracking API's POST endpoints answered straight from the ASGI call.

FastAPI sends every request through its middleware (server errors, exception
handlers, an exit stack, telemetry), matches it against each route in turn and
solves the endpoint's parameters: about half a millisecond of the event loop per
request, 5 µs per event of a batch of 100, on the path ingestion's throughput
hangs on. The tracking endpoints need none of it: they take the raw request and
raise the engine's errors. So a POST to one of them is handed to its endpoint
here and an error becomes the answer the app's own exception handler gives;
everything else — the same paths' OpenAPI entries, a wrong method's 405, any
other path, and every request once the app has middleware of its own (CORS) —
goes through FastAPI as before.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import Receive, Scope, Send

Endpoint = Callable[[Request], Awaitable[Response]]


class FastPostAPI(FastAPI):
    """A FastAPI app that answers the POSTs given to :meth:`fast_posts` itself."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._fast: dict[str, Endpoint] = {}

    def fast_posts(self, endpoints: Mapping[str, Endpoint]) -> None:
        """Answer POSTs to these exact paths with these endpoints (also routed as usual)."""
        self._fast.update(endpoints)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and not self.user_middleware:
            endpoint = self._fast.get(scope["path"])
            if endpoint is not None:
                await self._answer(endpoint, scope, receive, send)
                return
        await super().__call__(scope, receive, send)

    async def _answer(self, endpoint: Endpoint, scope: Scope, receive: Receive, send: Send) -> None:
        scope["app"] = self
        request = Request(scope, receive)
        try:
            response = await endpoint(request)
        except Exception as error:
            handler = self._handler_for(error)
            if handler is None:
                # As Starlette's ServerErrorMiddleware: a plain 500, and the error on up.
                await PlainTextResponse("Internal Server Error", 500)(scope, receive, send)
                raise
            answer = handler(request, error)
            response = await answer if inspect.isawaitable(answer) else answer
        await response(scope, receive, send)

    def _handler_for(self, error: Exception) -> Callable[..., Any] | None:
        """The app's exception handler for ``error``, nearest class first, as Starlette's."""
        handlers = self.exception_handlers
        for kind in type(error).__mro__:
            if kind in handlers and kind is not Exception:
                return handlers[kind]
        return None
