"""``GET /api/models`` on an ingest node: every partition's models, merged.

Each partition learns its own population models in its owner's memory. The node
asks every worker at once (:func:`momently.distributed.gather.gather` on
``<stream>.rpc.models``); each answers, between two batches, with the raw state
of its partitions' prequential trackers (:mod:`momently.predict.evaluation`),
and the node merges them where merging is exact:

- ``updates``, ``labels`` and every count add;
- ROC AUC is the Mann–Whitney AUC of the predictions binned in log-odds, so the
  per-bin counts of negatives and positives add, and the AUC of the sums is the
  AUC of all the partitions' predictions together, exactly as one tracker fed
  them all would give; likewise the calibration bins (labels, sum of p,
  positives) and so ``calibrationError``;
- log loss is kept as a sum: the sums add, over the summed label count;
- hit at k is hits over scored transitions: both add.

The baseline of a classifier is the base rate each partition knew before each of
its labels, so the merged baseline log loss is that of per-partition base rates
(the sum of their losses over the labels); the baseline hit rate is each
partition's popular tokens'. The model's own predictions were made by one model
per partition: the merged metrics describe that population of models.

The answer is the embedded route's list, unchanged. How many partitions it
covers is in the headers: ``X-Momently-Partitions-Answered: 7/9`` and
``X-Momently-Partitions-Missing: 3,5`` (the partitions whose owner did not answer
in time: dead, taking over or busy). No partition at all is a 503 to retry.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import nats.errors
from fastapi import APIRouter, Depends
from fastapi.responses import Response
from nats.aio.client import Client
from nats.aio.subscription import Subscription

from momently.distributed.admin import Partitions
from momently.distributed.gather import COVERAGE_HEADERS, answer, gather, say_coverage
from momently.distributed.log import EventLog
from momently.distributed.worker import Worker
from momently.errors import error_body
from momently.ingest.http import json_response
from momently.predict.evaluation import BinaryTracker, HitTracker, ModelReport
from momently.predict.population import MODELS, Population, Tracker
from momently.web.admin import admin_guard
from momently.web.auth import AdminAuth
from momently.web.models_api import _ERRORS, ModelInfo, model_info

log = logging.getLogger(__name__)
TIMEOUT_S = 5.0


def rpc_subject(stream: str) -> str:
    """The subject of model requests.

    >>> rpc_subject("MOMENTLY")
    'momently.rpc.models'
    """
    return f"{stream.lower()}.rpc.models"


# -- a tracker as JSON, and back ------------------------------------------------------


def tracker_state(tracker: Tracker) -> dict[str, Any]:
    """What merging needs of a tracker, as JSON (the AUC's bins sparse: most are 0)."""
    if isinstance(tracker, HitTracker):
        return {
            "type": "hit", "k": tracker.k, "n": tracker.n, "hits": tracker.hits,
            "baselineHits": tracker.baseline_hits,
        }  # fmt: skip
    return {
        "type": "binary",
        "n": tracker.n,
        "positives": tracker.positives,
        "sumP": tracker.sum_p,
        "loss": tracker.loss,
        "baselineLoss": tracker.baseline_loss,
        "ranked": {str(i): c for i, c in enumerate(tracker.ranked) if c},
        "bins": [list(row) for row in tracker.bins],
    }


def merge_trackers(states: Sequence[dict[str, Any]]) -> Tracker:
    """One tracker whose counts and sums are the states' together (module docstring)."""
    if states and all(s["type"] == "hit" for s in states):
        hit = HitTracker(int(states[0]["k"]))
        for s in states:
            hit.n += int(s["n"])
            hit.hits += int(s["hits"])
            hit.baseline_hits += int(s["baselineHits"])
        return hit
    binary = BinaryTracker()
    for s in states:
        if s["type"] != "binary":
            raise ValueError(f"cannot merge a {s['type']!r} tracker into a binary one")
        binary.n += int(s["n"])
        binary.positives += int(s["positives"])
        binary.sum_p += float(s["sumP"])
        binary.loss += float(s["loss"])
        binary.baseline_loss += float(s["baselineLoss"])
        for i, count in s["ranked"].items():
            binary.ranked[int(i)] += int(count)
        for row, (labels, sum_p, positives) in zip(binary.bins, s["bins"], strict=True):
            row[0] += int(labels)
            row[1] += float(sum_p)
            row[2] += int(positives)
    return binary


def population_state(population: Population) -> list[dict[str, Any]]:
    """One partition's models: name, version, kind, updates and tracker state."""
    return [
        {
            "name": name,
            "version": population.versions[name],
            "kind": str(slot.model),
            "updates": slot.updates,
            "tracker": tracker_state(slot.tracker),
        }
        for name, slot in population.slots.items()
    ]


def merge_models(partitions: Iterable[list[dict[str, Any]]]) -> list[ModelReport]:
    """The partitions' models merged by name and version, in the embedded order."""
    grouped: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for models in partitions:
        for model in models:
            grouped.setdefault((model["name"], model["version"]), []).append(model)
    order = {name: i for i, name in enumerate(MODELS)}
    reports = []
    for (name, version), found in sorted(
        grouped.items(), key=lambda item: (order.get(item[0][0], len(order)), item[0])
    ):
        tracker = merge_trackers([m["tracker"] for m in found])
        reports.append(
            ModelReport(
                name=name,
                version=version,
                kind=str(found[0]["kind"]),
                updates=sum(int(m["updates"]) for m in found),
                metrics=tracker.report(),
                baseline=tracker.baseline(),
            )
        )
    return reports


# -- the worker's side ----------------------------------------------------------------


async def worker_models(worker: Worker) -> dict[str, Any] | None:
    """This worker's partitions' models (None when it owns none: nothing to say)."""
    models: dict[str, list[dict[str, Any]]] = {}
    for partition in sorted(worker.shards):
        found = await worker.in_shard(
            partition, lambda shard: population_state(shard.stage.predictor.population)
        )
        if found is not None:  # else dropped meanwhile: another owner answers for it
            models[str(partition)] = found
    if not models:
        return None
    return {
        "owner": worker.settings.owner,
        "partitions": [int(p) for p in models],
        "models": models,
    }


async def serve_models(worker: Worker, client: Client) -> Subscription:
    """Answer the ingest nodes' model requests (on the worker's loop)."""
    return await answer(
        client, rpc_subject(worker.settings.log.stream), lambda: worker_models(worker)
    )


_starting: set[asyncio.Task[Subscription]] = set()


def answer_models(worker: Worker, log: EventLog) -> None:
    """From the worker's ``on_start`` (on its loop, once connected): start answering."""
    task = asyncio.get_running_loop().create_task(serve_models(worker, log.client))
    _starting.add(task)
    task.add_done_callback(_starting.discard)


# -- the ingest node's side -----------------------------------------------------------


def _unavailable(reason: str) -> Response:
    return json_response(error_body("Unavailable", reason), 503, headers={"Retry-After": "1"})


def models_router(
    partitions: Partitions,
    log_of: Callable[[], EventLog | None],
    admin_key: AdminAuth,
    timeout_s: float | None = None,
) -> APIRouter:
    """``GET /api/models`` on an ingest node (module docstring); the workers have
    ``timeout_s`` (default :data:`TIMEOUT_S`) to answer."""
    router = APIRouter(
        tags=["models"], dependencies=[Depends(admin_guard(admin_key))], responses=_ERRORS
    )
    count = partitions.log.partitions

    @router.get(
        "/api/models",
        response_model=list[ModelInfo],
        responses={
            200: {"headers": COVERAGE_HEADERS},
            503: {"description": "no partition's owner answered: retry"},
        },
    )
    async def list_models(response: Response) -> Any:
        """Each online model's name, version, number of updates and live metrics, merged
        over every partition whose owner answered (headers ``X-Momently-Partitions-*``)."""
        found = log_of()
        if found is None:
            return _unavailable("not connected to the event log yet; retry")
        stream = partitions.log.stream
        try:
            wait = TIMEOUT_S if timeout_s is None else timeout_s
            gathered = await gather(found.client, rpc_subject(stream), count, wait)
        except (nats.errors.Error, TimeoutError, OSError) as error:
            log.warning("could not ask the workers for their models: %s", error)
            return _unavailable("the workers could not be asked; retry")
        states: list[list[dict[str, Any]]] = []
        for body in gathered.answers:
            try:
                states.extend(body["models"][str(p)] for p in body["partitions"])
            except (KeyError, TypeError):
                log.warning("dropped a model answer without its models")
        if not gathered.covered:
            return _unavailable("no worker answered for any partition; retry")
        try:
            merged = [model_info(r) for r in merge_models(states)]
        except (KeyError, TypeError, ValueError) as error:
            log.warning("the workers' models could not be merged: %s", error)
            return _unavailable("the workers' models could not be merged; retry")
        say_coverage(response.headers, len(gathered.covered), count, gathered.missing)
        return merged

    return router
