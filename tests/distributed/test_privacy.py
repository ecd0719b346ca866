"""Privacy rights in distributed mode, on a nats-server and a PostgreSQL of this test's own.

An ingest node (``ingest_app`` with the partitions' stores and the workers' outbox)
and a worker owning every partition, as ``momently serve --log`` and ``momently
worker --outbox`` wire them. The export gathers every kind of record from the
partitions; consent changes through the node's API; after ``POST /api/privacy/delete``
a raw-byte scan of the nats-server's store directory (the JetStream file store) and of
PostgreSQL's data directory (its WAL included, on a server with ``wal_recycle = off``:
see SECURITY.md) finds none of the customer's identifiers or trait values while another
customer's are still there; her re-ingested events are dropped and counted, at this
ingest node and at another that hears of it through the bucket; and a new worker
taking the partitions over (from the checkpoint, replaying the stream after it) does
not bring her back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import nats as nats_client
import nats.errors as nats_errors
import pytest

from momently.clock import SystemClock
from momently.distributed import privacy
from momently.distributed.admin import Partitions
from momently.distributed.command import moments_url_for, open_outbox
from momently.distributed.deliver import WorkerDelivery
from momently.distributed.log import LogSettings
from momently.distributed.web import ingest_app, worker_app
from momently.distributed.worker import Worker, WorkerSettings
from momently.events import from_ms
from momently.moments.detector import MomentDetector
from momently.moments.playbook import load_playbook
from momently.simulate.engine_policy import without_holdouts
from tests.conftest import ADMIN_KEY, WRITE_KEY
from tests.distributed.e2e import complaint_time, daytime_zone
from tests.nats_server import NatsServer, needs_nats, start_server
from tests.ports import free_port
from tests.postgres import Cluster
from tests.privacy.test_postgres_erase import checkpoint, scan
from tests.web.serve import serve

pytestmark = [pytest.mark.slow, pytest.mark.integration, needs_nats]

PARTITIONS = 4
TAG = "c41d7e"
ERIN: dict[str, str] = {
    "user": f"erin-{TAG}",
    "anon": f"anon-{TAG}",
    "device": f"dev-{TAG}",
    "email": f"erin.{TAG}@example.org",
    "phone": "+4915123987321",
    "first_name": f"Zebulonia{TAG}",
    "colour": f"ultramarine-{TAG}",
}
OLGA_EMAIL = "olga.dist-control@example.net"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
KEY = b"k" * 32  # MOMENTLY_PRIVACY_SECRET, the same for ingest nodes and workers


@pytest.fixture
def nats(tmp_path: Path) -> Iterator[NatsServer]:
    """A server of its own: its store directory holds only this test's streams."""
    server = start_server(tmp_path / "js")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def own_cluster() -> Iterator[Cluster]:
    """A cluster of its own: no other test's rows in the files this test reads."""
    made = Cluster(settings=("wal_recycle=off",))  # erased rows' WAL segments unlinked
    try:
        yield made
    finally:
        made.stop()


