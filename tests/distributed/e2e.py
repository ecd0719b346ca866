"""The embedded mode's end-to-end tests, run again in distributed mode.

:func:`distributed_server` starts, in place of the embedded ``momently serve``,
a cluster on loopback: the session's nats-server, the session's PostgreSQL (a
schema per partition, 9 partitions), one ingest node (``ingest_app`` with the
partitions' stores for the admin reads) and two workers, each owning half of
the partitions, with one PostgreSQL outbox and a sender each, as
``momently worker --outbox`` runs them. The object it gives has the fields of
:class:`tests.conftest.Server` that the end-to-end tests use, and
:meth:`DistributedServer.settle`: distributed mode is eventually consistent,
so a test reads the admin API once every partition's worker has applied
everything the stream holds (polled, with a deadline).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from momently.clock import SystemClock
from momently.deliver.tracking import TokenSigner, TrackingLinks
from momently.distributed.admin import Partitions
from momently.distributed.command import moments_url_for, open_outbox
from momently.distributed.deliver import WorkerDelivery
from momently.distributed.deliveries import answer_deliveries
from momently.distributed.inapp import InAppRelay
from momently.distributed.live import LiveRelay
from momently.distributed.log import EventLog, LogSettings
from momently.distributed.models import answer_models
from momently.distributed.partition import parse_partitions
from momently.distributed.predictions import answer_predictions
from momently.distributed.web import ingest_app, worker_app
from momently.distributed.worker import Worker, WorkerSettings
from momently.moments.detector import MomentDetector
from momently.moments.playbook import Playbook, load_playbook
from tests.conftest import ADMIN_KEY, WRITE_KEY, Server
from tests.nats_server import NatsServer
from tests.postgres import Cluster
from tests.web.serve import serve

# Few partitions keep the fixture quick (a schema each); 9, not 8, so that the
# end-to-end tests' users and anonymous ids land on different partitions, as most
# do with the default 64 (the tests assert it where their expectations need it).
PARTITIONS = 9
WORKERS = ("0-4", "5-8")  # two workers, each owning about half of the partitions
TRACKING_KEY = b"e2e-tracking-key-" + b"k" * 32  # MOMENTLY_TRACKING_SECRET on every process
_clusters = itertools.count(1)


@dataclass
class DistributedServer:
    """An ingest node and two workers on one stream and one database."""

    url: str
    port: int
    write_key: str = WRITE_KEY
    admin_key: str = ADMIN_KEY
    partitions: int = PARTITIONS
    stream: str = ""  # the log's stream, for a test that asks the workers itself

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_key}"}

    def settle(self, timeout_s: float = 60.0) -> None:
        """Until every partition's worker has applied all its stream holds, and its moment
        stage has caught up (readiness polling, not a timing sleep)."""
        deadline = time.monotonic() + timeout_s
        while True:
            answer = httpx.get(self.url + "/api/partitions", headers=self.admin, timeout=10)
            assert answer.status_code == 200, answer.text
            if answer.json()["settled"]:
                return
            assert time.monotonic() < deadline, f"not settled in {timeout_s}s: {answer.text}"
            time.sleep(0.02)


AnyServer = Server | DistributedServer


def settle(server: AnyServer, timeout_s: float = 60.0) -> None:
    """Until the moments of everything acknowledged can be read: a distributed server's
    workers have applied their streams; the embedded server's moment stage, which gives
    way to ingestion for a moment after each commit, has read its log to the end
    (its checkpoint at the log's last record). Polled, with a deadline."""
    if isinstance(server, DistributedServer):
        server.settle(timeout_s)
        return
    deadline = time.monotonic() + timeout_s
    with httpx.Client(base_url=server.url, headers=server.admin, timeout=10) as client:
        while True:
            logged = client.get("/api/stats")
            read = client.get("/api/moments/stats")
            assert logged.status_code == read.status_code == 200, (logged.text, read.text)
            if read.json()["checkpoint"] >= logged.json()["events"]:
                return
            assert time.monotonic() < deadline, f"stage behind in {timeout_s}s: {read.text}"
            time.sleep(0.02)


@contextmanager
def distributed(
    nats: NatsServer, postgres: Cluster, *, playbook: Playbook | None = None
) -> Iterator[DistributedServer]:
    """The ingest node and two workers, each a uvicorn server in a thread of this
    process, wired as ``momently serve --log … --store …`` and ``momently worker``
    wire them (processes cost ~10 s of imports each on the loaded test machine; the
    worker processes' own tests are in test_failover.py and test_cluster.py)."""
    n = next(_clusters)
    log = LogSettings.from_url(f"nats://{nats.address}?stream=E{n}&partitions={PARTITIONS}")
    store = f"{postgres.url_for_database('momently')}?schema=e{n}_p{{partition}}"
    outbox = f"{postgres.url_for_database('momently')}?schema=e{n}_outbox"
    chosen = playbook or load_playbook(None)
    reads = Partitions(log, store, moments_url_for(store))
    with ExitStack() as running:
        # The ingest node first: the workers' tracking links point at it.
        node = ingest_app(
            log, (WRITE_KEY,), admin_key=ADMIN_KEY, reads=reads, playbook=chosen,
            tracking_key=TRACKING_KEY, outbox=open_outbox(outbox),
        )  # fmt: skip
        url = running.enter_context(serve(node, closing=[node.state.live.close]))
        for w, spec in enumerate(WORKERS):
            settings = WorkerSettings(
                log=log,
                store_url=store,
                moments_url=moments_url_for(store),
                partitions=tuple(parse_partitions(spec, PARTITIONS)),
                owner=f"e2e-{n}-w{w}",
            )
            # As momently worker --outbox: one outbox for all, a sender per worker, the
            # outcomes published back to the log.
            clock = SystemClock()
            delivery = WorkerDelivery(
                chosen,
                open_outbox(outbox),
                clock,
                environ={},
                partitions=Partitions(log, store, moments_url_for(store)),
                # as momently worker --public-url with MOMENTLY_TRACKING_SECRET
                links=TrackingLinks(url, TokenSigner(TRACKING_KEY, clock)),
                hub=(hub := InAppRelay(log.stream, clock)),  # the node's in-app streams
            )
            running.callback(delivery.close)  # after the worker has stopped
            relay = LiveRelay(log.stream)  # as momently worker: the node's /api/live
            owner: list[Worker] = []  # the worker, for its on_start
            worker = Worker(
                settings,
                MomentDetector(chosen),
                clock,
                deliver=relay.deliver(delivery.for_partition),
                on_moments=relay.on_moments,
                on_start=attach(relay, hub, delivery, owner),
                outbox=delivery.outbox,  # as momently worker --outbox: erasures reach it
            )
            owner.append(worker)
            delivery.start()
            running.enter_context(serve(worker_app(worker)))
        yield DistributedServer(url, int(url.rsplit(":", 1)[1]), stream=log.stream)


def attach(
    relay: LiveRelay, hub: InAppRelay, delivery: WorkerDelivery, owner: list[Worker]
) -> Callable[[EventLog], None]:
    """The worker's ``on_start``, as momently worker's: the live and in-app relays, the
    sender's outcome events, the prediction, model and counter requests get the
    worker's connection."""

    def on_start(log: EventLog) -> None:
        relay.attach(log.client)
        hub.attach(log.client)
        answer_predictions(owner[0], log)
        answer_models(owner[0], log)
        answer_deliveries(owner[0], log, delivery.counters)
        delivery.attach(log)

    return on_start


@pytest.fixture
def distributed_server(nats_server: NatsServer, postgres: Cluster) -> Iterator[DistributedServer]:
    with distributed(nats_server, postgres) as server:
        yield server


MODES = ["embedded", "distributed"]


def complaint_time() -> datetime:
    """Now, for a test whose customer opens the app two minutes before complaining;
    but in an hour's first three minutes, a minute before that hour began.

    The models learn when a customer pays attention by the hour: an app opened in the
    hour before the complaint leaves the complaint's hour unremarkable, and the
    friction send the tests wait for stays silent (every such decision was silent when
    the tests ran in an hour's first two minutes).
    """
    now = datetime.now(UTC)
    if now.minute < 3:
        return now.replace(minute=0, second=0, microsecond=0) - timedelta(minutes=1)
    return now


def daytime_zone() -> str:
    """A time zone where it is about noon now, for customers whose sends must not fall in
    the example playbook's quiet hours (21:30-08:00 local), whenever the tests run."""
    ahead = (12 - datetime.now(UTC).hour) % 24
    ahead = ahead - 24 if ahead > 14 else ahead  # Etc/GMT runs from -12 to +14
    return f"Etc/GMT{-ahead:+d}" if ahead else "Etc/GMT"  # POSIX: Etc/GMT-3 is UTC+3


@dataclass
class IngestNode:
    """An ingest node in a TestClient, with what :class:`tests.conftest.App` gives the
    tracking API's tests: the client, the admin header and the count of what was written
    (the messages in the stream: no worker applies them)."""

    client: TestClient
    stream: str
    admin: dict[str, str]
    baseline: int = 0  # what earlier tests on this node wrote

    def event_count(self) -> int:
        return self.messages() - self.baseline

    def messages(self) -> int:
        log: EventLog = self.client.app.state.writer.log  # type: ignore[attr-defined]

        async def count() -> int:
            info = await log.js.stream_info(self.stream)
            return int(info.state.messages)

        assert self.client.portal is not None
        return self.client.portal.call(count)


@contextmanager
def ingest_node(nats: NatsServer, tmp_path: Path) -> Iterator[IngestNode]:
    """An ingest node with the admin reads over (empty) partition stores, no workers;
    tests may share one, each with its own :attr:`IngestNode.baseline`."""
    stream = f"B{next(_clusters)}"
    log = LogSettings.from_url(f"nats://{nats.address}?stream={stream}&partitions=4")
    stores = f"sqlite:///{tmp_path}/p{{partition}}.db"
    node = ingest_app(
        log, (WRITE_KEY,), admin_key=ADMIN_KEY, reads=Partitions(log, stores, stores),
        tracking_key=TRACKING_KEY, privacy_key=TRACKING_KEY,
    )  # fmt: skip
    with TestClient(node) as client:
        yield IngestNode(client, stream, {"Authorization": f"Bearer {ADMIN_KEY}"})


@contextmanager
def ingest_client(nats: NatsServer, admin_key: str | None = ADMIN_KEY) -> Iterator[TestClient]:
    """An ingest node alone (no workers, no stores) on a stream of its own, in a
    TestClient: its routes answer as the embedded server's (the route tests of
    tests/web run against both)."""
    log = LogSettings.from_url(f"nats://{nats.address}?stream=N{next(_clusters)}&partitions=4")
    node = ingest_app(log, (WRITE_KEY,), admin_key=admin_key, tracking_key=TRACKING_KEY)
    with TestClient(node) as client:
        yield client
