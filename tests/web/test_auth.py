"""Access control: created keys (hashed, scoped, revocable), every admin route guarded,
per-key rate limits with Retry-After, and CORS for browser SDKs."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from fastapi import APIRouter, Depends, FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from starlette.routing import BaseRoute

from momently.auth.keys import FILE, KeyStore, digest
from momently.cli import main, settings_from
from momently.config import Settings
from momently.web.auth import Access, require_scope, scope_for
from tests.conftest import ADMIN_KEY, WRITE_KEY, App

TRACK = {"type": "track", "event": "Product Viewed", "userId": "u1", "messageId": "m-1"}


def keys_of(app: App) -> KeyStore:
    access = app.client.app.state.access  # type: ignore[attr-defined]
    assert isinstance(access, Access) and isinstance(access.store, KeyStore)
    return access.store


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def track(app: App, key: str, message_id: str = "m-1") -> int:
    body = {**TRACK, "messageId": message_id}
    return app.client.post("/v1/track", json=body, auth=(key, "")).status_code


# -- the key table ------------------------------------------------------------------------------


def test_the_table_holds_digests_never_tokens(tmp_path: Path) -> None:
    with KeyStore(tmp_path / FILE) as store:
        _, token = store.create("admin", scopes=["read"], now_ms=1)
        _, write = store.create("write", source="ios", now_ms=2)
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert token.encode() not in raw and write.encode() not in raw
    with sqlite3.connect(tmp_path / FILE) as db:
        stored = {bytes(row[0]) for row in db.execute("SELECT digest FROM keys")}
    assert stored == {digest(token), digest(write)}
    assert (tmp_path / FILE).stat().st_mode & 0o077 == 0


@pytest.mark.parametrize(
    ("kind", "scopes", "source", "message"),
    [
        ("write", ["read"], "ios", "takes no --scope"),
        ("write", [], None, "--source"),
        ("admin", [], None, "at least one --scope"),
        ("admin", ["read"], "ios", "--source is for write keys"),
        ("admin", ["root"], None, "unknown scope"),
        ("write", [], "bad name!", "source name"),
        ("owner", [], None, "write or admin"),
    ],
)
def test_bad_key_arguments_are_refused(
    tmp_path: Path, kind: str, scopes: list[str], source: str | None, message: str
) -> None:
    from momently.errors import ConfigError

    with KeyStore(tmp_path / FILE) as store, pytest.raises(ConfigError, match=re.escape(message)):
        store.create(kind, scopes=scopes, source=source, now_ms=0)
    with KeyStore(tmp_path / FILE) as store:
        assert store.list() == []


def test_cli_creates_lists_and_revokes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = str(tmp_path / "data")
    assert main(["keys", "create", "--data-dir", data, "--kind", "write", "--source", "ios"]) == 0
    out = capsys.readouterr().out.splitlines()
    token = out[1]
    key_id = out[0].split()[0]
    assert token.startswith("mk_w_") and key_id.startswith("key_")
    argv = ["keys", "create", "--data-dir", data, "--scope", "read", "--scope", "privacy"]
    assert main([*argv, "--rate", "5"]) == 0
    admin_token = capsys.readouterr().out.splitlines()[1]
    assert admin_token.startswith("mk_a_")
    assert main(["keys", "list", "--data-dir", data]) == 0
    listing = capsys.readouterr().out
    assert key_id in listing and "scopes=privacy,read" in listing and "rate=5/s" in listing
    assert token not in listing and admin_token not in listing
    assert main(["keys", "revoke", "--data-dir", data, key_id]) == 0
    assert "revoked" in capsys.readouterr().out
    with KeyStore(Path(data) / FILE) as store:
        assert store.find(token) is None and store.find(admin_token) is not None
    assert main(["keys", "revoke", "--data-dir", data, "key_nope"]) == 2
    assert main(["keys", "create", "--data-dir", data, "--kind", "write"]) == 2
    assert main(["keys", "list", "--data-dir", str(tmp_path / "empty")]) == 2
    assert "no key table" in capsys.readouterr().err


# -- keys on the server -------------------------------------------------------------------------


def test_a_created_write_key_ingests_under_its_source(app: App) -> None:
    _, token = keys_of(app).create("write", source="ios-app", now_ms=0)
    assert track(app, token) == 200
    events = app.client.get("/api/events?customer=u1", headers=app.admin).json()["events"]
    assert [e["source"] for e in events] == ["ios-app"]
    assert track(app, WRITE_KEY, "m-2") == 200  # the configured key still works


def test_admin_keys_do_not_ingest_and_write_keys_do_not_administer(app: App) -> None:
    _, admin = keys_of(app).create("admin", scopes=["read", "write"], now_ms=0)
    _, write = keys_of(app).create("write", source="web", now_ms=0)
    assert track(app, admin) == 401
    assert app.client.get("/api/stats", headers=bearer(write)).status_code == 401
    assert app.client.get("/api/stats", headers=bearer(WRITE_KEY)).status_code == 401
    assert app.event_count() == 0


def test_revocation_in_another_process_holds_at_the_next_request(app: App) -> None:
    store = keys_of(app)
    key, token = store.create("admin", scopes=["read"], now_ms=0)
    assert app.client.get("/api/stats", headers=bearer(token)).status_code == 200
    with KeyStore(store.path) as other:  # as `momently keys revoke` does, through its own file
        other.revoke(key.id, now_ms=1)
    answer = app.client.get("/api/stats", headers=bearer(token))
    assert answer.status_code == 401 and answer.json()["error"] == "Unauthorized"


def test_scopes(app: App) -> None:
    store = keys_of(app)
    _, reader = store.create("admin", scopes=["read"], now_ms=0)
    _, writer = store.create("admin", scopes=["write"], now_ms=0)
    _, privacy = store.create("admin", scopes=["privacy"], now_ms=0)
    world = {"name": "Hot doughnuts", "kind": "store", "place": "nowhere"}
    assert app.client.get("/api/stats", headers=bearer(reader)).status_code == 200
    refused = app.client.post("/api/world-events", json=world, headers=bearer(reader))
    assert refused.status_code == 403 and refused.json()["error"] == "Forbidden"
    assert "'write' scope" in refused.json()["reason"]
    # write without read: mutating calls pass the guard (and reach validation), reads do not
    assert app.client.get("/api/stats", headers=bearer(writer)).status_code == 403
    passed = app.client.post("/api/world-events", json=world, headers=bearer(writer))
    assert passed.status_code not in (401, 403)
    assert app.client.get("/api/stats", headers=bearer(privacy)).status_code == 403
    # POSTs that only read need read: a live-stream token, a template preview
    assert app.client.post("/api/live/token", headers=bearer(reader)).status_code == 200
    assert app.client.post("/api/live/token", headers=bearer(writer)).status_code == 403
    assert app.client.get("/metrics", headers=bearer(reader)).status_code == 200
    assert app.client.get("/metrics", headers=bearer(writer)).status_code == 403


def test_require_scope_guards_privacy_routes(app: App) -> None:
    router = APIRouter(dependencies=[Depends(require_scope("privacy"))])

    @router.get("/api/privacy/scope-test/{id}")
    def export(id: str) -> dict[str, str]:  # noqa: A002
        return {"id": id}

    app.client.app.include_router(router)  # type: ignore[attr-defined]
    store = keys_of(app)
    _, privacy = store.create("admin", scopes=["privacy"], now_ms=0)
    _, everything_else = store.create("admin", scopes=["read", "write"], now_ms=0)
    path = "/api/privacy/scope-test/c1"
    assert app.client.get(path, headers=bearer(privacy)).json() == {"id": "c1"}
    assert app.client.get(path, headers=bearer(everything_else)).status_code == 403
    assert app.client.get(path).status_code == 401
    assert app.client.get(path, headers=app.admin).status_code == 200  # configured: all scopes
    assert scope_for("POST", "/api/privacy/delete") == "privacy"
    with pytest.raises(ValueError, match="unknown scope"):
        require_scope("root")


OPEN = re.compile(
    r"^/(v1/.*|t/.*|api/health|api/inapp/stream|api/inapp/inapp\.js|dashboard.*"
    r"|docs.*|redoc|openapi\.json)$"
)


def api_routes(routes: Sequence[BaseRoute]) -> Iterator[APIRoute]:
    """Every APIRoute, also those of included routers (FastAPI may keep them nested)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        nested = getattr(route, "original_router", None)
        if nested is not None:
            yield from api_routes(nested.routes)