class Rig:
    def __init__(self, nats: NatsServer, cluster: Cluster) -> None:
        self.log = LogSettings.from_url(
            f"nats://{nats.address}?stream=PRIV&partitions={PARTITIONS}"
        )
        base = cluster.url_for_database("momently")
        self.store = f"{base}?schema=priv_p{{partition}}"
        self.outbox = f"{base}?schema=priv_outbox"
        # No holdouts: her customer id comes from a message id new each run, so an
        # offer's control group would hold her send back in some runs.
        self.playbook = without_holdouts(load_playbook(None))
        self.url = ""
        self.workers = 0

    @contextmanager
    def worker(self) -> Iterator[None]:
        """A worker owning every partition, with the shared outbox and a sender."""
        self.workers += 1
        clock = SystemClock()
        delivery = WorkerDelivery(
            self.playbook,
            open_outbox(self.outbox),
            clock,
            environ={},
            partitions=Partitions(self.log, self.store, moments_url_for(self.store)),
        )
        settings = WorkerSettings(
            log=self.log,
            store_url=self.store,
            moments_url=moments_url_for(self.store),
            partitions=tuple(range(PARTITIONS)),
            owner=f"priv-w{self.workers}",
        )
        worker = Worker(
            settings,
            MomentDetector(self.playbook),
            clock,
            deliver=delivery.for_partition,
            on_start=delivery.attach,
            outbox=delivery.outbox,
            privacy_key=KEY,
        )
        delivery.start()
        try:
            with serve(worker_app(worker)):
                yield
        finally:
            delivery.close()

    @contextmanager
    def ingest(self, key: bytes = b"k" * 32) -> Iterator[str]:
        reads = Partitions(self.log, self.store, moments_url_for(self.store))
        app = ingest_app(
            self.log,
            (WRITE_KEY,),
            admin_key=ADMIN_KEY,
            reads=reads,
            playbook=self.playbook,
            outbox=open_outbox(self.outbox),
            privacy_key=key,
        )
        with serve(app) as url:
            self.url = self.url or url  # the first node answers the test
            yield url

    def post(self, path: str, body: dict[str, Any]) -> None:
        answer = httpx.post(self.url + path, json=body, auth=(WRITE_KEY, ""), timeout=10)
        assert answer.status_code == 200, answer.text

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.url + path, headers=ADMIN, timeout=30)

    def settle(self, timeout_s: float = 60.0) -> None:
        """Until every partition's worker has applied all the stream holds (polled)."""
        deadline = time.monotonic() + timeout_s
        while not self.get("/api/partitions").json()["settled"]:
            assert time.monotonic() < deadline, "not settled"
            time.sleep(0.02)


def erin_lives(rig: Rig) -> None:
    """Erin arrives anonymous, identifies, and complains with the app open; Olga too."""
    now = int(complaint_time().timestamp() * 1000)
    zone = daytime_zone()  # quiet hours would make the sends later ones, at any hour
    device = {"id": ERIN["device"], "type": "ios", "token": f"tok-{TAG}"}
    at = from_ms(now - 120_000).isoformat()
    rig.post(
        "/v1/track",
        {"anonymousId": ERIN["anon"], "event": "Application Opened", "timestamp": at,
         "context": {"device": device, "timezone": zone}},
    )  # fmt: skip
    rig.post(
        "/v1/identify",
        {"anonymousId": ERIN["anon"], "userId": ERIN["user"],
         "timestamp": from_ms(now - 60_000).isoformat(),
         "context": {"device": device, "timezone": zone},
         "traits": {"email": ERIN["email"], "phone": ERIN["phone"],
                    "first_name": ERIN["first_name"], "favourite_colour": ERIN["colour"]}},
    )  # fmt: skip
    for who, email in ((ERIN["user"], ERIN["email"]), ("olga-dist-control", OLGA_EMAIL)):
        rig.post(
            "/v1/track",
            {"userId": who, "event": "Application Opened", "timestamp": from_ms(now).isoformat(),
             "traits": {"email": email},
             "context": {"device": {"id": f"{who}-phone"}, "timezone": zone}},
        )  # fmt: skip
        rig.post(
            "/v1/track",
            {"userId": who, "event": "Support Message", "timestamp": from_ms(now).isoformat(),
             "properties": {"text": "my parcel never arrived, this is useless, I am furious"},
             "context": {"device": {"id": f"{who}-phone", "type": "ios"}, "timezone": zone}},
        )  # fmt: skip
    rig.settle()


