"""A worker's sender checks consent at send time in the customer's own partition, and a
worker process's ``/metrics`` carries its senders' counters."""

from __future__ import annotations

import asyncio
import gc
import signal
import subprocess
import time
import weakref
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from momently.clock import FakeClock
from momently.decide.records import Decision
from momently.deliver.errors import PermanentSendError
from momently.deliver.store_memory import MemoryOutboxStore
from momently.distributed.admin import Partitions
from momently.distributed.deliver import PartitionView, WorkerDelivery
from momently.distributed.log import LogSettings
from momently.distributed.partition import partition_of
from momently.engine import Engine
from momently.events import Event, from_ms
from momently.moments.playbook import load_playbook
from momently.privacy.consent import ConsentGate
from momently.runtime.delivery import DeliveryCollector, Routes
from momently.runtime.stage import Decided
from momently.store import open_store
from momently.store.memory import MemoryStore
from momently.store.moments_memory import MemoryMomentStore
from tests.deliver.fakes import ScriptedChannel, message
from tests.distributed.e2e import complaint_time, daytime_zone
from tests.distributed.test_failover import metrics, publish, sqlite_stores, start_worker
from tests.ports import free_port

T0 = 1_790_000_000_000
PARTITIONS = 3


def event(n: int, user: str, name: str, **fields: object) -> Event:
    return Event(
        message_id=f"m{n}", type="track", timestamp=from_ms(T0 + n), received_at=from_ms(T0 + n),
        user_id=user, event=name, **fields,  # type: ignore[arg-type]
    )  # fmt: skip


def test_the_sender_checks_consent_in_the_customers_partition(tmp_path: Path) -> None:
    template = f"sqlite:///{tmp_path}/p{{partition}}.db"
    customers: dict[str, str] = {}
    history = {
        "ann": [
            event(1, "ann", "Application Opened"),
            event(2, "ann", "Unsubscribed", properties={"channel": "in_app"}),
        ],
        "eve": [event(3, "eve", "Application Opened")],
    }
    assert partition_of("u:ann", PARTITIONS) != partition_of("u:eve", PARTITIONS)
    for user, events in history.items():
        partition = partition_of("u:" + user, PARTITIONS)
        store = open_store(template.replace("{partition}", str(partition)))
        try:
            Engine(store).ingest(events)
            customers[user] = store.owner(("user_id", user)) or ""
        finally:
            store.close()

    partitions = Partitions(LogSettings(partitions=PARTITIONS), template, template)
    view = PartitionView(partitions)
    assert view.profile(customers["ann"]) is not None
    assert view.profile("nobody") is None
    assert ("user_id", "eve") in view.identities(customers["eve"])

    provider = ScriptedChannel("hub")
    delivery = WorkerDelivery(
        load_playbook(),
        MemoryOutboxStore(),
        FakeClock(T0),
        routes=Routes(routes={"in_app": [provider]}),
        partitions=partitions,
    )
    try:
        (gate,) = delivery.routes.routes["in_app"]
        assert isinstance(gate, ConsentGate)
        with pytest.raises(PermanentSendError, match="consent at send time"):
            gate.send(message("de-1", "in_app", customers["ann"]))
        gate.send(message("de-2", "in_app", customers["eve"]))
        assert [m.decision_id for m in provider.sent] == ["de-2"]
    finally:
        delivery.close()


@pytest.mark.slow
@pytest.mark.integration
def test_a_worker_process_exports_its_senders_counters(
    log_url: Callable[..., str], tmp_path: Path
) -> None:
    """``momently worker --outbox``: after a send, its ``/metrics`` has the embedded
    server's delivery metrics (``momently_delivery_total`` by what happened, the outbox
    by state) beside the partitions' own."""
    now = int(complaint_time().timestamp() * 1000)
    context = {
        "device": {"id": "d-gus", "type": "ios", "token": "tok-gus"},
        "timezone": daytime_zone(),  # no quiet hours make the send a later one
    }
    complaint = {"text": "this is terrible, my order is late again!!"}
    batch = [
        Event(
            message_id=f"gus-{n}",
            type="track",
            timestamp=from_ms(at),
            received_at=from_ms(at),
            user_id="gus",
            event=name,
            context=context,
            properties=props,
        )  # fmt: skip
        for n, (at, name, props) in enumerate(
            [(now - 120_000, "Application Opened", {}), (now, "Support Message", complaint)]
        )
    ]
    url = log_url(partitions=2)
    asyncio.run(publish(url, batch))
    port = free_port()
    log = tmp_path / "worker.log"
    proc = start_worker(url, sqlite_stores(tmp_path), "counted", port, log)
    try:
        deadline = time.monotonic() + 90
        while True:  # polled until the send is out and counted: readiness, not timing
            assert proc.poll() is None, log.read_text()[-3000:]
            found = metrics(port)
            sent = found.get('momently_delivery_total{what="outcome.sent"}', 0)
            if sent >= 1 and found.get('momently_outbox_entries{state="sent"}') == sent:
                break
            assert time.monotonic() < deadline, (found, log.read_text()[-3000:])
            time.sleep(0.1)
        assert found['momently_delivery_total{what="submitted"}'] >= 1
        assert found["momently_partitions_owned"] == 2  # the partitions' metrics beside them
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def test_a_workers_metrics_answer_while_the_outbox_does_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The shared outbox down (PostgreSQL restarting): the scrape leaves its entries out
    and still gives the counters, and with them the partitions' metrics."""
    outbox = MemoryOutboxStore()
    delivery = WorkerDelivery(load_playbook(), outbox, FakeClock(T0))
    registry = CollectorRegistry()
    registry.register(DeliveryCollector(delivery))
    assert b'momently_outbox_entries{state="pending"} 0.0' in generate_latest(registry)

    def down() -> dict[str, int]:
        raise psycopg.OperationalError("the database system is shutting down")

    monkeypatch.setattr(outbox, "counts", down)
    text = generate_latest(registry).decode()
    assert "momently_outbox_entries{" not in text
    assert "# TYPE momently_delivery_total counter" in text
    delivery.close()


def unroutable(n: int) -> Decision:
    """A send on push, which the test's routes have no provider for."""
    return Decision(
        decision_id=f"de-push-{n}", customer_id="c-1", moment_id=f"mo-{n}", moment_name="x",
        moment_kind="buy", at_ms=T0, action="send", offer="cart-reminder", channel="push",
    )  # fmt: skip


def test_a_partition_let_go_leaves_its_counts_and_not_its_stores() -> None:
    """A worker keeps what a partition's submitter counted after the partition is let go
    (a takeover elsewhere), but not the submitter, nor the partition's stores."""
    delivery = WorkerDelivery(
        load_playbook(),
        MemoryOutboxStore(),
        FakeClock(T0),
        routes=Routes(routes={"in_app": [ScriptedChannel("hub")]}),
    )
    try:
        store = MemoryStore()
        submit = delivery.for_partition(store, MemoryMomentStore())
        submit(Decided(decisions=[unroutable(1)]))
        counted = {"unroutable": 1, "outcome.dead": 1}  # recorded, then heard back
        assert delivery.counters()["counts"] == counted
        gone = weakref.ref(store)
        del submit, store  # the partition's stage lets them go
        gc.collect()
        assert gone() is None
        assert delivery.counters()["counts"] == counted
        again = delivery.for_partition(MemoryStore(), MemoryMomentStore())  # taken back
        again(Decided(decisions=[unroutable(2)]))
        assert delivery.counters()["counts"] == {"unroutable": 2, "outcome.dead": 2}
    finally:
        delivery.close()
