"""The ASGI application: tracking API, admin API, metrics, and JSON errors everywhere."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from momently import __version__
from momently.clock import Clock, SystemClock
from momently.config import Settings
from momently.engine import Engine
from momently.errors import InvalidInput, Overloaded, Unavailable, error_body
from momently.ingest.http import BATCH_PATHS, TrackingAPI, WriteKeys, json_response
from momently.metrics import Metrics
from momently.runtime.writer import Writer
from momently.store import open_store
from momently.types import Store
from momently.web.admin import admin_router


def create_app(
    settings: Settings, *, store: Store | None = None, clock: Clock | None = None
) -> FastAPI:
    """The whole engine as one ASGI app; it closes its writer and store on shutdown."""
    store = store if store is not None else open_store(settings.store_url)
    clock = clock or SystemClock()
    metrics = Metrics()
    writer = Writer(
        Engine(store), max_pending=settings.max_pending_events, on_commit=metrics.on_commit
    )
    metrics.pending.set_function(lambda: writer.pending)
    tracking = TrackingAPI(writer, WriteKeys(settings.write_keys), clock, metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            writer.close()
            store.close()

    app = FastAPI(
        title="momently",
        version=__version__,
        lifespan=lifespan,
        description="Real-time micro-moment engine: Segment-compatible tracking API and admin API.",
    )
    app.state.store = store
    app.state.writer = writer
    app.state.metrics = metrics

    @app.exception_handler(InvalidInput)
    async def invalid_input(request: Request, error: InvalidInput) -> Response:
        path = request.url.path
        if path.startswith("/v1/"):
            metrics.requests.labels(path, str(error.status)).inc()
            if path not in BATCH_PATHS:  # a batch counts each rejected message itself
                metrics.rejected.labels(type(error).__name__).inc()
        return json_response(error.to_json(), error.status)

    @app.exception_handler(Overloaded)
    async def overloaded(request: Request, error: Overloaded) -> Response:
        metrics.requests.labels(request.url.path, "429").inc()
        return json_response(
            error_body("Overloaded", str(error)),
            429,
            headers={"Retry-After": str(error.retry_after)},
        )

    @app.exception_handler(Unavailable)
    async def unavailable(request: Request, error: Unavailable) -> Response:
        metrics.requests.labels(request.url.path, "503").inc()
        return json_response(
            error_body("Unavailable", str(error)),
            503,
            headers={"Retry-After": str(error.retry_after)},
        )

    @app.exception_handler(RequestValidationError)
    async def request_invalid(request: Request, error: RequestValidationError) -> Response:
        # FastAPI's own answer is {"detail": [...]}; keep the one error shape everywhere.
        first = error.errors()[0] if error.errors() else {}
        loc = [str(part) for part in first.get("loc", ())]
        return json_response(
            error_body(
                "InvalidInput",
                str(first.get("msg", "invalid request")),
                ".".join(loc[1:]) or ".".join(loc) or "$",
            ),
            422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> Response:
        return json_response(
            error_body("HTTPError", str(error.detail)),
            error.status_code,
            headers=dict(error.headers or {}),
        )

    @app.get("/metrics", include_in_schema=False)
    def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.include_router(tracking.router())
    app.include_router(admin_router(store, writer, settings.admin_key))
    return app
