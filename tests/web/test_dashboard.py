"""The dashboard's page and files: served offline, only what is there, with a strict CSP;
by the embedded server and by an ingest node of distributed mode alike."""

from __future__ import annotations

import re
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from momently.web.dashboard import ROOT, dashboard_router
from tests.distributed.e2e import MODES, ingest_client

STATIC = Path(str(ROOT))


Client = Callable[..., AbstractContextManager[TestClient]]


@pytest.fixture(params=MODES)
def client(request: pytest.FixtureRequest) -> Client:
    """The dashboard's router as the embedded server includes it, or an ingest node of
    distributed mode (tests/distributed/e2e.py), which serves the same dashboard."""

    def make(admin_key: str | None = "k") -> AbstractContextManager[TestClient]:
        if request.param == "distributed":
            return ingest_client(request.getfixturevalue("nats_server"), admin_key)
        app = FastAPI()
        app.include_router(dashboard_router(admin_key))
        return TestClient(app)

    return make


def test_page_and_files_are_served_with_a_strict_policy(client: Client) -> None:
    with client() as http:
        page = http.get("/dashboard")
        assert page.status_code == 200
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        policy = page.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "connect-src 'self'" in policy
        assert "unsafe-inline" not in policy
        assert page.headers["x-content-type-options"] == "nosniff"
        assert 'id="login-form"' in page.text
        for path in re.findall(r'(?:src|href)="(/dashboard/static/[^"]+)"', page.text):
            assert http.get(path).status_code == 200, path
        script = http.get("/dashboard/static/js/main.js")
        assert script.headers["content-type"] == "text/javascript; charset=utf-8"
        slash = http.get("/dashboard/", follow_redirects=False)
        assert (slash.status_code, slash.headers["location"]) == (308, "/dashboard")


@pytest.mark.parametrize(
    "path",
    ["nope.js", "../dashboard.py", "js/../../dashboard.py", "index.html", "%2e%2e/live.py", ""],
)
def test_only_the_dashboards_own_files_are_served(client: Client, path: str) -> None:
    with client() as http:
        answer = http.get(f"/dashboard/static/{path}")
        assert answer.status_code == 404
        assert "import" not in answer.text  # no source file leaks


def test_without_an_admin_key_the_page_says_the_admin_api_is_off(client: Client) -> None:
    with client(None) as http:
        page = http.get("/dashboard")
        assert page.status_code == 200
        assert "admin API is off" in page.text
        assert "main.js" not in page.text


def test_every_module_the_scripts_import_exists_and_nothing_is_remote() -> None:
    for script in STATIC.rglob("*.js"):
        text = script.read_text()
        for target in re.findall(r'from "(\.[^"]+)"', text):
            assert (script.parent / target).resolve().is_file(), f"{script.name}: {target}"
        assert "innerHTML" not in text and "insertAdjacentHTML" not in text, script.name
        assert "document.write" not in text and "eval(" not in text, script.name
    for asset in [*STATIC.rglob("*.html"), *STATIC.rglob("*.css"), *STATIC.rglob("*.js")]:
        assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", asset.read_text()), asset.name
