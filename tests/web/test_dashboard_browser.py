"""The dashboard end to end, in real headless Chromium against a real engine.

The engine is built in-process by ``create_app``, as for ``momently serve``
(the live feed wired to the moment stage and the writer, the dashboard
mounted), and served by uvicorn on a free loopback port, the feed closed as the
server starts to stop. Events go in through the Segment
batch API; the page must show the moments they cause as they happen, explain a
decision and open the customer. Screenshots land in ``test-artifacts/dashboard``.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from playwright.sync_api import Browser, ConsoleMessage, Error, Page, expect, sync_playwright
from starlette.types import Receive, Scope, Send

from momently.clock import FakeClock
from momently.config import Settings
from momently.errors import error_body
from momently.store.sqlite import SqliteStore
from momently.web.app import create_app
from momently.web.dashboard import dashboard_router
from momently.web.live import LiveFeed
from tests.conftest import ADMIN_KEY, START, WRITE_KEY
from tests.web.serve import serve

pytestmark = [pytest.mark.slow, pytest.mark.integration]

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]  # fmt: skip
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "dashboard"
WAIT = 30_000  # ms: generous for a loaded 2-core machine; waits end as soon as the page is ready
EVIL = "buy a toaster <img src=x onerror=\"document.title='pwned'\">"


@dataclass
class Engine:
    url: str
    feed: LiveFeed
    http: httpx.Client

    def batch(self, *messages: dict[str, Any]) -> None:
        answer = self.http.post("/v1/batch", json={"batch": list(messages)})
        assert answer.status_code == 200, answer.text
        assert answer.json()["accepted"] == len(messages)


@contextmanager
def running_engine(
    data_dir: Path, *, live: bool = True, without: tuple[str, ...] = ()
) -> Iterator[Engine]:
    """The engine as ``momently serve`` builds it, live feed and dashboard included;
    ``live=False`` and ``without`` answer 404 for those routes, as an older server would."""
    settings = Settings(data_dir=data_dir, write_keys=(WRITE_KEY,), admin_key=ADMIN_KEY)
    store = SqliteStore(settings.data_dir / "momently.db", synchronous="NORMAL")
    app = create_app(settings, store=store, clock=FakeClock(START))
    feed: LiveFeed = app.state.live
    hidden = set(without) | (set() if live else {"/api/live", "/api/live/token"})

    async def served(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] in hidden:  # as a server without them
            missing = JSONResponse(error_body("HTTPError", "Not Found"), status_code=404)
            await missing(scope, receive, send)
        else:
            await app(scope, receive, send)

    with (
        serve(served, closing=[feed.close]) as url,
        httpx.Client(base_url=url, auth=(WRITE_KEY, ""), timeout=30) as http,
    ):
        yield Engine(url, feed, http)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    with running_engine(tmp_path / "data") as running:
        yield running


@pytest.fixture
def browser() -> Iterator[Browser]:
    path = shutil.which("chromium") or CHROMIUM
    if not Path(path).exists():
        pytest.fail("Chromium is missing: install it (Debian: apt-get install -y chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, headless=True, args=FLAGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def errors() -> list[str]:
    """What the page logged as an error, or threw."""
    return []


@pytest.fixture
def page(browser: Browser, errors: list[str]) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1440, "height": 960})
    tab = context.new_page()
    tab.set_default_timeout(WAIT)
    expect.set_options(timeout=WAIT)

    def console(message: ConsoleMessage) -> None:
        # A refused key or a missing optional route logs "Failed to load resource": expected.
        if message.type == "error" and "Failed to load resource" not in message.text:
            errors.append(message.text)

    def page_error(error: Error) -> None:
        errors.append(str(error))

    tab.on("console", console)
    tab.on("pageerror", page_error)
    try:
        yield tab
    finally:
        context.close()


def shot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def shopper(user: str, **extra: Any) -> dict[str, Any]:
    context = {
        "device": {"id": f"{user}-phone", "type": "ios", "model": "iPhone 15", "token": "tok-1"},
        "timezone": "Europe/London",
        "location": {"latitude": 51.5034, "longitude": -0.1197, "accuracy": 25},
        **extra,
    }
    return {"userId": user, "context": context}


def open_dashboard(page: Page, engine: Engine, status: str = "live") -> None:
    page.goto(engine.url + "/dashboard")
    expect(page.locator("#login")).to_be_visible()
    page.fill("#key", "wrong-key")
    page.click("#login-button")
    expect(page.locator("#login-error")).to_contain_text("refused")
    page.fill("#key", ADMIN_KEY)
    page.click("#login-button")
    expect(page.locator("#login")).to_be_hidden()
    expect(page.locator("#conn")).to_have_attribute("data-status", status)


def test_live_moments_decision_explanation_and_customer(
    page: Page, engine: Engine, errors: list[str]
) -> None:
    open_dashboard(page, engine)
    assert page.evaluate("sessionStorage.getItem('momently.adminKey')") == ADMIN_KEY

    # Posted only now, with the stream open: what appears came live.
    ada = shopper("ada")
    engine.batch(
        {"type": "identify", **ada, "traits": {"first_name": "Ada", "household_size": 5,
                                               "email": "ada@example.com"}},
        {"type": "track", "event": "Application Opened", **ada},
        {"type": "track", "event": "Social Post", **ada, "properties": {
            "text": "My toaster broke this morning and burnt the kids' toast. Useless!",
            "platform": "twitter"}},
        {"type": "track", "event": "Support Message", **ada, "properties": {
            "text": "Second broken toaster this year 😡 I want a refund", "channel": "chat"}},
        {"type": "track", "event": "Products Searched", **ada,
         "properties": {"query": "buy toaster"}},
    )  # fmt: skip
    feed = page.locator("#feed")
    expect(feed.locator(".feed-row.moment.kind-friction").first).to_be_visible()
    expect(feed.locator(".feed-row.moment.kind-buy").first).to_be_visible()
    expect(feed.locator(".feed-row.decision").first).to_be_visible()
    assert page.locator("#feed-count").inner_text().split(" shown")[0] != "0"
    # The tiles refresh when the feed moves, not only on their 5 s poll.
    expect(page.locator("#tile-events .tile-value")).to_have_text(re.compile(r"^[1-9]"))
    shot(page, "01-live-feed")

    # Data is text, never markup, wherever it is shown.
    engine.batch({"type": "track", "event": "Products Searched", **shopper("mallory"),
                  "properties": {"query": EVIL}})  # fmt: skip
    expect(feed.locator(".feed-row.moment .summary", has_text="onerror").first).to_be_visible()
    assert page.title() == "momently · dashboard"
    assert page.locator("#feed img").count() == 0

    # A decision's explanation: candidates, scores, constraints, why.
    chosen = feed.locator(".feed-row.decision.action-send", has_text="family-toaster").first
    expect(chosen).to_be_visible()
    chosen.locator(".what").click()
    explanation = page.locator("#detail .explanation")
    expect(explanation).to_be_visible()
    expect(explanation.locator("h4", has_text="Candidates")).to_be_visible()
    expect(explanation.locator("h4", has_text="Constraints that bound")).to_be_visible()
    expect(explanation.locator("table.candidates tbody tr").first).to_be_visible()
    expect(explanation.locator("h4", has_text="Why").first).to_be_visible()
    expect(feed.locator(".feed-row.decision.selected")).to_have_count(1)
    assert page.url.split("#", 1)[1].startswith("/decision/de-")
    shot(page, "02-decision-explanation")

    # The customer: profile, devices, journeys, moments, decisions, predictions, positions.
    explanation.locator("a.customer-link").first.click()
    profile = page.locator(".customer-profile")
    expect(profile).to_be_visible()
    expect(profile.locator(".customer-head h2")).to_have_text("Ada")
    expect(profile.get_by_text("ada-phone").first).to_be_visible()
    expect(profile.locator("tr.moment-row")).to_have_count(3)
    expect(profile.locator("tr.decision-row").first).to_be_visible()
    expect(profile.get_by_text("Purchase propensity")).to_be_visible()
    expect(profile.locator("svg.map .position")).to_have_count(1)
    shot(page, "03-customer")

    # The map: the playbook's five places and recent positions, drawn without tiles.
    page.click("nav a[data-nav=map]")
    expect(page.locator("#map-view svg.map .place")).to_have_count(5)
    expect(page.locator("#map-view svg.map .position").first).to_be_visible()
    shot(page, "04-map")

    page.click("nav a[data-nav=journeys]")
    expect(page.locator("#journeys-view .journey").first).to_be_visible()
    expect(page.locator("#journeys-view .funnel-row").first).to_be_visible()
    shot(page, "05-journeys")

    page.click("nav a[data-nav=lift]")
    expect(page.locator("#lift-view .card, #lift-view .unavailable").first).to_be_visible()
    shot(page, "06-lift")

    page.click("nav a[data-nav=fatigue]")
    expect(page.locator("#fatigue-view #fatigue")).to_be_visible()
    shot(page, "07-fatigue")

    page.click("nav a[data-nav=ingestion]")
    expect(page.locator("#ingestion-view #ingest-rate")).to_be_visible()
    shot(page, "08-ingestion")

    assert errors == []
    assert engine.feed.subscribers == 1


def test_the_key_is_asked_for_again_when_it_stops_working(page: Page, engine: Engine) -> None:
    open_dashboard(page, engine)
    page.evaluate("sessionStorage.setItem('momently.adminKey', 'stale')")
    page.reload()
    expect(page.locator("#login")).to_be_visible()
    expect(page.locator("#login-error")).to_contain_text("refused")
    assert page.evaluate("sessionStorage.getItem('momently.adminKey')") is None


def test_without_a_live_stream_the_feed_polls_and_missing_routes_say_so(
    page: Page, tmp_path: Path, errors: list[str]
) -> None:
    with running_engine(tmp_path / "data", live=False, without=("/api/lift",)) as old:
        open_dashboard(page, old, status="polling")
        old.batch({"type": "track", "event": "Products Searched", **shopper("bo"),
                   "properties": {"query": "buy toaster"}})  # fmt: skip
        expect(page.locator("#feed .feed-row.moment.kind-buy")).to_have_count(1)
        expect(page.locator("#feed .feed-row.decision")).to_have_count(1)
        page.click("nav a[data-nav=lift]")
        expect(page.locator("#lift-view .unavailable")).to_have_text(
            "Lift: not available on this server"
        )
        shot(page, "09-polling-and-not-available")
    assert errors == []


PROMETHEUS = """# HELP momently_events_accepted_total Events durably appended to the log
# TYPE momently_events_accepted_total counter
momently_events_accepted_total 1500.0
momently_events_rejected_total{reason="InvalidMessage"} 3.0
momently_events_rejected_total{reason="Odd \\"quoted\\" one"} 1.0
momently_commit_seconds_bucket{le="0.005"} 50.0
momently_commit_seconds_bucket{le="0.01"} 90.0
momently_commit_seconds_bucket{le="0.025"} 100.0
momently_commit_seconds_bucket{le="+Inf"} 100.0
momently_commit_seconds_count 100.0
"""


def test_the_pages_own_functions_in_the_browser(page: Page, errors: list[str]) -> None:
    """Prometheus parsing, histogram quantiles and positions, run where they run."""
    app = FastAPI()
    app.include_router(dashboard_router(ADMIN_KEY))
    with serve(app, lifespan="off") as url:
        page.goto(url + "/dashboard")
        found = page.evaluate(
            """async (text) => {
                const m = await import("/dashboard/static/js/metrics.js");
                const g = await import("/dashboard/static/js/geo.js");
                const parsed = m.parsePrometheus(text);
                const buckets = parsed.momently_commit_seconds_bucket;
                return {
                    accepted: m.total(parsed, "momently_events_accepted_total"),
                    reasons: parsed.momently_events_rejected_total.map((r) => r.labels.reason),
                    p50: m.quantile(buckets, 0.5), p95: m.quantile(buckets, 0.95),
                    none: m.quantile([], 0.5),
                    where: g.positionOf({latitude: 51.5, longitude: -0.12, accuracy: 9}),
                    nowhere: [g.positionOf({latitude: 91, longitude: 0}), g.positionOf("x")],
                };
            }""",
            PROMETHEUS,
        )
    assert found["accepted"] == 1500
    assert found["reasons"] == ["InvalidMessage", 'Odd "quoted" one']
    assert found["p50"] == pytest.approx(0.005)
    assert found["p95"] == pytest.approx(0.0175)
    assert found["none"] is None
    assert found["where"] == {"lat": 51.5, "lon": -0.12, "accuracy": 9}
    assert found["nowhere"] == [None, None]
    assert errors == []