def test_export_delete_suppress_and_restart(nats: NatsServer, own_cluster: Cluster) -> None:
    rig = Rig(nats, own_cluster)
    needles = [*ERIN.values(), TAG]
    with ExitStack() as running:
        running.enter_context(rig.ingest())
        worker = ExitStack()
        worker.enter_context(rig.worker())
        running.callback(worker.close)
        erin_lives(rig)

        # The worker hands the decision to the outbox after its stage commits: polled,
        # with room for a loaded machine (the whole suite on 2 cores).
        deadline = time.monotonic() + 90
        while True:
            answer = rig.get(f"/api/privacy/export/{ERIN['email']}")
            assert answer.status_code == 200, answer.text
            body = answer.json()
            if body["deliveries"]:
                break
            assert time.monotonic() < deadline, (
                f"her send never reached the outbox; her decisions: {body['decisions']}"
            )
            time.sleep(0.05)
        assert body["profile"]["traits"]["favourite_colour"] == ERIN["colour"]
        kinds = {(i["kind"], i["value"]) for i in body["identities"]}
        assert {("user_id", ERIN["user"]), ("email", ERIN["email"]), ("phone", ERIN["phone"]),
                ("anonymous_id", ERIN["anon"]), ("device_id", ERIN["device"])} <= kinds  # fmt: skip
        names = [e.get("event") or e["type"] for e in body["events"]]
        assert "identify" in names and "Support Message" in names
        assert any(m["kind"] == "friction" for m in body["moments"])
        assert body["decisions"] and body["state"] and body["deliveries"]
        # The anonymous visit's partition too, if hers differs (each with what it holds).
        everywhere = [e for p in body["partitions"] for e in p["events"]]
        assert any(e.get("anonymousId") == ERIN["anon"] for e in everywhere)
        assert all(p["profile"] is not None for p in body["partitions"])

        checkpoint(own_cluster)
        held = scan(own_cluster.data, needles)
        assert set(needles) <= {n for hits in held.values() for n in hits}
        assert any(name.startswith("pg_wal/") for name in held), held  # in the WAL too
        assert scan(nats.store_dir, needles), "the scan finds her in the JetStream store"

        # Refusals in the embedded mode's shapes; none writes anything.
        delete = rig.url + "/api/privacy/delete"
        refused = [
            (httpx.get(rig.url + f"/api/privacy/export/{ERIN['user']}", timeout=10), 401),
            (rig.get("/api/privacy/export/nobody-at-all"), 404),
            (httpx.post(delete, json={"id": "nobody"}, headers=ADMIN), 404),
            (httpx.post(delete, json={"who": 1}, headers=ADMIN), 422),
            (httpx.post(rig.url + "/api/customers/olga-dist-control/consent",
                        json={"granted": False, "channel": "pigeon"}, headers=ADMIN), 400),
        ]  # fmt: skip
        for got, status in refused:
            assert got.status_code == status and "error" in got.json(), got.text
        assert rig.get("/api/privacy/stats").json()["erasures"] == 0

        # Consent through the API: an opt-out, recorded in the customer's partition.
        opted = httpx.post(
            rig.url + "/api/customers/olga-dist-control/consent",
            json={"granted": False, "channel": "all"},
            headers=ADMIN,
            timeout=30,
        )
        assert opted.status_code == 200, opted.text
        assert opted.json()["customerId"]
        rig.settle()
        consent = rig.get("/api/profiles/olga-dist-control").json()["consent"]
        assert consent["all:marketing"]["granted"] is False, consent

        # A second ingest node, up before the delete: it hears of it through the bucket.
        other = running.enter_context(rig.ingest())

        answer = httpx.post(
            rig.url + "/api/privacy/delete", json={"id": ERIN["phone"]}, headers=ADMIN, timeout=90
        )
        assert answer.status_code == 200, answer.text
        done = answer.json()
        assert done["customers"] >= 1 and done["events"] >= 4 and done["identities"] >= 5
        assert done["momentRows"] >= 2 and done["deliveries"] >= 1

        # Nothing of hers in PostgreSQL's files nor in JetStream's; Olga is still there.
        checkpoint(own_cluster)
        assert scan(own_cluster.data, needles) == {}
        assert scan(nats.store_dir, needles) == {}
        assert scan(own_cluster.data, [OLGA_EMAIL]) and scan(nats.store_dir, [OLGA_EMAIL])
        for identifier in (ERIN["user"], ERIN["anon"], ERIN["email"]):
            assert rig.get(f"/api/profiles/{identifier}").status_code == 404
        assert rig.get(f"/api/privacy/export/{ERIN['user']}").status_code == 404

        # Her events are dropped at the ingest node, and counted.
        rig.post("/v1/track", {"userId": ERIN["user"], "event": "Product Viewed"})
        rig.post("/v1/track", {"anonymousId": "x", "traits": {"email": ERIN["email"]},
                               "event": "Application Opened"})  # fmt: skip
        rig.settle()
        stats = rig.get("/api/privacy/stats").json()
        assert stats["suppressedEvents"] == 2 and stats["erasures"] == 1
        assert stats["suppressedIdentities"] >= 5
        exported = httpx.get(rig.url + "/metrics", timeout=10).text
        assert "momently_privacy_suppressed_events_total 2.0" in exported, exported
        deadline = time.monotonic() + 10
        while (
            httpx.get(other + "/api/privacy/stats", headers=ADMIN).json()["suppressedIdentities"]
            < stats["suppressedIdentities"]
        ):  # the watcher's update, polled with a deadline
            assert time.monotonic() < deadline, "the other node never heard of the erasure"
            time.sleep(0.02)
        sent = httpx.post(
            other + "/v1/track",
            json={"userId": ERIN["user"], "event": "Product Viewed"},
            auth=(WRITE_KEY, ""),
        )
        assert sent.status_code == 200, sent.text
        assert (
            httpx.get(other + "/api/privacy/stats", headers=ADMIN).json()["suppressedEvents"] == 1
        )
        rig.settle()
        assert rig.get(f"/api/profiles/{ERIN['user']}").status_code == 404

        # An ingest node that has not heard of the erasure (here: another key) takes
        # her event into the stream; the partition's owner drops it.
        deaf = running.enter_context(rig.ingest(key=b"another key, other digests"))
        sent = httpx.post(
            deaf + "/v1/track",
            json={"userId": ERIN["user"], "event": "Product Viewed", "traits": {"x": TAG}},
            auth=(WRITE_KEY, ""),
        )
        assert sent.status_code == 200 and sent.json()["accepted"] == 1, sent.text
        rig.settle()
        assert rig.get(f"/api/profiles/{ERIN['user']}").status_code == 404
        checkpoint(own_cluster)
        assert scan(own_cluster.data, needles) == {}

        # A new owner of the partitions (from the checkpoint, replaying what follows
        # it in the stream) does not bring her back.
        olga = rig.get("/api/profiles/olga-dist-control").json()["counts"]["track"]
        worker.close()
        running.enter_context(rig.worker())
        rig.post("/v1/track", {"userId": "olga-dist-control", "event": "Product Viewed"})
        rig.settle()
        assert rig.get("/api/profiles/olga-dist-control").json()["counts"]["track"] == olga + 1
        for identifier in (ERIN["user"], ERIN["anon"], ERIN["email"]):
            assert rig.get(f"/api/profiles/{identifier}").status_code == 404
        checkpoint(own_cluster)
        assert scan(own_cluster.data, needles) == {}