def test_every_other_route_needs_an_admin_key(app: App) -> None:
    routes = list(api_routes(app.client.app.routes))  # type: ignore[attr-defined]
    guarded = [r for r in routes if not OPEN.match(r.path)]
    assert {"/api/stats", "/metrics", "/api/live", "/api/world-events"} <= {r.path for r in guarded}
    for route in guarded:
        path = re.sub(r"\{[^}]+\}", "x", route.path)
        for method in route.methods or ():
            for headers in ({}, bearer("wrong"), bearer(WRITE_KEY)):
                answer = app.client.request(method, path, headers=headers)
                assert answer.status_code == 401, (method, path, answer.text)
                assert answer.json()["error"] == "Unauthorized"
    assert app.event_count() == 0


def test_health_and_tracking_stay_open(app: App) -> None:
    assert app.client.get("/api/health").status_code == 200
    assert app.client.get("/t/o/not-a-token.gif").status_code != 401
    assert track(app, WRITE_KEY) == 200


# -- rate limits --------------------------------------------------------------------------------


def test_a_key_over_its_limit_gets_429_with_retry_after(app: App) -> None:
    store = keys_of(app)
    _, slow = store.create("admin", scopes=["read"], rate=0.5, burst=2, now_ms=0)
    _, other = store.create("admin", scopes=["read"], rate=0.5, burst=1, now_ms=0)
    codes = [app.client.get("/api/stats", headers=bearer(slow)).status_code for _ in range(2)]
    assert codes == [200, 200]
    limited = app.client.get("/api/stats", headers=bearer(slow))
    assert limited.status_code == 429 and limited.json()["error"] == "RateLimited"
    assert limited.headers["retry-after"] == "2"  # one token at 0.5/s
    assert app.client.get("/api/stats", headers=bearer(other)).status_code == 200  # per key
    app.clock.advance(1_000)
    assert app.client.get("/api/stats", headers=bearer(slow)).headers["retry-after"] == "1"
    app.clock.advance(1_000)
    assert app.client.get("/api/stats", headers=bearer(slow)).status_code == 200


