"""The routing forms in real Chromium against the live app (issue 15): an operator creates
two buyers and a plan with a zip step and two tiers, sees the plan listed as made, and a
refused field is shown beside it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from dashboard_data import with_dashboard

from factories import ADMIN_TOKEN, AdminClient

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "snippet" / "tests"))
from dni_support import launch  # noqa: E402

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = launch(playwright)
        yield chromium
        chromium.close()


@pytest.fixture
def service(live_service):
    app = with_dashboard(live_service.app)  # before the first request reaches the server
    return live_service.url, AdminClient(app.test_client(), ADMIN_TOKEN)


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(10000)
    tab = context.new_page()
    problems = []
    tab.on("pageerror", lambda exc: problems.append(f"pageerror: {exc}"))
    # A refused form is answered 422 (with the form again): Chromium logs that status.
    tab.on("console", lambda msg: msg.type == "error" and "status of 422" not in msg.text
           and problems.append(msg.text))
    yield tab
    context.close()
    assert problems == []


def new_buyer(page, base: str, name: str, number: str) -> None:
    page.goto(f"{base}/dashboard/buyers")
    page.click("text=New buyer")
    page.fill("input[name=name]", name)
    page.fill("input[name=timezone]", "America/Chicago")
    page.fill("input[name=revenue]", "45.00")
    page.fill("textarea[name=targets]", f"{number} concurrency=2")
    page.fill("input[name=cap_day_conversions]", "50")
    page.click("#buyer-form button[type=submit]")
    page.wait_for_url(f"{base}/dashboard/buyers")


def test_an_operator_creates_buyers_and_a_plan_with_a_zip_step_and_two_tiers(page, service):
    base, admin = service
    page.goto(f"{base}/dashboard/login")
    page.fill("input[name=token]", ADMIN_TOKEN)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/dashboard/**")

    # A refusal first: the field says what is wrong, what was typed stays.
    page.goto(f"{base}/dashboard/buyers/new")
    page.fill("input[name=name]", "Nowhere Roofing")
    page.fill("input[name=timezone]", "Mars/Olympus")
    page.fill("input[name=revenue]", "45")
    page.fill("textarea[name=targets]", "+15125550101")
    page.click("#buyer-form button[type=submit]")
    assert page.locator('.field-error[data-field="timezone"]').is_visible()
    assert page.input_value("input[name=name]") == "Nowhere Roofing"

    new_buyer(page, base, "Lone Star Roofing", "+15125550101")
    new_buyer(page, base, "Gulf Coast Siding", "+15125550102")
    rows = page.locator("#buyers tbody tr")
    assert rows.count() == 2
    assert "Lone Star Roofing" in rows.nth(0).inner_text()
    ids = [b["id"] for b in admin.get("/v1/buyers").get_json()["buyers"]]

    page.goto(f"{base}/dashboard/routing-plans")
    page.click("text=New routing plan")
    page.fill("input[name=name]", "Texas roofing")
    page.select_option("select[name=step_type_0]", "say")
    page.fill("input[name=step_text_0]", "Thanks for calling.")
    page.select_option("select[name=step_type_1]", "zip")
    page.fill("input[name=step_text_1]", "Please key your ZIP code.")
    page.fill("input[name=step_retries_1]", "1")
    page.select_option("select[name=step_on_failure_1]", "fallback")
    page.select_option("select[name=tier_mode_0]", "weighted")
    page.check(f'input[name=tier_buyers_0][value="{ids[0]}"]')
    page.select_option("select[name=tier_mode_1]", "simultaneous")
    page.check(f'input[name=tier_buyers_1][value="{ids[0]}"]')
    page.check(f'input[name=tier_buyers_1][value="{ids[1]}"]')
    page.fill("input[name=fallback_number]", "+12125550199")
    page.click("#plan-form button[type=submit]")
    page.wait_for_url(f"{base}/dashboard/routing-plans#plan-*")

    [plan] = admin.get("/v1/routing-plans").get_json()["routing_plans"]
    card = page.locator(f"#plan-{plan['id']}")
    assert "Texas roofing" in card.locator("h2").inner_text()
    steps = card.locator("ol.ivr li")
    assert [steps.nth(i).get_attribute("data-type") for i in range(steps.count())] == [
        "say", "zip"]
    assert "Please key your ZIP code." in steps.nth(1).inner_text()
    assert "on failure: fallback" in steps.nth(1).inner_text()
    tiers = card.locator("ol.tiers li")
    assert [tiers.nth(i).get_attribute("data-mode") for i in range(tiers.count())] == [
        "weighted", "simultaneous"]
    assert "Lone Star Roofing" in tiers.nth(0).inner_text()
    assert "Gulf Coast Siding" in tiers.nth(1).inner_text()
    assert "+12125550199" in card.inner_text()
    assert plan["tiers"] == [{"buyers": [ids[0]], "mode": "weighted"},
                             {"buyers": ids, "mode": "simultaneous"}]

    # Edited in place: the second tier loses a buyer.
    card.locator("a.edit").click()
    page.uncheck(f'input[name=tier_buyers_1][value="{ids[0]}"]')
    page.click("#plan-form button[type=submit]")
    page.wait_for_url(f"{base}/dashboard/routing-plans#plan-*")
    tiers = page.locator(f"#plan-{plan['id']} ol.tiers li")
    assert "Lone Star Roofing" not in tiers.nth(1).inner_text()
    assert "Gulf Coast Siding" in tiers.nth(1).inner_text()
