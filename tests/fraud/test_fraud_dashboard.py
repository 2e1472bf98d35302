"""The dashboard's fraud page: the publisher quality report with its chart, the block list
and its CSV import (one post without script; in chunks with a progress bar and a per-row
report in real Chromium), and what a publisher may see there."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from factories import (
    ADMIN_TOKEN,
    TWILIO_TOKEN,
    AdminClient,
    make_site,
    numbers,
    twilio_call,
    twilio_post,
)

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS / "dashboard"))
sys.path.insert(0, str(TESTS.parent / "snippet" / "tests"))
from dashboard_data import csrf_of, log_in, with_dashboard  # noqa: E402

DESTINATION = "+12125550199"
XSS = "<script>alert(1)</script>"


@pytest.fixture
def world(make_app):
    """Two publishers' numbers on an enforcing site: Acme's callers fail STIR/SHAKEN."""
    app = with_dashboard(make_app(DNI_TWILIO_AUTH_TOKEN=TWILIO_TOKEN))
    admin = AdminClient(app.test_client(), ADMIN_TOKEN)
    site = make_site(admin)
    to = {}
    for i, publisher in enumerate(("Acme", "Honest")):
        to[publisher] = numbers(1, start=191 + i)[0]
        made = admin.post("/v1/static-numbers", json={
            "site": site["key"], "number": to[publisher], "destination": DESTINATION,
            "source": "tv", "medium": "offline", "publisher": publisher})
        assert made.status_code == 201, made.get_json()
    admin.put(f"/v1/sites/{site['key']}/fraud-policy", json={"settings": {}})
    client = app.test_client()
    for n in range(30):
        for publisher in ("Acme", "Honest"):
            verstat = ("TN-Validation-Failed-A" if publisher == "Acme" and n % 2
                       else "TN-Validation-Passed-A")
            answer = twilio_post(client, "/webhooks/twilio/voice", twilio_call(
                f"CA{publisher}{n}", to[publisher], f"+1310555{n:04d}",
                StirVerstat=verstat))
            assert answer.status_code == 200
    return {"app": app, "admin": admin, "site": site}


def token(world, publisher: str) -> str:
    made = world["admin"].post("/v1/tokens", json={"name": publisher, "scope": "publisher",
                                                   "publisher": publisher})
    return made.get_json()["token"]


def test_the_quality_chart_marks_the_publisher_worse_than_the_network(world):
    html = log_in(world["app"].test_client()).get("/dashboard/fraud").text
    bars = {publisher: marked for marked, publisher in re.findall(
        r'<rect class="bar( significant)?"[^>]*data-publisher="(\w+)"', html)}
    assert bars == {"Acme": " significant", "Honest": ""}
    rate = re.search(r'data-publisher="Acme" data-rate="([\d.]+)" data-baseline="([\d.]+)"',
                     html)
    assert (float(rate.group(1)), float(rate.group(2))) == (0.5, 0.0)
    row = html.split('<tr data-publisher="Acme">')[1].split("</tr>")[0]
    assert "flagged (" in row and "% sure)" in row
    assert 'id="block-list"' in html and 'id="block-import"' in html
    assert 'href="/dashboard/fraud" aria-current="page"' in html


def test_a_publisher_sees_its_own_row_and_no_block_list(world):
    client = log_in(world["app"].test_client(), token(world, "Honest"))
    html = client.get("/dashboard/fraud").text
    assert 'data-publisher="Honest"' in html and "Acme" not in html
    assert 'id="block-list"' not in html
    csrf = csrf_of(html)
    refused = client.post("/dashboard/fraud/block-list/import",
                          data={"csrf_token": csrf, "csv": "value\n+1900\n"})
    assert refused.status_code == 403
    assert world["admin"].get("/v1/block-list").get_json()["entries"] == []


def test_the_import_without_script_reports_every_row(world):
    import io

    client = log_in(world["app"].test_client())
    csrf = csrf_of(client.get("/dashboard/fraud").text)
    text = f"value,reason\n+1900,premium\n+1900,again\n12,{XSS}\n+1415555,farm\n"
    response = client.post("/dashboard/fraud/block-list/import", data={
        "csrf_token": csrf, "file": (io.BytesIO(text.encode()), "list.csv")},
        content_type="multipart/form-data")
    assert response.status_code == 200, response.text
    html = response.text
    assert "4 rows: 2 added, 1 errors, 1 already listed." in html
    assert re.findall(r'<tr class="row-(\w+)"><td class="num">(\d+)</td>', html) == [
        ("added", "2"), ("duplicate", "3"), ("error", "4"), ("added", "5")]
    assert XSS not in html
    values = {e["value"] for e in world["admin"].get("/v1/block-list").get_json()["entries"]}
    assert values == {"+1900", "+1415555"}
    # A bad header refuses the whole file, on the page.
    bad = client.post("/dashboard/fraud/block-list/import",
                      data={"csrf_token": csrf, "csv": "number\n+1212\n"})
    assert bad.status_code == 422 and "value among them" in bad.text
    # Without the CSRF token nothing is imported.
    forged = client.post("/dashboard/fraud/block-list/import", data={"csv": "value\n+1646\n"})
    assert forged.status_code in (400, 403)


def test_chunks_number_their_rows_from_where_they_start(world):
    client = log_in(world["app"].test_client())
    csrf = csrf_of(client.get("/dashboard/fraud").text)
    answer = client.post("/dashboard/fraud/block-list/import",
                         data={"csrf_token": csrf, "csv": "value\n+1646\nnope\n",
                               "first_row": "202"}, headers={"Accept": "application/json"})
    assert answer.status_code == 200, answer.text
    assert [(r["row"], r["status"]) for r in answer.get_json()["report"]] == [
        (202, "added"), (203, "error")]


# -- in Chromium -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    from dni_support import launch
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = launch(playwright)
        yield chromium
        chromium.close()


@pytest.mark.browser
def test_the_import_in_chromium_moves_a_progress_bar_and_reports_each_row(browser, live_service,
                                                                          tmp_path):
    app = with_dashboard(live_service.app)
    admin = AdminClient(app.test_client(), ADMIN_TOKEN)
    admin.post("/v1/block-list", json={"value": "+1212555", "reason": "known"})
    rows = [f"+1646555{n:04d},batch" for n in range(450)] + ["+1212555,again", f"x,{XSS}"]
    path = tmp_path / "block.csv"
    path.write_text("value,reason\n" + "\n".join(rows) + "\n")

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15000)
    page = context.new_page()
    problems = []
    page.on("pageerror", lambda exc: problems.append(f"pageerror: {exc}"))
    page.on("console", lambda msg: msg.type == "error" and problems.append(msg.text))
    posts = []
    page.on("request", lambda r: r.method == "POST" and "/block-list/import" in r.url
            and posts.append(r.url))
    try:
        base = live_service.url
        page.goto(f"{base}/dashboard/login")
        page.fill("input[name=token]", ADMIN_TOKEN)
        page.click("button[type=submit]")
        page.wait_for_url(f"{base}/dashboard/**")
        page.click("nav >> text=Fraud")
        page.wait_for_url(f"{base}/dashboard/fraud")
        page.set_input_files("#block-import input[type=file]", str(path))
        page.click("#block-import button[type=submit]")
        page.wait_for_selector("#import-summary:has-text('rows:')")
        assert page.url == f"{base}/dashboard/fraud"  # stayed: sent by the script
        assert len(posts) == 3  # 452 rows in chunks of 200
        progress = page.locator("#import-progress")
        assert progress.is_visible()
        assert progress.evaluate("p => [p.value, p.max]") == [452, 452]
        assert page.text_content("#import-status") == "452 of 452 rows"
        assert page.text_content("#import-summary").startswith(
            "452 rows: 450 added, 1 errors, 1 already listed.")
        statuses = page.eval_on_selector_all("#import-rows tbody tr",
                                             "rows => rows.map(r => r.className)")
        assert len(statuses) == 452
        assert statuses[-2:] == ["row-duplicate", "row-error"]
        numbers_shown = page.eval_on_selector_all(
            "#import-rows tbody tr td:first-child", "cells => cells.map(c => c.textContent)")
        assert numbers_shown[:2] == ["2", "3"] and numbers_shown[-1] == "453"
        assert page.locator("#import-rows script").count() == 0  # a value is text
        page.reload()
        assert page.locator("#block-entries tbody tr").count() == 200  # the newest shown
    finally:
        context.close()
    assert problems == []
    entries = admin.get("/v1/block-list?limit=1000").get_json()["entries"]
    assert len(entries) == 451
