"""The pool page's accuracy curve and sentence, and the pool list's below-target flag: in the
test client and in real Chromium."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
import sys
from pathlib import Path

import pytest
from dashboard_data import log_in, with_dashboard
from test_pool_accuracy import FAST, START_MS, played_pool

from dni_server.extensions import db
from factories import ADMIN_TOKEN, AdminClient, make_pool, make_site, numbers

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
DAY = dt.datetime.fromtimestamp(START_MS / 1000, dt.UTC).date().isoformat()
WINDOW = {"start": DAY, "end": DAY}  # the simulated site keeps UTC


def two_pools(app, redis_client) -> tuple[int, int]:
    """The same five minutes of traffic on a pool far too small and on a large one."""
    with app.app_context():
        small, _ = played_pool(redis_client, db.session, size=12)
        large, _ = played_pool(redis_client, db.session, size=200)
    return small, large


def expected_accuracy(app, pool_id: int) -> dict:
    admin = AdminClient(app.test_client(), ADMIN_TOKEN)
    day = dt.datetime.fromisoformat(DAY).replace(tzinfo=dt.UTC)
    return admin.get(f"/v1/pools/{pool_id}/health", query_string={
        "start": day.isoformat(), "end": (day + dt.timedelta(days=1)).isoformat()}
    ).json["accuracy"]


def test_the_pool_page_draws_the_curve_and_says_what_more_numbers_would_change(
        dash_app, redis_client):
    small, large = two_pools(dash_app, redis_client)
    client = log_in(dash_app.test_client())
    accuracy = expected_accuracy(dash_app, small)
    html = client.get(f"/dashboard/pools/{small}", query_string=WINDOW).text

    assert '<svg class="accuracy-chart"' in html
    points = re.findall(r'<circle class="point"[^>]*data-numbers="(\d+)" '
                        r'data-accuracy="([\d.]+)"', html)
    assert [(int(n), float(a)) for n, a in points] == [
        (p["numbers"], p["expected_accuracy"]) for p in accuracy["curve"]]
    recommended = accuracy["recommended_numbers"]
    assert 12 < recommended < 200
    assert 'class="mark mark-current" data-numbers="12"' in html
    assert f'class="mark mark-recommended" data-numbers="{recommended}"' in html
    # One day of traffic: a week has seven times its calls.
    at = {p["numbers"]: p["expected_accuracy"] for p in accuracy["curve"]}
    more = round((at[recommended] - at[12]) * accuracy["calls"] * 7)
    assert (f"With {recommended - 12} more numbers, about {more} more calls a week would be "
            "credited to the right visit") in html
    assert f'<span class="value" id="accuracy-recommended">{recommended}</span>' in html
    assert "Erlang B" in html  # the exhaustion sizing stays beside it
    between = accuracy["recommended_range"]
    high = f"to {between['high']}" if between["high"] is not None else "up"
    assert (f'<span id="accuracy-range">(this period\'s calls place it from '
            f'{between["low"]} {high}; a longer period narrows that)</span>') in html
    to_see = accuracy["numbers_to_see_late_calls"]
    assert to_see > 12  # its numbers go round far sooner than the window
    assert f"run about {to_see} numbers for a while, then look again" in html

    html = client.get(f"/dashboard/pools/{large}", query_string=WINDOW).text
    assert 'id="accuracy-to-see"' not in html
    fewer = expected_accuracy(dash_app, large)["recommended_numbers"]
    assert f"With {200 - fewer} fewer numbers the pool would still credit 99% of calls" in html


def test_the_pool_page_recommends_the_window_late_callers_need(dash_app, redis_client):
    short = dataclasses.replace(FAST, attribution_window_seconds=5)
    with dash_app.app_context():
        pool, _ = played_pool(redis_client, db.session, size=200, settings=short)
    accuracy = expected_accuracy(dash_app, pool)
    window = accuracy["recommended_attribution_window_seconds"]
    assert window is not None and window > 5
    html = log_in(dash_app.test_client()).get(f"/dashboard/pools/{pool}",
                                              query_string=WINDOW).text
    assert (f'<span id="accuracy-window">Recommended attribution window: '
            f'{window // 60}:{window % 60:02d} (now 0:05); the curve assumes it.</span>') in html


def test_a_pool_without_calls_has_no_curve(dash_app, admin):
    site = make_site(admin)
    pool = make_pool(admin, site, numbers=numbers(3))
    client = log_in(dash_app.test_client())
    html = client.get(f"/dashboard/pools/{pool['id']}").text
    assert '<svg class="accuracy-chart"' not in html and 'id="accuracy-change"' not in html
    assert "No call in this period" in html
    assert '<span class="value" id="accuracy-recommended">–</span>' in html


def test_the_pool_list_flags_pools_below_their_target(dash_app, redis_client, monkeypatch):
    from attribution import accuracy, accuracy_summary

    small, large = two_pools(dash_app, redis_client)
    client = log_in(dash_app.test_client())
    cells = accuracy_cells(client.get("/dashboard/pools").text)
    assert "not measured yet" in cells[str(small)] and "not measured yet" in cells[str(large)]
    # The worker models each pool's last week (here, one that holds the simulated day).
    services = dash_app.extensions["dni"]
    with dash_app.app_context():
        while accuracy_summary.refresh_one(db.session, services.redis_admin,
                                           START_MS + 86_400_000, services.pools.prefix):
            pass

    def no_model(*args, **kwargs):
        raise AssertionError("the list modelled a pool in the request")

    monkeypatch.setattr(accuracy, "pool_accuracy", no_model)
    cells = accuracy_cells(client.get("/dashboard/pools").text)
    assert "below 99% target" in cells[str(small)] and "on target" not in cells[str(small)]
    assert "on target" in cells[str(large)] and "below" not in cells[str(large)]


def accuracy_cells(html: str) -> dict[str, str]:
    return dict(re.findall(r'<td class="accuracy" data-pool="(\d+)"[^>]*>(.*?)</td>', html,
                           re.S))


# -- in Chromium ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    sys.path.insert(0, str(ROOT / "snippet" / "tests"))
    from dni_support import launch

    with sync_playwright() as playwright:
        chromium = launch(playwright)
        yield chromium
        chromium.close()


@pytest.mark.browser
def test_the_curve_in_chromium(browser, live_service, redis_client):
    app = with_dashboard(live_service.app)
    small, _ = two_pools(app, redis_client)
    accuracy = expected_accuracy(app, small)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(10000)
    page = context.new_page()
    problems = []
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.on("console", lambda msg: msg.type == "error" and problems.append(msg.text))
    try:
        page.goto(f"{live_service.url}/dashboard/login")
        page.fill("input[name=token]", ADMIN_TOKEN)
        page.click("button[type=submit]")
        page.wait_for_url(f"{live_service.url}/dashboard/")
        page.goto(f"{live_service.url}/dashboard/pools/{small}?start={DAY}&end={DAY}")
        chart = page.locator("svg.accuracy-chart")
        assert chart.is_visible()
        box = chart.bounding_box()
        assert box["width"] > 400 and box["height"] > 150
        assert page.locator("svg.accuracy-chart circle.point").count() == len(accuracy["curve"])
        current = page.locator("line.mark-current").bounding_box()
        recommended = page.locator("line.mark-recommended").bounding_box()
        assert box["x"] <= current["x"] < recommended["x"] <= box["x"] + box["width"]
        # Higher accuracy is drawn higher: the last point sits above the first.
        first = page.locator("circle.point").first.bounding_box()
        last = page.locator("circle.point").last.bounding_box()
        assert last["y"] < first["y"]
        sentence = page.locator("#accuracy-change").inner_text()
        assert sentence.startswith(f"With {accuracy['recommended_numbers'] - 12} more numbers")
        os.makedirs(ARTIFACTS, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "dashboard-pool-accuracy.png"), full_page=True)
        page.goto(f"{live_service.url}/dashboard/pools")
        assert page.locator("td.accuracy").count() >= 2
    finally:
        context.close()
    assert problems == []