def test_a_delete_without_an_owner_finishes_once_one_takes_over(
    nats: NatsServer, own_cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No worker runs: the answer is a 503 after the wait, the suppression holds at once,
    and the erasure completes (rows, then the stream's messages) when a worker starts.
    Bob, who used Erin's old phone, is another person: he stays."""
    monkeypatch.setattr(privacy, "WAIT_S", 0.5)
    rig = Rig(nats, own_cluster)
    needles = [v for k, v in ERIN.items() if k != "device"]  # her device is Bob's too
    with ExitStack() as running:
        running.enter_context(rig.ingest())
        worker = ExitStack()
        worker.enter_context(rig.worker())
        running.callback(worker.close)
        erin_lives(rig)
        rig.post(
            "/v1/track",
            {"userId": "bob-second-hand", "event": "Application Opened",
             "context": {"device": {"id": ERIN["device"], "type": "ios"}}},
        )  # fmt: skip
        rig.settle()
        worker.close()

        answer = httpx.post(
            rig.url + "/api/privacy/delete", json={"id": ERIN["email"]}, headers=ADMIN, timeout=30
        )
        assert answer.status_code == 503 and answer.headers["Retry-After"], answer.text
        rig.post("/v1/track", {"userId": ERIN["user"], "event": "Product Viewed"})
        assert rig.get("/api/privacy/stats").json()["suppressedEvents"] == 1

        running.enter_context(rig.worker())
        deadline = time.monotonic() + 60
        while rig.get("/api/privacy/stats").json()["erasedMessages"] < 4:  # polled
            assert time.monotonic() < deadline, "the erasure did not finish"
            time.sleep(0.05)
        rig.settle()
        for identifier in (ERIN["user"], ERIN["anon"], ERIN["email"]):
            assert rig.get(f"/api/profiles/{identifier}").status_code == 404
        assert rig.get("/api/profiles/bob-second-hand").json()["counts"] == {"track": 1}
        checkpoint(own_cluster)
        assert scan(own_cluster.data, needles) == {}
        assert scan(nats.store_dir, needles) == {}
        assert scan(own_cluster.data, [OLGA_EMAIL]) and scan(nats.store_dir, [OLGA_EMAIL])


def test_the_secure_delete_reaches_every_replica(tmp_path: Path) -> None:
    """A three-node cluster, replicas = 3: the delete an erasure makes overwrites the
    message in every node's stream store (``jetstream/$G/streams``). Each node's Raft
    log for the stream (``jetstream/$SYS/_js_``) still holds it until its next
    compaction: not covered, as SECURITY.md says."""
    routes = [free_port() for _ in range(3)]
    urls = ",".join(f"nats://127.0.0.1:{p}" for p in routes)
    with ExitStack() as running:
        nodes = []
        for i, route in enumerate(routes):
            node = start_server(
                tmp_path / f"n{i}",
                ["-n", f"n{i}", "--cluster_name", "priv", "--cluster",
                 f"nats://127.0.0.1:{route}", "--routes", urls],
            )  # fmt: skip
            running.callback(node.stop, True)
            nodes.append(node)
        marker, other = f"erin.{TAG}@example.org".encode(), OLGA_EMAIL.encode()

        def stores(needle: bytes) -> list[Path]:
            return [
                p
                for n in range(3)
                for p in (tmp_path / f"n{n}" / "jetstream" / "$G").rglob("*")
                if p.is_file() and needle in p.read_bytes()
            ]

        async def main() -> None:
            client = await nats_client.connect([f"nats://{n.address}" for n in nodes])
            try:
                js = client.jetstream(timeout=10)
                deadline = time.monotonic() + 30
                while True:  # until the cluster has elected its meta leader (polled)
                    try:
                        await js.add_stream(name="R3", subjects=["r3.*"], num_replicas=3)
                        break
                    except (nats_errors.Error, TimeoutError):
                        assert time.monotonic() < deadline, "no JetStream meta leader"
                        await asyncio.sleep(0.2)
                ack = await js.publish("r3.1", marker)
                last = await js.publish("r3.1", other)
                deadline = time.monotonic() + 30
                while len(stores(other)) < 3:  # written on every replica (polled)
                    assert time.monotonic() < deadline, "not on three replicas"
                    await asyncio.sleep(0.05)
                assert len(stores(marker)) == 3
                assert await js.delete_msg("R3", ack.seq)
                await js.publish("r3.1", b"after")  # a later entry: the delete was applied
                deadline = time.monotonic() + 30
                while stores(marker):  # applied by every replica (polled)
                    assert time.monotonic() < deadline, f"still in {stores(marker)}"
                    await asyncio.sleep(0.05)
                assert len(stores(other)) == 3 and last.seq > ack.seq
            finally:
                await client.close()

        asyncio.run(main())
