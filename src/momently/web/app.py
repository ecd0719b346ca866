"""The ASGI application: tracking API, admin API, metrics, and JSON errors everywhere."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import TypeVar

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from momently import __version__
from momently.clock import Clock, SystemClock
from momently.config import Settings
from momently.deliver.channels.inapp import InAppHub
from momently.deliver.inapp_routes import inapp_router
from momently.deliver.tracking import TokenSigner, TrackingLinks
from momently.deliver.tracking_routes import tracking_router
from momently.deliver.types import OutboxStore
from momently.errors import InvalidInput, Overloaded, RateLimited, Unavailable, error_body
from momently.ingest.asgi import FastPostAPI
from momently.ingest.http import BATCH_PATHS, TrackingAPI, json_response, retry_later
from momently.metrics import Metrics
from momently.moments.detector import MomentDetector
from momently.moments.playbook import Playbook, load_playbook
from momently.privacy.consent import cancel_unsubscribed, gate_routes
from momently.privacy.engine import PrivacyEngine
from momently.privacy.service import Privacy, PrivacyCollector
from momently.privacy.suppression import Suppression, privacy_secret
from momently.runtime.delivery import (
    Delivery,
    DeliveryCollector,
    Ingest,
    Routes,
    build_routes,
    tracking_secret,
)
from momently.runtime.stage import MomentStage, StageRunner
from momently.runtime.writer import Writer
from momently.store import open_moment_store, open_outbox_store, open_store
from momently.types import MomentStore, Store
from momently.web.admin import admin_router
from momently.web.auth import Access, KeyedWriteKeys, open_access
from momently.web.dashboard import dashboard_router
from momently.web.decisions_api import decisions_router
from momently.web.deliveries_api import deliveries_router
from momently.web.live import LiveFeed, live_router
from momently.web.models import Error
from momently.web.models_api import models_router
from momently.web.moments_api import moments_router
from momently.web.privacy_api import privacy_router

T = TypeVar("T")
log = logging.getLogger(__name__)

# What the tracking API answers besides 200, so the served OpenAPI document is true.
TRACKING_ERRORS: dict[int | str, dict[str, object]] = {
    401: {"model": Error, "description": "missing or unknown write key"},
    403: {"model": Error, "description": "the key may not write"},
    413: {"model": Error, "description": "a body or message over the size limits"},
    415: {"model": Error, "description": "a content type or encoding not taken"},
    429: {"model": Error, "description": "overloaded or over the key's rate limit"},
    503: {"model": Error, "description": "the store could not commit; nothing was written"},
}


def both(first: Callable[[T], None], second: Callable[[T], None]) -> Callable[[T], None]:
    """One callback that calls two, the second even if the first fails."""

    def call(value: T) -> None:
        try:
            first(value)
        finally:
            second(value)

    return call


def create_app(
    settings: Settings,
    *,
    store: Store | None = None,
    moment_store: MomentStore | None = None,
    clock: Clock | None = None,
    playbook: Playbook | None = None,
    detector: MomentDetector | None = None,
    tick_seconds: float = 1.0,
    environ: Mapping[str, str] | None = None,
    outbox_store: OutboxStore | None = None,
    delivery_worker: bool = True,
    routes: Routes | None = None,
) -> FastAPI:
    """The whole engine as one ASGI app; it closes its stages and stores on shutdown.

    The playbook is loaded, and its channels' providers built with their secrets
    from ``environ`` (the process environment, as the CLI passes it), before
    anything starts: a bad playbook or a missing secret raises here. With
    ``delivery_worker=False`` nothing sends by itself; a test drives
    ``app.state.delivery.outbox.run_once()``. ``routes`` replaces the providers the
    playbook names (the demo sends everything to its simulated customers).
    """
    playbook = playbook or load_playbook(settings.playbook)
    detector = detector or MomentDetector(playbook)
    environ = environ if environ is not None else {}
    clock = clock or SystemClock()
    memory = (settings.store or "").startswith("memory:")
    hub = InAppHub(clock)
    routes = routes if routes is not None else build_routes(playbook.decide, environ, clock, hub)
    try:
        secret = tracking_secret(environ, None if memory else settings.data_dir)
    except BaseException:
        routes.close()
        raise
    signer = TokenSigner(secret, clock)
    links = TrackingLinks(settings.public_base_url, signer)
    store = store if store is not None else open_store(settings.store_url)
    moment_store = moment_store or open_moment_store(settings.moment_store_url)
    if outbox_store is None:
        if not memory:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
        outbox_store = open_outbox_store(settings.outbox_store_url)
    # Every provider checks consent as it stands at send time (an opt-out beats a
    # send already scheduled, however far behind the moment stage is).
    routes.routes = gate_routes(routes.routes, playbook.decide, store)
    suppression = Suppression(
        privacy_secret(environ, None if memory else settings.data_dir), store.suppressed()
    )
    metrics = Metrics()
    runners: list[StageRunner] = []  # the stage starts after the writer it reads behind

    live = LiveFeed()

    def committed(size: int, seconds: float) -> None:
        metrics.on_commit(size, seconds)
        live.on_commit(size, seconds)
        for started in runners:
            started.wake(size)

    engine = PrivacyEngine(store, suppression)
    writer = Writer(engine, max_pending=settings.max_pending_events, on_commit=committed)
    ingest = Ingest(writer, store, clock, metrics)
    delivery = Delivery(
        playbook.decide,
        outbox_store,
        routes,
        store=store,
        moments=moment_store,
        clock=clock,
        ingest=ingest,
        links=links,
    )
    stage = MomentStage(
        store,
        moment_store,
        detector,
        clock,
        on_moments=both(metrics.on_moments, live.on_moments),
        on_decisions=both(delivery.on_decisions, live.on_decisions),
    )
    # The stage gives way while ingestion is under way (see StageRunner, Writer.busy).
    runner = StageRunner(stage, tick_seconds=tick_seconds, busy=writer.busy)
    runners.append(runner)
    privacy = Privacy(
        store=store, moments=moment_store, outbox=outbox_store, runner=runner, engine=engine,
        writer=writer, playbook=playbook, clock=clock, retention_days=settings.retention_days,
    )  # fmt: skip
    metrics.pending.set_function(lambda: writer.pending)
    metrics.moment_position.set_function(lambda: stage.position)
    metrics.registry.register(DeliveryCollector(delivery))
    metrics.registry.register(PrivacyCollector(privacy))
    access: Access = open_access(settings, clock, memory=memory)
    tracking = TrackingAPI(writer, KeyedWriteKeys(access), clock, metrics)

    def emit(event: dict[str, object]) -> None:
        # Committed before the answer: an unsubscribe holds before the next decision,
        # and the sends it forbids are cancelled before the answer too.
        ingest.now(dict(event), source="momently:tracking")
        try:
            cancel_unsubscribed(event, delivery.outbox, playbook.decide, store)
        except Exception:  # committed; the stage cancels them, the send-time check holds
            log.exception("could not cancel the sends an unsubscribe forbids")

    def reconcile() -> None:
        # Under the stage's lock, so a cancellation the stage is committing cannot slip
        # between reading a decision and submitting it. The stage's first pass waits a
        # tick, so the lock is normally free; with a backlog already being worked
        # through, start-up waits for that pass.
        with runner.lock:
            delivery.reconcile()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(reconcile)
        if delivery_worker:
            delivery.start()
        privacy.start()
        try:
            yield
        finally:
            privacy.close()
            delivery.stop()
            live.close()
            hub.close()
            writer.close()
            runner.close()
            delivery.close()
            moment_store.close()
            store.close()
            access.close()

    app = FastPostAPI(
        title="momently",
        version=__version__,
        lifespan=lifespan,
        description="Real-time micro-moment engine: Segment-compatible tracking API and admin API.",
        # any operation refuses input its parameters' types let through (an unknown kind)
        responses={400: {"model": Error, "description": "invalid input"}},
    )
    app.state.store = store
    app.state.writer = writer
    app.state.metrics = metrics
    app.state.moment_store = moment_store
    app.state.stage = runner
    app.state.delivery = delivery
    app.state.hub = hub
    app.state.signer = signer
    app.state.live = live
    app.state.privacy = privacy
    app.state.access = access
    app.state.tracking = tracking
    if settings.cors_origins:  # browser SDKs on the brand's own pages
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["authorization", "content-type", "content-encoding"],
            expose_headers=["retry-after"],
            max_age=600,
        )

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
        return retry_later("Overloaded", str(error), 429, error.retry_after)

    @app.exception_handler(RateLimited)
    async def rate_limited(request: Request, error: RateLimited) -> Response:
        metrics.requests.labels(request.url.path, "429").inc()
        return retry_later("RateLimited", str(error), 429, error.retry_after)

    @app.exception_handler(Unavailable)
    async def unavailable(request: Request, error: Unavailable) -> Response:
        metrics.requests.labels(request.url.path, "503").inc()
        return retry_later("Unavailable", str(error), 503, error.retry_after)

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

    @app.get("/metrics", include_in_schema=False, dependencies=[Depends(access.guard("read"))])
    def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.include_router(tracking.router(), responses=TRACKING_ERRORS)
    app.fast_posts(tracking.post_endpoints())  # the hot ones without FastAPI's stack
    app.include_router(admin_router(store, writer, access))
    app.include_router(moments_router(store, moment_store, runner, playbook, access))
    app.include_router(models_router(store, runner, access))
    app.include_router(decisions_router(store, moment_store, access))
    app.include_router(deliveries_router(store, moment_store, delivery, signer, clock, access))
    app.include_router(tracking_router(signer, emit, clock, identity=ingest.identity))
    app.include_router(privacy_router(store, privacy, ingest, delivery, playbook, clock))
    app.include_router(inapp_router(hub, signer))
    app.include_router(live_router(live, access, clock=SystemClock()))
    app.include_router(dashboard_router(access))
    return app
