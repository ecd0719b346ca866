"""The HTTP faces of distributed mode: a stateless ingest node, and a worker's health.

Both answer ``/healthz`` (the process runs: restart it if not), ``/readyz``
(connected to NATS, the stream there: send it traffic) and ``/metrics``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import cast

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from momently import __version__
from momently.auth.keys import KeyTable
from momently.clock import SystemClock
from momently.deliver.channels.inapp import InAppHub
from momently.deliver.inapp_routes import inapp_router
from momently.deliver.store_memory import MemoryOutboxStore
from momently.deliver.tracking import TokenSigner
from momently.deliver.tracking_routes import tracking_router
from momently.deliver.types import OutboxStore
from momently.distributed.admin import Partitions, reads_router
from momently.distributed.deliver import LogSubmitter, PartitionView
from momently.distributed.deliveries import delivery_stats_router
from momently.distributed.inapp import relay_inapp
from momently.distributed.journeys import journeys_router
from momently.distributed.live import relay_to
from momently.distributed.log import EventLog, LogSettings
from momently.distributed.models import models_router
from momently.distributed.predictions import predictions_router
from momently.distributed.privacy import DistributedPrivacy, LogHandle, distributed_privacy_router
from momently.distributed.views import PartitionedMoments, PartitionedStore
from momently.distributed.worker import Worker
from momently.distributed.world import world_router
from momently.engine import IngestResult
from momently.errors import InvalidInput, RateLimited, Unavailable, error_body
from momently.events import Event
from momently.ingest.http import BATCH_PATHS, TrackingAPI, json_response, retry_later
from momently.metrics import Metrics
from momently.moments.playbook import Playbook, load_playbook
from momently.privacy.consent import cancel_unsubscribed
from momently.privacy.suppression import SECRET_ENV, Suppression, privacy_secret
from momently.runtime.delivery import SECRET_ENV as TRACKING_ENV
from momently.runtime.delivery import Delivery, Ingest, Routes, tracking_secret
from momently.runtime.writer import Writer
from momently.store.memory import MemoryStore
from momently.types import MomentStore, Store
from momently.web.auth import Access, KeyedWriteKeys
from momently.web.dashboard import dashboard_router
from momently.web.deliveries_api import deliveries_router
from momently.web.live import LiveFeed, live_router
from momently.web.models import Health

log = logging.getLogger(__name__)


class LogWriter:
    """The tracking API's writer: the log once connected, 503 before."""

    def __init__(self, live: LiveFeed | None = None) -> None:
        self.log: EventLog | None = None
        # The erased identities (shared by every ingest node): their events are dropped.
        self.suppression: Suppression | None = None
        self.live = live  # told of each acknowledged batch: the dashboard's ingest rate

    async def write(self, events: Sequence[Event]) -> IngestResult:
        if self.log is None:
            raise Unavailable(retry_after=1)
        if self.suppression is not None and len(self.suppression):
            drops = self.suppression.drops
            events = [e for e in events if not drops(e)]
            if not events:
                return IngestResult(0, 0)
        started = time.perf_counter()
        result = await self.log.write(events)
        if self.live is not None:
            self.live.on_commit(len(events), time.perf_counter() - started)
        return result


class Feedback:
    """Where the tracking links' hits go: into the log, as the embedded server puts them
    in its store (validated and stamped by :class:`Ingest`, under the ids the
    customer's partition knows them by, so the event reaches that partition)."""

    def __init__(self, reads: Partitions | None, clock: SystemClock) -> None:
        self.log: EventLog | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.reads = reads
        self.clock = clock
        # The workers' outbox, read here: an unsubscribe cancels the sends it forbids.
        self.delivery: Delivery | None = None

    def identity(self, customer_id: str) -> dict[str, str]:
        if self.reads is None:  # no stores to name the customer by: refused, and logged
            return {}
        view = cast("Store", PartitionView(self.reads))
        return Ingest(cast("Writer", None), view, self.clock).identity(customer_id)

    def emit(self, event: dict[str, object]) -> None:
        """Called from a route's thread; waits for JetStream's acknowledgement, so a
        failure is the unsubscribe route's 503 (the client retries)."""
        found, loop = self.log, self.loop
        if found is None or loop is None:
            raise Unavailable(retry_after=1)
        writer = cast("Writer", LogSubmitter(found, loop))
        store = cast("Store", MemoryStore())  # the identity is in the event; none is read
        Ingest(writer, store, self.clock).now(dict(event), source="momently:tracking")
        if self.delivery is None:
            return
        try:  # as the embedded server: the sends it forbids are cancelled before the answer
            cancel_unsubscribed(
                event, self.delivery.outbox, self.delivery.spec, self.delivery.store
            )
        except Exception:  # in the log; the senders' consent check at send time holds
            log.exception("could not cancel the sends an unsubscribe forbids")


