"""The command line of distributed mode: ``momently worker`` and ``momently serve --log``.

Imported by :mod:`momently.cli` for its flags; nats-py and the web stack are
imported only when a command runs.
"""

from __future__ import annotations

import argparse
import os
import socket
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from momently.clock import Clock


def add_worker_parser(commands: Any) -> None:
    """The ``worker`` subcommand's flags."""
    worker = commands.add_parser(
        "worker", help="distributed mode: own partitions of the NATS log and run their stages"
    )
    worker.add_argument("--log", required=True, help="nats://host:port[,host:port][?options]")
    worker.add_argument(
        "--store",
        required=True,
        help="store URL with {partition}, e.g. sqlite:///data/p{partition}.db",
    )
    worker.add_argument(
        "--moments",
        help="moment store URL with {partition} (default: beside --store)",
    )
    worker.add_argument(
        "--partitions", default="all", help="partitions this worker may own: all, 0-31, 0,5,9"
    )
    worker.add_argument("--owner", help="this worker's name in the leases (default host-pid)")
    worker.add_argument("--lease-ttl-ms", type=int, default=10_000, help="lease length")
    worker.add_argument("--playbook", help="playbook YAML file (default: the example playbook)")
    worker.add_argument(
        "--outbox",
        help="outbox URL shared by the workers (postgresql://…, or sqlite:///… on one host);"
        " without it decisions are stored, not sent",
    )
    worker.add_argument(
        "--public-url",
        help="where the ingest nodes' tracking links are served (https://t.example.com);"
        " messages then carry signed click, open and unsubscribe links, signed with"
        " MOMENTLY_TRACKING_SECRET (the same on every worker and ingest node)",
    )
    worker.add_argument(
        "--retention-days",
        type=float,
        help="delete raw events older than this from the partitions' stores and the stream,"
        " once read (default: MOMENTLY_RETENTION_DAYS, else keep)",
    )
    worker.add_argument("--host", default="127.0.0.1", help="address of /healthz and /metrics")
    worker.add_argument("--port", type=int, default=9100, help="port of /healthz and /metrics")


def moments_url_for(store_url: str) -> str:
    """The default moment store beside a store: ``p{partition}.db`` → ``p{partition}-moments.db``.

    >>> moments_url_for("sqlite:///data/p{partition}.db")
    'sqlite:///data/p{partition}-moments.db'
    """
    if store_url.startswith("sqlite:"):
        head, dot, tail = store_url.partition(".db")
        return f"{head}-moments{dot}{tail}" if dot else store_url + "-moments"
    return store_url  # one database (a schema per partition) holds both


def open_outbox(url: str) -> Any:
    """The outbox a URL names, through the store registry where it has outboxes."""
    import momently.store as stores
    from momently.deliver.store_memory import MemoryOutboxStore
    from momently.deliver.store_sqlite import SqliteOutboxStore
    from momently.errors import ConfigError

    opener = getattr(stores, "open_outbox_store", None)
    if opener is not None:
        return opener(url)
    if url.startswith("memory:"):
        return MemoryOutboxStore()
    if url.startswith("sqlite:///"):
        return SqliteOutboxStore(url.removeprefix("sqlite://").split("?")[0])
    raise ConfigError(f"no outbox backend for {url!r}")


def retention_days(given: float | None, environ: Mapping[str, str]) -> float | None:
    """``--retention-days``, else ``MOMENTLY_RETENTION_DAYS``, checked as the embedded
    server's setting is (more than 0, at most 100 years); None: keep.

    >>> retention_days(None, {"MOMENTLY_RETENTION_DAYS": "30"})
    30.0
    """
    from momently.errors import ConfigError

    if given is None:
        text = environ.get("MOMENTLY_RETENTION_DAYS", "").strip()
        if not text:
            return None
        try:
            given = float(text)
        except ValueError:
            raise ConfigError(f"MOMENTLY_RETENTION_DAYS must be a number, not {text!r}") from None
    if not 0 < given <= 36_500:
        raise ConfigError("--retention-days must be more than 0 and at most 36500")
    return given


def worker_links(public_url: str | None, environ: Mapping[str, str], clock: Clock) -> Any:
    """The tracking links a worker's messages carry (``--public-url``), or None.

    The key must be ``MOMENTLY_TRACKING_SECRET``: a worker keeps no key of its own,
    and the ingest nodes that serve the links must check what every worker signs.
    """
    from momently.deliver.tracking import TokenSigner, TrackingLinks
    from momently.errors import ConfigError
    from momently.runtime.delivery import SECRET_ENV, tracking_secret

    if public_url is None:
        return None
    if SECRET_ENV not in environ:
        raise ConfigError(f"--public-url needs {SECRET_ENV}, the ingest nodes' tracking key")
    try:
        return TrackingLinks(public_url, TokenSigner(tracking_secret(environ, None), clock))
    except ValueError as error:
        raise ConfigError(str(error)) from None


