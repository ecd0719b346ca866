"""The admin API of the online models: what each has learned, how well it predicts, and
what it says about one customer."""

from __future__ import annotations

import math
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from momently.predict import Predictions
from momently.predict.evaluation import ModelReport
from momently.runtime.stage import StageRunner
from momently.types import Store
from momently.web import models
from momently.web.admin import admin_guard, find_customer
from momently.web.auth import AdminAuth

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": models.Error, "description": "missing or wrong admin key"},
    404: {"model": models.Error, "description": "no such customer"},
}


class ModelInfo(BaseModel):
    """One online model: its version, how much it has learned, and its live metrics.

    Metrics are prequential (each prediction scored before its label was learned):
    ``rocAuc``, ``logLoss``, ``calibrationError`` for classifiers, ``hitAtK`` for next
    need; ``baseline`` holds the same metrics of a naive model on the same labels.
    """

    name: str
    version: str
    kind: str
    updates: int
    metrics: dict[str, float | None]
    baseline: dict[str, float | None]


class Ranked(BaseModel):
    token: str
    p: float


class Receptivity(BaseModel):
    timezone: str
    bestHour: int  # noqa: N815 - the wire format is camelCase
    weekly: list[float]  # P(engage) per local hour of week, Monday 00:00 first


class CustomerPredictions(BaseModel):
    """What the online models say about one customer at ``at``."""

    customerId: str  # noqa: N815
    at: int
    propensity: float
    engageNow: float  # noqa: N815
    receptivity: Receptivity
    channels: dict[str, float]
    bestChannel: str  # noqa: N815
    devices: dict[str, float]
    activeDevice: str | None  # noqa: N815
    fatigue: float
    nextTouchpoints: list[Ranked]  # noqa: N815
    nextCategories: list[Ranked]  # noqa: N815


def _finite(values: dict[str, float]) -> dict[str, float | None]:
    return {k: (round(v, 6) if math.isfinite(v) else None) for k, v in values.items()}


def model_info(report: ModelReport) -> dict[str, Any]:
    return {
        "name": report.name,
        "version": report.version,
        "kind": report.kind,
        "updates": report.updates,
        "metrics": _finite(report.metrics),
        "baseline": _finite(report.baseline),
    }


def predictions_body(customer: str, found: Predictions) -> dict[str, Any]:
    return {
        "customerId": customer,
        "at": found.at_ms,
        "propensity": found.propensity,
        "engageNow": found.engage_now,
        "receptivity": {
            "timezone": found.receptivity.timezone,
            "bestHour": found.receptivity.best_hour(),
            "weekly": list(found.receptivity.weekly()),
        },
        "channels": dict(found.channels),
        "bestChannel": found.best_channel,
        "devices": dict(found.devices),
        "activeDevice": found.active_device,
        "fatigue": found.fatigue,
        "nextTouchpoints": [{"token": t, "p": p} for t, p in found.next_touchpoints],
        "nextCategories": [{"token": t, "p": p} for t, p in found.next_categories],
    }


def models_router(store: Store, runner: StageRunner, admin_key: AdminAuth) -> APIRouter:
    """Routes under ``/api`` for the online models."""
    router = APIRouter(
        tags=["models"], dependencies=[Depends(admin_guard(admin_key))], responses=_ERRORS
    )

    @router.get("/api/models", response_model=list[ModelInfo])
    def list_models() -> list[dict[str, Any]]:
        """Each online model's name, version, number of updates and live metrics."""
        with runner.lock:
            reports = runner.stage.predictor.metrics()
        return [model_info(r) for r in reports]

    @router.get("/api/customers/{id}/predictions", response_model=CustomerPredictions)
    def customer_predictions(
        id: str,  # noqa: A002 - the path names it id
        at: Annotated[
            int | None, Query(description="when (ms since epoch); now by default")
        ] = None,
    ) -> dict[str, Any]:
        """Propensity, receptivity, channel and device, fatigue and next need of one customer."""
        customer = find_customer(store, id)
        with runner.lock:
            found = runner.stage.predictions(customer, at)
        return predictions_body(customer, found)

    return router
