"""schemathesis against the OpenAPI document the app serves, every operation in it.

The schema is read from ``/openapi.json`` of a live app (in process, lifespan run),
so an endpoint added later is tested without touching this file. Each operation
gets a bounded number of generated requests (``EXAMPLES``; the ``fuzz`` Hypothesis
profile raises it), sent with the admin key (``/api``) or a write key (``/v1``),
and every answer must:

* not be a 5xx (``not_a_server_error``), nor crash the app;
* match the documented response schema, status code and content type;
* if it refused the request (4xx), have written nothing: the store's counts of
  events, customers and identities are unchanged.

Server-Sent Event streams are left out (they answer by never ending); they have
tests of their own in ``tests/web/test_live.py`` and ``tests/deliver/test_inapp.py``.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from momently.config import Settings
from momently.web.app import create_app
from tests.conftest import ADMIN_KEY, WRITE_KEY

EXAMPLES = 300 if os.environ.get("HYPOTHESIS_PROFILE") == "fuzz" else 12
WRITE_AUTH = "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
STREAMS = {"/api/live", "/api/inapp/stream"}  # endless text/event-stream answers
CHECKS = [
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
    content_type_conformance,
]


def is_stream(operation: Any) -> bool:
    if operation.path in STREAMS:
        return True
    ok = operation.definition.raw.get("responses", {}).get("200", {})
    return "text/event-stream" in ok.get("content", {})


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastAPI]:
    data = Path(tmp_path_factory.mktemp("openapi"))
    app = create_app(
        Settings(data_dir=data, write_keys=(WRITE_KEY,), admin_key=ADMIN_KEY, synchronous="OFF"),
        delivery_worker=False,
    )
    with TestClient(app):  # the lifespan runs once, around every generated request
        yield app


def counts(app: FastAPI) -> dict[str, int]:
    found: dict[str, int] = app.state.store.stats()
    return found


def fuzz_operations(app: FastAPI, examples: int) -> tuple[int, dict[str, str]]:
    """Run every operation of the served schema; the number of requests, and the failures
    by operation (each operation runs to its end, so one report names them all)."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    calls = 0
    failures: dict[str, str] = {}
    for result in schema.get_all_operations():
        if not isinstance(result, Ok):
            failures[f"schema {len(failures)}"] = str(result.err())
            continue
        operation = result.ok()
        if is_stream(operation):
            continue

        @given(case=operation.as_strategy())
        @settings(
            max_examples=examples,
            deadline=None,
            derandomize=True,
            database=None,
            phases=[Phase.explicit, Phase.generate],  # a failure is reported as found, unshrunk
            suppress_health_check=list(HealthCheck),
        )
        def run(case: Any) -> None:
            nonlocal calls
            calls += 1
            auth = WRITE_AUTH if case.path.startswith("/v1/") else f"Bearer {ADMIN_KEY}"
            before = counts(app)
            response = case.call_and_validate(headers={"Authorization": auth}, checks=CHECKS)
            if 400 <= response.status_code < 500:
                assert counts(app) == before, "a refused request wrote something"

        try:
            run()
        except (Exception, BaseExceptionGroup) as error:  # noqa: BLE001 - reported below
            failures[f"{operation.method.upper()} {operation.path}"] = str(error)[:1500]
    return calls, failures


@pytest.mark.slow
def test_every_operation_answers_without_5xx_and_as_documented(served: FastAPI) -> None:
    calls, failures = fuzz_operations(served, EXAMPLES)
    assert calls > 0
    assert not failures, "\n\n".join(f"{op}:\n{why}" for op, why in failures.items())