def test_a_key_with_a_rate_and_no_burst_holds_a_second_of_requests(app: App) -> None:
    _, token = keys_of(app).create("admin", scopes=["read"], rate=3, now_ms=0)
    codes = [app.client.get("/api/stats", headers=bearer(token)).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]


def test_the_server_default_limits_configured_write_keys(
    app_factory: Callable[..., App],
) -> None:
    app = app_factory(rate_limit=2.0)
    assert [track(app, WRITE_KEY, f"m-{i}") for i in range(3)] == [200, 200, 429]
    answer = app.client.post("/v1/track", json=TRACK, auth=(WRITE_KEY, ""))
    assert answer.headers["retry-after"] == "1"
    assert app.event_count() == 2
    app.clock.advance(1_000)
    assert track(app, WRITE_KEY, "m-9") == 200
    # a header key is charged once per request, not once per check
    app.clock.advance(1_000)
    assert [track(app, WRITE_KEY, f"n-{i}") for i in range(3)] == [200, 200, 429]


# -- CORS ---------------------------------------------------------------------------------------


def preflight(client: TestClient, origin: str) -> dict[str, str]:
    answer = client.options(
        "/v1/batch",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    return dict(answer.headers)


def test_cors_only_for_the_configured_origins(app_factory: Callable[..., App]) -> None:
    app = app_factory(cors_origins=("https://shop.example",))
    allowed = preflight(app.client, "https://shop.example")
    assert allowed["access-control-allow-origin"] == "https://shop.example"
    assert "authorization" in allowed["access-control-allow-headers"].lower()
    assert "access-control-allow-origin" not in preflight(app.client, "https://evil.example")
    answer = app.client.post(
        "/v1/track", json=TRACK, auth=(WRITE_KEY, ""), headers={"Origin": "https://shop.example"}
    )
    assert answer.headers["access-control-allow-origin"] == "https://shop.example"
    closed = app_factory()
    assert "access-control-allow-origin" not in preflight(closed.client, "https://shop.example")


def test_cors_and_rate_limit_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOMENTLY_CORS_ORIGINS", "https://a.example, https://b.example:8443")
    monkeypatch.setenv("MOMENTLY_RATE_LIMIT", "50")
    settings = Settings()
    assert settings.cors_origins == ("https://a.example", "https://b.example:8443")
    assert settings.rate_limit == 50
    monkeypatch.delenv("MOMENTLY_CORS_ORIGINS")
    from momently.cli import _parser

    args = _parser().parse_args(
        ["serve", "--cors-origin", "https://x.example", "--cors-origin", "*", "--rate-limit", "9"]
    )
    flagged = settings_from(args)
    assert flagged.cors_origins == ("https://x.example", "*") and flagged.rate_limit == 9
    with pytest.raises(ValueError, match="CORS origin"):
        Settings(cors_origins=("shop.example/path",))


def test_a_router_alone_with_one_key_works_as_before() -> None:
    from momently.web.admin import admin_guard

    app = FastAPI()
    app.get("/x", dependencies=[Depends(admin_guard(ADMIN_KEY))])(lambda: {"ok": True})
    client = TestClient(app, raise_server_exceptions=False)
    assert client.get("/x", headers=bearer(ADMIN_KEY)).json() == {"ok": True}