def _outbox_reads(
    playbook: Playbook, outbox: OutboxStore | None, reads: Partitions, clock: SystemClock
) -> Delivery:
    """The embedded delivery over the workers' shared outbox, to read (never started:
    the workers send). Without the outbox, one with nothing in it."""
    if outbox is None:
        log.warning("no outbox (MOMENTLY_OUTBOX): /api/deliveries lists nothing here")
    return Delivery(
        playbook.decide,
        outbox if outbox is not None else MemoryOutboxStore(),
        Routes(),
        store=cast("Store", PartitionedStore(reads)),
        moments=cast("MomentStore", PartitionedMoments(reads)),
        clock=clock,
        ingest=None,
        links=None,
    )


def _signer(key: bytes | None) -> TokenSigner:
    """The tracking links' signer: one key on every worker and ingest node."""
    if key is None and TRACKING_ENV not in os.environ:
        log.warning(
            "%s is not set: links the workers sign are refused here; set it to one value"
            " on every worker and ingest node",
            TRACKING_ENV,
        )
    return TokenSigner(key if key is not None else tracking_secret(os.environ, None), SystemClock())


def _errors(app: FastAPI, metrics: Metrics) -> None:
    """The engine's one error shape (see momently.web.app), for the ingest node."""

    @app.exception_handler(InvalidInput)
    async def invalid_input(request: Request, error: InvalidInput) -> Response:
        path = request.url.path
        metrics.requests.labels(path, str(error.status)).inc()
        if path not in BATCH_PATHS:
            metrics.rejected.labels(type(error).__name__).inc()
        return json_response(error.to_json(), error.status)

    @app.exception_handler(RateLimited)
    async def rate_limited(request: Request, error: RateLimited) -> Response:
        # A key over its limit (Access): as the embedded server answers it.
        metrics.requests.labels(request.url.path, "429").inc()
        return retry_later("RateLimited", str(error), 429, error.retry_after)

    @app.exception_handler(Unavailable)
    async def unavailable(request: Request, error: Unavailable) -> Response:
        metrics.requests.labels(request.url.path, "503").inc()
        return retry_later(
            "Unavailable", "the event log did not acknowledge; retry", 503, error.retry_after
        )

    @app.exception_handler(RequestValidationError)
    async def request_invalid(request: Request, error: RequestValidationError) -> Response:
        # As the embedded server: the first error, and the field it is about.
        first = error.errors()[0] if error.errors() else {}
        loc = [str(part) for part in first.get("loc", ())]
        field = ".".join(loc[1:]) or ".".join(loc) or "$"
        body = error_body("InvalidInput", str(first.get("msg", "invalid request")), field)
        return json_response(body, 422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> Response:
        return json_response(
            error_body("HTTPError", str(error.detail)),
            error.status_code,
            headers=dict(error.headers or {}),  # a 405's Allow
        )


def _store_errors(app: FastAPI) -> None:
    """A partition store or the key table that does not answer (PostgreSQL restarting,
    SQLite busy) is a 503 to retry, not a 500."""

    async def unavailable(request: Request, error: Exception) -> Response:
        log.warning("a store read failed: %s", error)
        return retry_later("Unavailable", "a store did not answer; retry", 503, "1")

    app.add_exception_handler(sqlite3.OperationalError, unavailable)
    try:
        import psycopg
    except ImportError:  # no PostgreSQL driver: no PostgreSQL stores either
        return
    app.add_exception_handler(psycopg.OperationalError, unavailable)


def ingest_app(
    settings: LogSettings,
    write_keys: Sequence[str],
    *,
    admin_key: str | None = None,
    reads: Partitions | None = None,
    playbook: Playbook | None = None,
    outbox: OutboxStore | None = None,
    privacy_key: bytes | None = None,
    tracking_key: bytes | None = None,
    keys: KeyTable | None = None,
    rate_limit: float | None = None,
) -> FastAPI:
    """A stateless ingest node: validate, append to JetStream, answer after the acks.

    With ``reads`` (the partitions' stores) and an admin key it also answers the admin
    API's reads (:mod:`momently.distributed.admin`); with the ``playbook`` the workers
    run, ``POST /api/world-events`` (:mod:`momently.distributed.world`). With ``reads``
    too: the privacy routes (:mod:`momently.distributed.privacy`), over the workers'
    shared ``outbox`` if given, with the suppression key ``privacy_key`` (default
    ``MOMENTLY_PRIVACY_SECRET``: the same on every ingest node).

    As the embedded server, it serves the dashboard, ``/api/live`` (the workers'
    moments and decisions, :mod:`momently.distributed.live`) and the tracking
    links' ``/t/*`` routes, whose tokens the workers sign with ``tracking_key``
    (default ``MOMENTLY_TRACKING_SECRET``: the same on every worker and node).

    Keys as the embedded server's (:class:`momently.web.auth.Access`): the configured
    ``write_keys`` and ``admin_key``, and the created keys of ``keys`` (the key table
    in PostgreSQL that every node reads, :mod:`momently.store.postgres.keys`), with
    their scopes, sources and rate limits; ``rate_limit`` (requests per second) is
    the limit of every key without one of its own. The node closes ``keys``.
    """
    live = LiveFeed()
    writer = LogWriter(live)
    clock = SystemClock()
    hub = InAppHub(clock)  # the devices' streams, fed by the workers (distributed.inapp)
    signer = _signer(tracking_key)
    feedback = Feedback(reads, clock)
    metrics = Metrics()
    handle = LogHandle()
    privacy: DistributedPrivacy | None = None
    if reads is not None:
        if privacy_key is None and SECRET_ENV not in os.environ:
            log.warning(
                "%s is not set: this ingest node's suppression digests match no other"
                " node's, nor its own after a restart; set it to one value on every node",
                SECRET_ENV,
            )
        key = privacy_key if privacy_key is not None else privacy_secret(os.environ, None)
        writer.suppression = Suppression(key)
        privacy = DistributedPrivacy(
            reads,
            handle,
            writer.suppression,
            playbook or load_playbook(None),
            SystemClock(),
            outbox=outbox,
        )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        writer.log = await EventLog.open(settings)
        try:
            if privacy is not None:
                await privacy.start(writer.log)  # the erased identities, before any ingest
            handle.log, handle.loop = writer.log, asyncio.get_running_loop()
            feedback.log, feedback.loop = writer.log, asyncio.get_running_loop()
            await relay_to(writer.log.client, settings.stream, live)
            await relay_inapp(writer.log.client, settings.stream, hub)
            yield
        finally:
            live.close()  # ends the open streams, so shutdown never waits for them
            hub.close()
            feedback.log = None
            found, writer.log = writer.log, None
            handle.log = None
            try:
                if privacy is not None:
                    await privacy.stop()
                await found.close()
            finally:
                if reads is not None:
                    await asyncio.to_thread(reads.close)
                if outbox is not None:
                    await asyncio.to_thread(outbox.close)
                await asyncio.to_thread(access.close)  # the key table's connections

    app = FastAPI(title="momently ingest", version=__version__, lifespan=lifespan)
    app.state.writer = writer
    app.state.live = live
    app.state.hub = hub
    app.state.access = access = Access(
        admin_key=admin_key, write_keys=tuple(write_keys), store=keys, clock=clock, rate=rate_limit
    )
    tracking = TrackingAPI(writer, KeyedWriteKeys(access), SystemClock(), metrics)
    _errors(app, metrics)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> Response:
        return json_response({"status": "ok"})

    @app.get("/readyz", include_in_schema=False)
    def readyz() -> Response:
        ready = writer.log is not None and writer.log.connected
        return json_response({"ready": ready}, 200 if ready else 503)

    @app.get("/metrics", include_in_schema=False)
    def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/api/health", response_model=Health)
    def health() -> Health:
        """200 when the node is up; nothing waits here (``pending`` is always 0)."""
        return Health(status="ok", pending=0)

    app.include_router(tracking.router())
    app.include_router(tracking_router(signer, feedback.emit, clock, identity=feedback.identity))
    app.include_router(inapp_router(hub, signer))
    app.include_router(live_router(live, access, clock=clock))
    app.include_router(dashboard_router(access))
    if reads is not None:
        app.include_router(reads_router(reads, lambda: writer.log, access))
        app.include_router(predictions_router(reads, lambda: writer.log, access))
        app.include_router(models_router(reads, lambda: writer.log, access))
        feedback.delivery = _outbox_reads(playbook or load_playbook(None), outbox, reads, clock)
        app.include_router(
            deliveries_router(
                cast("Store", PartitionedStore(reads)),
                cast("MomentStore", PartitionedMoments(reads)),
                feedback.delivery,
                signer,
                clock,
                access,
                stats=False,  # the senders' counters are the workers': asked of them
            )
        )
        app.include_router(
            delivery_stats_router(
                feedback.delivery, lambda: writer.log, settings.partitions, access
            )
        )
    if reads is not None or keys is not None:
        _store_errors(app)
    if privacy is not None:
        app.include_router(distributed_privacy_router(privacy, handle, SystemClock()))
        metrics.registry.register(privacy.collector())
    if playbook is not None:
        app.include_router(world_router(lambda: writer.log, playbook, SystemClock(), access))
        if reads is not None:
            app.include_router(journeys_router(reads, playbook, access))
    return app


def worker_app(worker: Worker) -> FastAPI:
    """The worker's loop in the app's lifespan, its health and metrics on HTTP.

    Run by uvicorn, so SIGTERM ends the loop after its round, closes the shards and
    releases the leases for other workers to take at once.
    """
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await worker.start()
        tasks.append(asyncio.create_task(worker.run(stop)))
        try:
            yield
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            await worker.stop(release=True)

    app = FastAPI(title="momently worker", version=__version__, lifespan=lifespan)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> Response:
        alive = bool(tasks) and not tasks[0].done()
        body = {"alive": alive, "owner": worker.settings.owner, "partitions": sorted(worker.shards)}
        return json_response(body, 200 if alive else 503)

    @app.get("/readyz", include_in_schema=False)
    def readyz() -> Response:
        return json_response({"ready": worker.ready}, 200 if worker.ready else 503)

    @app.get("/metrics", include_in_schema=False)
    def prometheus() -> Response:
        return Response(generate_latest(worker.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
