"""A worker's sender checks consent at send time in the customer's own partition."""

from __future__ import annotations

from pathlib import Path

import pytest

from momently.clock import FakeClock
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
from momently.runtime.delivery import Routes
from momently.store import open_store
from tests.deliver.fakes import ScriptedChannel, message

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
