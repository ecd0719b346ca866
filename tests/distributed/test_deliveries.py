"""``GET /api/deliveries/stats`` on an ingest node: the shared outbox, and the senders'
counters added over the workers (asked over NATS as ``GET /api/models`` asks).

Here the workers are made by hand on the node's NATS connection, some partitions
unanswered; a worker's own answer (``WorkerDelivery.counters``) and the route with
two real workers are in test_ingest_routes.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from momently.deliver.store_memory import MemoryOutboxStore
from momently.distributed import deliveries
from momently.distributed.deliveries import WORKERS, merge_counters, rpc_subject
from momently.distributed.gather import ANSWERED, MISSING, answer
from tests.conftest import App
from tests.distributed.e2e import IngestNode, ingest_node
from tests.nats_server import NatsServer

pytestmark = [pytest.mark.slow, pytest.mark.integration]


@pytest.fixture
def node(nats_server: NatsServer, tmp_path: Path) -> Iterator[IngestNode]:
    with ingest_node(nats_server, tmp_path) as found:  # 4 partitions, no workers
        yield found


def counters(submitted: int, sent: int, passes: int, errors: int = 0) -> dict[str, Any]:
    return {
        "counts": {"submitted": submitted, "outcome.sent": sent},
        "worker": {"passes": passes, "errors": errors},
    }


def workers(node: IngestNode, answers: dict[str, tuple[list[int], dict[str, Any]]]) -> None:
    """Workers made by hand: each answers with its partitions and its counters."""
    log = node.client.app.state.writer.log  # type: ignore[attr-defined]

    def build(owner: str, partitions: list[int], found: dict[str, Any]) -> Any:
        async def body() -> dict[str, Any]:
            return {"owner": owner, "partitions": partitions, **found}

        return body

    assert node.client.portal is not None
    for owner, (partitions, found) in answers.items():
        subject = rpc_subject(node.stream)
        node.client.portal.call(answer, log.client, subject, build(owner, partitions, found))


def test_the_counters_add_over_every_worker_that_answered(
    node: IngestNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(deliveries, "TIMEOUT_S", 0.3)  # partition 3's owner never answers
    workers(node, {
        "w0": ([0, 1], counters(submitted=5, sent=4, passes=10)),
        "w1": ([2], counters(submitted=2, sent=2, passes=7, errors=1)),
        # Mid-takeover: partition 1's next owner answers too; its sender counts as well.
        "w2": ([1], counters(submitted=0, sent=1, passes=3)),
        "standby": ([], counters(submitted=0, sent=0, passes=1)),  # owns nothing
        "broken": ([], {"counts": "nonsense"}),  # dropped, not a 500
    })  # fmt: skip
    answer = node.client.get("/api/deliveries/stats", headers=node.admin)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["counts"] == {"submitted": 7, "outcome.sent": 7}
    assert body["worker"] == {"passes": 21, "errors": 1}
    assert body["outbox"] == MemoryOutboxStore().counts()  # no MOMENTLY_OUTBOX: empty
    assert answer.headers[WORKERS] == "4"
    assert answer.headers[ANSWERED] == "3/4"
    assert answer.headers[MISSING] == "3"


def test_no_worker_answering_says_so_with_the_outbox_and_no_5xx(
    node: IngestNode, monkeypatch: pytest.MonkeyPatch, app: App
) -> None:
    monkeypatch.setattr(deliveries, "TIMEOUT_S", 0.2)
    assert node.client.get("/api/deliveries/stats").status_code == 401  # the admin key first
    answer = node.client.get("/api/deliveries/stats", headers=node.admin)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "outbox": MemoryOutboxStore().counts(),
        "counts": {},
        "worker": {"passes": 0, "errors": 0},
    }
    assert answer.headers[WORKERS] == "0"
    assert answer.headers[ANSWERED] == "0/4"
    assert answer.headers[MISSING] == "0,1,2,3"
    # The embedded server's answer has the same fields.
    embedded = app.client.get("/api/deliveries/stats", headers=app.admin).json()
    assert set(embedded) == set(answer.json()) == {"outbox", "counts", "worker"}
    assert set(embedded["worker"]) == {"passes", "errors"}


def test_merge_adds_every_counter() -> None:
    merged = merge_counters([counters(1, 0, 2), counters(0, 3, 4, 5), counters(2, 2, 0)])
    assert merged == {
        "counts": {"submitted": 3, "outcome.sent": 5},
        "worker": {"passes": 6, "errors": 5},
    }
    assert merge_counters([]) == {"counts": {}, "worker": {"passes": 0, "errors": 0}}
