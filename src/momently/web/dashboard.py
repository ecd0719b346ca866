"""The dashboard: one HTML page and its scripts, served by the engine itself.

No build step and no third-party asset: the page is hand-written HTML, CSS and
JavaScript modules under ``static/dashboard``, so it works offline. The page
holds no data; it asks for the admin key once (kept in the tab's
``sessionStorage``) and reads everything through the documented admin API with
``Authorization: Bearer``, plus the live feed (``/api/live``). A strict
Content-Security-Policy (same-origin scripts, no inline code, no remote
connections) backs up the rule the scripts follow: data is only ever set as
text, never as markup.
"""

from __future__ import annotations

from importlib import resources
from importlib.resources.abc import Traversable
from typing import Final

from fastapi import APIRouter
from fastapi.responses import JSONResponse, RedirectResponse, Response

from momently.errors import error_body
from momently.web.auth import AdminAuth, as_access

ROOT: Final = resources.files("momently.web").joinpath("static/dashboard")
TYPES: Final = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
HEADERS: Final = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
}


def _files(folder: Traversable, prefix: str = "") -> dict[str, Traversable]:
    """Every servable file under ``folder`` by its relative path: the only paths served."""
    found: dict[str, Traversable] = {}
    for entry in folder.iterdir():
        name = prefix + entry.name
        if entry.is_dir():
            found.update(_files(entry, name + "/"))
        elif any(name.endswith(suffix) for suffix in TYPES):
            found[name] = entry
    return found


def dashboard_router(admin_key: AdminAuth, *, prefix: str = "/dashboard") -> APIRouter:
    """``GET /dashboard`` (the page) and ``GET /dashboard/static/{path}`` (its files).

    The page and its files hold nothing secret, so they are served without the
    key; every piece of data the page shows comes from routes that need it. With
    no admin key configured, the page says that the admin API is off.
    """
    files = _files(ROOT)
    enabled = as_access(admin_key).enabled
    router = APIRouter(include_in_schema=False)

    def page() -> Response:
        name = "index.html" if enabled else "off.html"
        return Response(files[name].read_bytes(), media_type=TYPES[".html"], headers=HEADERS)

    @router.get(prefix)
    def dashboard() -> Response:
        return page()

    @router.get(prefix + "/")
    def dashboard_slash() -> Response:
        return RedirectResponse(prefix, status_code=308)

    @router.get(prefix + "/static/{path:path}")
    def static(path: str) -> Response:
        found = files.get(path)
        if found is None or path.endswith(".html"):
            body = error_body("NotFound", f"no dashboard file {path!r}", "path")
            return JSONResponse(body, status_code=404)
        suffix = path[path.rfind(".") :]
        return Response(found.read_bytes(), media_type=TYPES[suffix], headers=HEADERS)

    return router
