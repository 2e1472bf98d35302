"""The dashboard in real Chromium against the live app: login, report, chart, CSV, a call."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from dashboard_data import XSS, seed, with_dashboard

from factories import ADMIN_TOKEN, AdminClient

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "snippet" / "tests"))
from dni_support import launch  # noqa: E402

ARTIFACTS = ROOT / "test-artifacts"
CHART = """id => {
  const chart = window.dniDashboard.charts[id];
  return {labels: chart.data.labels,
          series: chart.data.datasets.map(d => ({label: d.label, data: d.data}))};
}"""

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = launch(playwright)
        yield chromium
        chromium.close()


@pytest.fixture
def dashboard(live_service):
    app = with_dashboard(live_service.app)  # before the first request reaches the server
    data = seed(app, AdminClient(app.test_client(), ADMIN_TOKEN))
    return live_service.url, data


@pytest.fixture
def page(browser):
    context = browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(10000)
    tab = context.new_page()
    problems = []
    tab.on("pageerror", lambda exc: problems.append(f"pageerror: {exc}"))
    tab.on("console", lambda msg: msg.type == "error" and problems.append(msg.text))
    tab.on("dialog", lambda dialog: (problems.append(f"dialog: {dialog.message}"),
                                     dialog.dismiss()))
    yield tab
    context.close()
    assert problems == []  # no script errors, CSP violations or alert() from data


def chart(page, chart_id: str = "report-chart") -> dict:
    page.wait_for_selector(f'canvas[data-chart="{chart_id}"][data-ready="true"]',
                           state="attached")
    return page.evaluate(CHART, chart_id)


def test_report_chart_csv_and_call(page, dashboard):
    base, data = dashboard
    page.goto(f"{base}/dashboard/")
    assert "/dashboard/login" in page.url
    page.fill("input[name=token]", ADMIN_TOKEN)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/dashboard/")

    # Date range: May 2026, grouped by source (the default).
    page.fill("input[name=start]", "2026-05-01")
    page.fill("input[name=end]", "2026-05-31")
    with page.expect_navigation():
        page.click("form.filters button[type=submit]")
    shown = chart(page)
    assert shown["labels"] == ["bing", "google", "radio"]
    assert shown["series"] == [{"label": "Calls", "data": [1, 1, 1]}]

    # The metric picker redraws the chart with another metric (each select submits its form).
    with page.expect_navigation():
        page.select_option("select[name=metric]", "qualified_calls")
    assert "metric=qualified_calls" in page.url and "start=2026-05-01" in page.url
    assert chart(page)["series"] == [{"label": "Qualified", "data": [0, 1, 1]}]

    # A second dimension: source / medium.
    with page.expect_navigation():
        page.select_option("select[name=then_by]", "medium")
    shown = chart(page)
    assert shown["labels"] == ["bing / cpc", "google / cpc", "radio / offline"]
    assert shown["series"] == [{"label": "Qualified", "data": [0, 1, 1]}]
    assert page.locator("#report-table thead th").nth(1).inner_text().lower() == "medium"

    # Day then medium: days along the axis, a line per medium.
    with page.expect_navigation():
        page.select_option("select[name=group_by]", "day")
    assert "group_by=day" in page.url and "then_by=medium" in page.url
    shown = chart(page)
    assert shown["labels"] == ["2026-05-04", "2026-05-05", "2026-05-10"]
    assert shown["series"] == [{"label": "cpc", "data": [1, 0, 0]},
                               {"label": "offline", "data": [0, 0, 1]}]
    os.makedirs(ARTIFACTS, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-day-by-medium.png"), full_page=True)

    with page.expect_navigation():
        page.select_option("select[name=then_by]", "")
    with page.expect_navigation():
        page.select_option("select[name=metric]", "calls")
    shown = chart(page)
    assert shown["labels"] == ["2026-05-04", "2026-05-05", "2026-05-10"]
    assert shown["series"] == [{"label": "Calls", "data": [1, 1, 1]}]

    # A campaign named <script> is a chart label and a table cell, as text only.
    with page.expect_navigation():
        page.select_option("select[name=group_by]", "campaign")
    assert XSS in chart(page)["labels"]
    assert page.locator("#report-table tbody td", has_text=XSS).count() == 1
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)

    with page.expect_download() as download:
        page.click("#csv-link")
    assert download.value.suggested_filename == "attribution-2026-05-01-2026-05-31.csv"
    text = Path(download.value.path()).read_text(encoding="utf-8-sig")
    assert text.splitlines()[0].startswith("campaign,calls,qualified_calls")
    assert "beta-spring" in text

    page.click("text=Calls")
    page.click(f'a[href="/dashboard/calls/{data["calls"]["c1"]}"]')
    explanation = page.locator("#explanation")
    assert "chosen: the lease covering the call" in explanation.inner_text()
    assert "covers the call: chosen" in explanation.inner_text()
    assert "https://shop.example/contact" in page.locator("#journey").inner_text()


def test_pool_utilisation_chart(page, dashboard):
    base, data = dashboard
    page.goto(f"{base}/dashboard/login")
    page.fill("input[name=token]", ADMIN_TOKEN)
    with page.expect_navigation():
        page.click("button[type=submit]")
    pool_id = data["acme_pool"]["id"]
    page.goto(f"{base}/dashboard/pools/{pool_id}?start=2026-05-04&end=2026-05-04")
    shown = chart(page, "pool-chart")
    # The site's hours (New York, UTC-4 in May): the 13:55 UTC leases peak at 09h.
    assert len(shown["labels"]) == 24 and shown["labels"][9] == "2026-05-04 09h"
    assert shown["series"][0]["data"][9] == 2 and max(shown["series"][0]["data"]) == 2
    assert "America/New_York" in page.locator("#zone").inner_text()
