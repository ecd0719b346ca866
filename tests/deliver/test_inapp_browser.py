"""The in-app snippet in real headless Chromium: it subscribes, shows each message once, safely."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from playwright.sync_api import BrowserContext, Page, sync_playwright

from momently.clock import FakeClock
from momently.deliver.channels.inapp import InAppChannel, InAppHub
from momently.deliver.inapp_routes import inapp_router, inapp_token
from momently.deliver.message import OutboundMessage
from momently.deliver.tracking import TokenSigner
from tests.deliver.fakes import message
from tests.deliver.live import live_server

pytestmark = [pytest.mark.slow, pytest.mark.integration]
CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


def chromium_path() -> str:
    found = shutil.which("chromium") or (CHROMIUM if Path(CHROMIUM).exists() else None)
    if found is None:
        pytest.fail("Chromium is missing: install it (Debian: apt-get install -y chromium)")
    return found


@pytest.fixture
def browser() -> Iterator[BrowserContext]:
    path = chromium_path()
    with tempfile.TemporaryDirectory() as profile, sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=path, headless=True, args=FLAGS
        )
        try:
            yield context
        finally:
            context.close()


def note(decision: str, text: str, url: str | None = "https://shop.example/p/1") -> OutboundMessage:
    return msgspec.structs.replace(
        message(decision, "inapp"), kind="in_app", to="d1", title=f"Title {decision}", text=text,
        url=url,
    )  # fmt: skip


def cards(page: Page) -> list[str]:
    return page.locator(".momently-inapp .momently-inapp-body").all_inner_texts()


def test_snippet_shows_messages_once(browser: BrowserContext, clock: FakeClock) -> None:
    hub = InAppHub(clock)
    signer = TokenSigner(b"b" * 32, clock)
    channel = InAppChannel(hub, clock)
    token = inapp_token(signer, "c1", "d1", ttl_ms=600_000)
    app = FastAPI()
    app.include_router(inapp_router(hub, signer))

    @app.get("/")
    def page() -> HTMLResponse:
        return HTMLResponse(
            "<!doctype html><html><head><title>shop</title>"
            f'<script src="/api/inapp/inapp.js" data-customer="c1" data-device="d1" '
            f'data-token="{token}"></script></head><body><h1>Shop</h1></body></html>'
        )

    channel.send(note("de-1", "queued before the page opened"))
    with live_server(app) as url:
        try:
            tab = browser.new_page()
            tab.goto(url + "/")
            tab.wait_for_selector(".momently-inapp", timeout=15_000)
            assert cards(tab) == ["queued before the page opened"]
            first = tab.locator(".momently-inapp").first
            assert first.locator(".momently-inapp-title").inner_text() == "Title de-1"
            assert first.locator("a").get_attribute("href") == "https://shop.example/p/1"

            # Live, while connected: a hostile body is shown as text, a javascript: link is dropped.
            evil = "<img src=x onerror=\"document.title='pwned'\">"
            channel.send(note("de-2", evil, url="javascript:alert(1)"))
            channel.send(note("de-2", "the same send again"))  # same key: not shown twice
            channel.send(note("de-3", "third"))
            tab.wait_for_function("document.querySelectorAll('.momently-inapp').length >= 3")
            assert cards(tab) == ["queued before the page opened", evil, "third"]
            assert tab.title() == "shop"
            assert tab.locator(".momently-inapp").nth(1).locator("a").count() == 0

            # Closing a card removes it; reloading does not show seen messages again.
            tab.locator(".momently-inapp-close").first.click()
            assert len(cards(tab)) == 2
            tab.reload()
            channel.send(note("de-4", "after reload"))
            tab.wait_for_selector(".momently-inapp", timeout=15_000)
            assert cards(tab) == ["after reload"]
        finally:
            hub.close()