def worker_command(args: argparse.Namespace) -> int:
    """``momently worker``: serve health and metrics, run the worker until SIGTERM."""
    import uvicorn

    from momently.clock import SystemClock
    from momently.distributed.admin import Partitions
    from momently.distributed.deliver import WorkerDelivery
    from momently.distributed.deliveries import answer_deliveries
    from momently.distributed.inapp import InAppRelay
    from momently.distributed.live import LiveRelay
    from momently.distributed.log import EventLog, LogSettings
    from momently.distributed.models import answer_models
    from momently.distributed.partition import parse_partitions
    from momently.distributed.predictions import answer_predictions
    from momently.distributed.retention import with_retention
    from momently.distributed.shard import partition_url
    from momently.distributed.web import worker_app
    from momently.distributed.worker import Worker, WorkerSettings
    from momently.errors import ConfigError
    from momently.moments.detector import MomentDetector
    from momently.moments.playbook import load_playbook
    from momently.privacy.suppression import SECRET_ENV, privacy_secret
    from momently.runtime.delivery import DeliveryCollector

    retention = retention_days(args.retention_days, os.environ)
    log = with_retention(LogSettings.from_url(args.log), retention)
    try:
        partitions = tuple(parse_partitions(args.partitions, log.partitions))
    except ValueError as error:
        raise ConfigError(str(error)) from None
    if args.lease_ttl_ms < 1_000:
        raise ConfigError("--lease-ttl-ms must be at least 1000")
    moments_url = args.moments or moments_url_for(args.store)
    for template in (args.store, moments_url):
        partition_url(template, 0)  # a URL without {partition} fails here, not in the loop
    settings = WorkerSettings(
        log=log,
        store_url=args.store,
        moments_url=moments_url,
        partitions=partitions,
        owner=args.owner or f"{socket.gethostname()}-{os.getpid()}",
        lease_ttl_ms=args.lease_ttl_ms,
        retention_days=retention,
    )
    playbook = load_playbook(args.playbook)
    clock = SystemClock()
    links = worker_links(args.public_url, os.environ, clock)
    hub = InAppRelay(log.stream, clock)  # in-app sends reach the ingest nodes' streams
    delivery = (
        # The sender reads every partition's stores for the customers it sends to.
        WorkerDelivery(
            playbook,
            open_outbox(args.outbox),
            clock,
            environ=os.environ,
            partitions=Partitions(log, args.store, moments_url),
            links=links,
            hub=hub,
        )
        if args.outbox
        else None
    )
    relay = LiveRelay(log.stream)  # the ingest nodes' /api/live

    def on_start(found: EventLog) -> None:
        relay.attach(found.client)
        hub.attach(found.client)
        answer_predictions(worker, found)  # the ingest nodes' per-customer predictions
        answer_models(worker, found)  # ... and their GET /api/models
        # ... and the senders' counters of their GET /api/deliveries/stats
        answer_deliveries(worker, found, delivery.counters if delivery is not None else None)
        if delivery is not None:
            delivery.attach(found)

    worker = Worker(
        settings,
        MomentDetector(playbook),
        clock,
        deliver=relay.deliver(delivery.for_partition if delivery is not None else None),
        on_moments=relay.on_moments,
        on_start=on_start,
        outbox=delivery.outbox if delivery is not None else None,  # erasures reach it
        # The ingest nodes' key: shards drop events of identities erased in them.
        privacy_key=privacy_secret(os.environ, None) if SECRET_ENV in os.environ else None,
    )
    if delivery is not None:  # the senders' counters on /metrics, as the embedded server's
        worker.metrics.registry.register(DeliveryCollector(delivery))
    print(
        f"momently worker {settings.owner}: {len(partitions)} partitions of {log.stream},"
        f" health on http://{args.host}:{args.port}/healthz",
        flush=True,
    )
    config = uvicorn.Config(
        worker_app(worker), host=args.host, port=args.port, log_level="warning", access_log=False
    )
    if delivery is not None:
        delivery.start()
    try:
        uvicorn.Server(config).run()
    finally:
        if delivery is not None:
            delivery.close()
    return 0


def ingest_node(settings: Any, log_url: str) -> Any:
    """The app ``momently serve --log nats://…`` runs: a stateless ingest node in front of
    the log; with ``--store`` naming the workers' partition stores (``{partition}``) it
    answers the admin API's reads from them too, and the privacy routes (with the
    workers' outbox from ``MOMENTLY_OUTBOX``, the URL of their ``--outbox``, for
    deliveries). A PostgreSQL ``--store`` also holds the key table of ``momently keys
    --store`` (:mod:`momently.store.postgres.keys`): every node accepts those keys."""
    from momently.distributed.admin import Partitions
    from momently.distributed.log import LogSettings
    from momently.distributed.retention import with_retention
    from momently.distributed.web import ingest_app
    from momently.errors import ConfigError
    from momently.moments.playbook import load_playbook

    if not settings.write_keys:
        raise ConfigError("no write key: pass --write-key KEY or set MOMENTLY_WRITE_KEYS")
    # --retention-days: the stream's max_age backstop (the workers delete what they read).
    log = with_retention(LogSettings.from_url(log_url), settings.retention_days)
    reads = None
    outbox = None
    keys = None
    if settings.store:
        moments = settings.moment_store or moments_url_for(settings.store)
        reads = Partitions(log, settings.store, moments)
        if os.environ.get("MOMENTLY_OUTBOX"):
            outbox = open_outbox(os.environ["MOMENTLY_OUTBOX"])
        if settings.store.startswith(("postgresql:", "postgres:")):
            from momently.store.postgres.keys import PostgresKeyStore, key_table_url

            keys = PostgresKeyStore(key_table_url(settings.store), lazy=True)
    return ingest_app(
        log,
        settings.write_keys,
        admin_key=settings.admin_key,
        reads=reads,
        playbook=load_playbook(settings.playbook),
        outbox=outbox,
        keys=keys,
        rate_limit=settings.rate_limit,
    )


def serve_log(settings: Any, log_url: str) -> int:
    """``momently serve --log nats://…``: :func:`ingest_node`, served until SIGTERM."""
    import uvicorn

    from momently.web.live import StreamClosingServer

    app = ingest_node(settings, log_url)
    print(f"momently ingest node on http://{settings.host}:{settings.port} → {log_url}", flush=True)
    config = uvicorn.Config(
        app, host=settings.host, port=settings.port, log_level="warning", access_log=False
    )
    # Open dashboard streams end when shutdown begins (as the embedded serve's do).
    StreamClosingServer(config, [app.state.live.close]).run()
    return 0
