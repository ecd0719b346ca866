"""``GET /api/models`` on an ingest node: the partitions' models merged exactly.

The merge is checked against one tracker fed every partition's labels, and over
NATS with workers' answers made by hand (some partitions unanswered); the route
with two real workers is in test_ingest_routes.py.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from momently.distributed import models
from momently.distributed.gather import ANSWERED, MISSING, answer
from momently.distributed.models import (
    merge_models,
    merge_trackers,
    population_state,
    rpc_subject,
    tracker_state,
)
from momently.predict.evaluation import BinaryTracker, HitTracker
from momently.predict.population import MODELS, Population
from momently.predict.settings import PredictSettings
from momently.web.models_api import ModelInfo
from tests.conftest import App
from tests.distributed.e2e import IngestNode, ingest_node
from tests.nats_server import NatsServer


def labels(seed: int, n: int) -> list[tuple[bool, float]]:
    """Predictions and labels, rare positives with some signal."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        y = rng.random() < 0.1
        p = min(1.0, max(0.0, rng.betavariate(2, 12) + (0.15 if y else 0.0)))
        out.append((y, p))
    return out


def test_merged_binary_metrics_are_those_of_one_tracker_fed_every_partition() -> None:
    parts = [labels(seed, n) for seed, n in ((1, 400), (2, 50), (3, 900))]
    whole = BinaryTracker()
    states = []
    for part in parts:
        tracker = BinaryTracker()
        for y, p in part:
            tracker.update(y, p)
            whole.update(y, p)
        states.append(json.loads(json.dumps(tracker_state(tracker))))  # as sent
    merged = merge_trackers(states)
    assert merged.report() == pytest.approx(whole.report(), rel=1e-12)
    assert merged.report()["labels"] == sum(len(p) for p in parts)
    assert merged.report()["rocAuc"] == whole.roc_auc()  # the bins add: exactly
    # The baseline is each partition's own base rate: the sum of their losses.
    baseline_losses = [s["baselineLoss"] for s in states]
    assert merged.baseline()["logLoss"] == pytest.approx(sum(baseline_losses) / merged.n)


def test_merged_hit_rates_add_hits_and_transitions() -> None:
    a, b = HitTracker(3), HitTracker(3)
    for n, tracker in enumerate((a, a, a, b)):
        tracker.update(hit=n % 2 == 0, baseline_hit=True)
    merged = merge_trackers([tracker_state(a), tracker_state(b)])
    assert merged.report() == {"labels": 4.0, "hitAt3": 0.5}  # 2 hits of 4
    assert merged.baseline() == {"hitAt3": 1.0}
    with pytest.raises(ValueError, match="hit"):
        merge_trackers([tracker_state(BinaryTracker()), tracker_state(a)])


def population(seed: int) -> Population:
    """A partition's models after some labels and updates."""
    pop = Population(PredictSettings())
    for name in ("propensity", "fatigue"):
        slot = pop.slots[name]
        assert isinstance(slot.tracker, BinaryTracker)
        for y, p in labels(seed, 100 + seed):
            slot.tracker.update(y, p)
        slot.updates += 100 + seed
    hits = pop.slots["next_touchpoint"]
    assert isinstance(hits.tracker, HitTracker)
    for n in range(seed):
        hits.tracker.update(hit=n % 3 == 0, baseline_hit=n % 2 == 0)
    hits.updates += 4 * seed
    return pop


@pytest.fixture
def node(nats_server: NatsServer, tmp_path: Path) -> Iterator[IngestNode]:
    with ingest_node(nats_server, tmp_path) as found:  # 4 partitions, no workers
        yield found


def workers(node: IngestNode, owned: dict[str, list[int]]) -> dict[int, Population]:
    """Workers made by hand on the node's NATS connection: each answers for its
    partitions with their populations' states. Returns the populations."""
    pops = {p: population(p + 1) for ps in owned.values() for p in ps}
    log = node.client.app.state.writer.log  # type: ignore[attr-defined]

    def build(owner: str, ps: list[int]) -> Any:
        async def body() -> dict[str, Any]:
            states = {str(p): population_state(pops[p]) for p in ps}
            return {"owner": owner, "partitions": ps, "models": states}

        return body

    for owner, ps in owned.items():
        subject = rpc_subject(node.stream)
        assert node.client.portal is not None
        node.client.portal.call(answer, log.client, subject, build(owner, ps))
    return pops


def test_an_ingest_node_merges_the_workers_models_and_names_the_missing_partitions(
    node: IngestNode, app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(models, "TIMEOUT_S", 0.3)  # partition 3's owner never answers
    pops = workers(node, {"w0": [0, 1], "w1": [2]})
    answer = node.client.get("/api/models", headers=node.admin)
    assert answer.status_code == 200, answer.text
    assert answer.headers[ANSWERED] == "3/4"
    assert answer.headers[MISSING] == "3"
    found = {m["name"]: m for m in answer.json()}
    # The embedded route's schema and models: the same names in the same order, the
    # same versions and kinds, every field of ModelInfo.
    embedded = app.client.get("/api/models", headers=app.admin).json()
    assert [m["name"] for m in answer.json()] == [m["name"] for m in embedded] == list(MODELS)
    for mine, theirs in zip(answer.json(), embedded, strict=True):
        assert set(mine) == set(theirs) == set(ModelInfo.model_fields)
        assert (mine["version"], mine["kind"]) == (theirs["version"], theirs["kind"])
        ModelInfo.model_validate(mine)
    # The sums over partitions.
    for name in MODELS:
        slots = [pops[p].slots[name] for p in (0, 1, 2)]
        assert found[name]["updates"] == sum(s.updates for s in slots)
        assert found[name]["metrics"]["labels"] == sum(s.tracker.n for s in slots)
    whole = BinaryTracker()  # propensity's labels of partitions 0-2, in one tracker
    for p in (0, 1, 2):
        for y, prob in labels(p + 1, 100 + p + 1):
            whole.update(y, prob)
    assert found["propensity"]["metrics"]["rocAuc"] == pytest.approx(whole.roc_auc(), abs=1e-6)
    assert found["propensity"]["metrics"]["logLoss"] == pytest.approx(
        whole.report()["logLoss"], abs=1e-6
    )
    hits = [pops[p].slots["next_touchpoint"].tracker for p in (0, 1, 2)]
    assert found["next_touchpoint"]["metrics"]["hitAt3"] == pytest.approx(
        sum(h.hits for h in hits if isinstance(h, HitTracker)) / 6, abs=1e-6
    )
    assert merge_models([population_state(pops[p]) for p in (0, 1, 2)])[0].updates == sum(
        pops[p].slots["propensity"].updates for p in (0, 1, 2)
    )


def test_no_worker_answering_is_a_503_to_retry(
    node: IngestNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(models, "TIMEOUT_S", 0.2)
    assert node.client.get("/api/models").status_code == 401  # the admin key first
    answer = node.client.get("/api/models", headers=node.admin)
    assert answer.status_code == 503, answer.text
    assert answer.headers["Retry-After"] == "1"
    assert answer.json()["error"] == "Unavailable"
