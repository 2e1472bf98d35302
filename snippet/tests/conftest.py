"""Fixtures for the snippet's tests: headless Chromium, fixture pages, a fake and the real service.

Pages come from one origin (a local server), the snippet and its API from another (the fake
service, or the real app through ``live_service``), so CORS is real.
"""

from __future__ import annotations

import pytest
from dni_support import DESKTOP_UA, FakeService, PageServer, launch


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = launch(playwright)
        yield chromium
        chromium.close()


@pytest.fixture(scope="session")
def pages():
    server = PageServer()
    yield server
    server.close()


@pytest.fixture
def fake(pages):
    """A fake service that pages embed the snippet from (``pages.configure`` may change it)."""
    service = FakeService().start()
    pages.configure(service.url, service.site)
    yield service
    service.close()


@pytest.fixture
def context(browser):
    ctx = browser.new_context(user_agent=DESKTOP_UA)
    ctx.set_default_timeout(5000)
    yield ctx
    ctx.close()


@pytest.fixture
def page(context):
    """A page that records uncaught errors and console errors in .errors (checked after)."""
    tab = context.new_page()
    watch(tab)
    yield tab
    assert_clean(tab)


@pytest.fixture
def make_page(browser):
    """Pages in contexts of their own (say, with a crawler's user agent), checked like page."""
    made = []

    def make(user_agent: str = DESKTOP_UA):
        ctx = browser.new_context(user_agent=user_agent)
        ctx.set_default_timeout(5000)
        made.append(ctx)
        return watch(ctx.new_page())

    yield make
    for ctx in made:
        for tab in ctx.pages:
            assert_clean(tab)
        ctx.close()


def watch(tab):
    tab.errors = []
    tab.on("pageerror", lambda exc: tab.errors.append(f"pageerror: {exc}"))
    tab.on("console", lambda msg: msg.type in ("error", "warning")
           and tab.errors.append(f"console.{msg.type}: {msg.text}"))
    return tab


def assert_clean(tab):
    """No exception escaped into the page and nothing was logged, bar the browser's own
    network notices ("Failed to load resource"), which no script can prevent."""
    own = [e for e in tab.errors if "Failed to load resource" not in e]
    assert own == []
