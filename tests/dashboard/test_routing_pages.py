"""The dashboard's pay-per-call pages: buyers with today's cap use and live calls (from the
real Redis scripts), routing plans with their steps and tiers, and a call's routing log; in
the test client (tenancy, escaping) and in real Chromium."""

from __future__ import annotations

import datetime as dt
import re
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from dashboard_data import XSS, XSS_ESCAPED, log_in, with_dashboard

from attribution.models import Call
from dni_server.extensions import db
from factories import ADMIN_TOKEN, AdminClient, make_pool, make_site, numbers
from routing.capacity import Capacity
from routing.models import Buyer, CallRouting

ROOT = Path(__file__).resolve().parents[2]


def create(admin, path: str, body: dict) -> dict:
    response = admin.post(path, json=body)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def seed(app, admin) -> dict:
    """Two buyers (one Acme's), a plan with a zip step and two tiers, a routed call, and in
    Redis two calls reserved on buyer A today: one still live, one converted."""
    a = create(admin, "/v1/buyers", {
        "name": "Lone Star Roofing", "timezone": "America/Chicago",
        "targets": [{"number": "+15125550101", "concurrency": 3}],
        "caps": {"conversions": {"day": 50}, "concurrency": 5},
        "conversion": {"min_duration": 90, "from": "answer"}, "revenue": "45.00"})
    b = create(admin, "/v1/buyers", {
        "name": XSS, "timezone": "America/New_York", "publisher": "Acme",
        "targets": [{"sip": "sip:leads@roof.example"}],
        "conversion": {"min_duration": 60, "from": "answer"}, "revenue": "30"})
    plan = create(admin, "/v1/routing-plans", {
        "name": "Roofing", "publisher": "Acme",
        "ivr": [{"type": "say", "text": "Thanks for calling."},
                {"type": "zip", "text": "Your ZIP code?", "retries": 1,
                 "on_failure": "continue"}],
        "tiers": [{"buyers": [b["id"]], "mode": "weighted"},
                  {"buyers": [a["id"]], "mode": "simultaneous"}],
        "fallback": {"message": "All our roofers are busy."},
        "recovery": {"min_seconds": 15, "attempts": 1}})
    site = make_site(admin)
    pool = make_pool(admin, site, numbers=numbers(2), publisher="Acme")
    now = dt.datetime.now(dt.UTC)
    with app.app_context():
        call = Call(provider="twilio", provider_call_id="CA-routed", from_number="+15125550199",
                    from_valid=True, to_number=numbers(1)[0], started_at=now, status="completed",
                    site_id=site["id"], pool_id=pool["id"], publisher="Acme",
                    method="unattributed", explanation={})
        db.session.add(call)
        db.session.add(CallRouting(
            provider="twilio", provider_call_id="CA-routed", plan_id=plan["id"],
            ivr={"zip": "78701", "tags": {}, "pressed": None},
            offers=[{"buyer": b["id"], "target": "sip:leads@roof.example", "at": now.isoformat(),
                     "outcome": "no_answer", "ring_seconds": 20.0},
                    {"buyer": a["id"], "target": "+15125550101", "at": now.isoformat(),
                     "outcome": "answered", "ring_seconds": 4.5}],
            skipped=[{"buyer": 999, "reason": "cap:day:conversions"}],
            buyer_id=a["id"], target="+15125550101", converted=True,
            revenue=Decimal("45.00"), outcome="completed"))
        db.session.commit()
        spec = db.session.get(Buyer, a["id"]).spec
        s = app.extensions["dni"]
        capacity = Capacity(s.redis_admin, s.settings.redis_prefix)
        for call_id in ("twilio:one", "twilio:two"):
            assert capacity.reserve(a["id"], spec, call_id, None, now).ok
        assert capacity.release(a["id"], spec, "twilio:one", None, now, connected=True,
                                converted=True)
        usage = capacity.usage(a["id"], spec, now)
        call_id = call.id
    assert usage["live"] == 1 and usage["counts"]["day"]["conversions"] == 1
    return {"a": a, "b": b, "plan": plan, "call": call_id, "usage": usage}


@pytest.fixture
def data(dash_app, admin):
    return seed(dash_app, admin)


def test_buyers_page_shows_live_calls_and_todays_cap_use(dash_app, data):
    html = log_in(dash_app.test_client()).get("/dashboard/buyers").text
    row = re.search(rf'<tr data-buyer="{data["a"]["id"]}">(.*?)</tr>', html, re.S).group(1)
    assert data["usage"]["counts"]["day"]["calls"] == 2  # counted when each was offered
    assert '<td class="live">1 / 5</td>' in row
    assert '<td class="today-conversions">1 / 50</td>' in row
    assert '<td class="today-calls">2</td>' in row
    assert '<td class="today-connections">1</td>' in row
    assert '<td class="today-revenue">45.00</td>' in row
    assert "+15125550101: 1 / 3" in row
    assert XSS not in html and XSS_ESCAPED in html  # a buyer's name is text


def test_buyers_page_without_redis_says_so(dash_app, data, monkeypatch):
    import redis

    def refused(*_args, **_kwargs):
        raise redis.ConnectionError("refused")

    monkeypatch.setattr(Capacity, "usage", refused)
    response = log_in(dash_app.test_client()).get("/dashboard/buyers")
    assert response.status_code == 200
    assert response.text.count("Live use unavailable (Redis did not answer).") == 2


def test_a_publisher_sees_its_own_buyers_and_plans_and_its_plans_routing(dash_app, admin,
                                                                          data):
    token = create(admin, "/v1/tokens", {"name": "acme", "scope": "publisher",
                                         "publisher": "Acme"})["token"]
    client = log_in(dash_app.test_client(), token)
    html = client.get("/dashboard/buyers").text
    assert f'data-buyer="{data["b"]["id"]}"' in html
    assert f'data-buyer="{data["a"]["id"]}"' not in html
    plans = client.get("/dashboard/routing-plans").text
    assert f'id="plan-{data["plan"]["id"]}"' in plans
    # The network's buyer in Acme's plan is not Acme's to see: its number only, no name.
    assert "Lone Star Roofing" not in plans and f"buyer #{data['a']['id']}" in plans
    call = client.get(f"/dashboard/calls/{data['call']}").text
    assert 'id="routing"' in call and "Lone Star Roofing" not in call


def test_plans_page_lists_steps_tiers_and_fallback(dash_app, data):
    html = log_in(dash_app.test_client()).get("/dashboard/routing-plans").text
    section = html.split(f'id="plan-{data["plan"]["id"]}"')[1]
    assert re.findall(r'<li data-type="(\w+)">', section) == ["say", "zip"]
    assert re.findall(r'<li data-mode="(\w+)">', section) == ["weighted", "simultaneous"]
    assert "Lone Star Roofing" in section and XSS_ESCAPED in section
    assert "All our roofers are busy." in section and "up to 1 times" in section


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
def test_routing_pages_in_chromium(browser, live_service):
    app = with_dashboard(live_service.app)
    data = seed(app, AdminClient(app.test_client(), ADMIN_TOKEN))
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(10000)
    page = context.new_page()
    problems = []
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.on("console", lambda msg: msg.type == "error" and problems.append(msg.text))
    page.on("dialog", lambda dialog: (problems.append(dialog.message), dialog.dismiss()))
    url = live_service.url
    (ROOT / "test-artifacts").mkdir(exist_ok=True)
    try:
        page.goto(f"{url}/dashboard/login")
        page.fill("input[name=token]", ADMIN_TOKEN)
        page.click("button[type=submit]")
        page.wait_for_url(f"{url}/dashboard/")
        page.click("nav >> text=Buyers")
        page.wait_for_url(f"{url}/dashboard/buyers")
        row = page.locator(f'tr[data-buyer="{data["a"]["id"]}"]')
        assert row.locator("td.live").inner_text() == "1 / 5"
        assert row.locator("td.today-conversions").inner_text() == "1 / 50"
        assert row.locator("td.today-revenue").inner_text() == "45.00"
        assert page.locator(f'tr[data-buyer="{data["b"]["id"]}"] td').first.inner_text(
        ).startswith(XSS)  # shown as text, never run

        page.screenshot(path=str(ROOT / "test-artifacts" / "dashboard-buyers.png"),
                        full_page=True)
        page.click("nav >> text=Routing plans")
        plan = page.locator(f'#plan-{data["plan"]["id"]}')
        assert plan.locator("ol.ivr li").count() == 2
        assert plan.locator("ol.tiers li").nth(1).inner_text().startswith(
            "simultaneous: Lone Star Roofing")
        page.screenshot(path=str(ROOT / "test-artifacts" / "dashboard-routing-plans.png"),
                        full_page=True)

        page.goto(f"{url}/dashboard/calls/{data['call']}")
        offers = page.locator("#routing-offers tbody tr")
        assert offers.count() == 2
        assert offers.nth(0).locator("td").nth(3).inner_text() == "no_answer"
        assert offers.nth(1).locator("td").nth(4).inner_text() == "4.5 s"
        assert page.locator("#routing-skipped td").nth(1).inner_text() == "cap:day:conversions"
        assert page.locator("#routing-buyer").inner_text().startswith("Lone Star Roofing")
        assert page.locator("#routing-converted").inner_text() == "yes, revenue 45.00"
        page.screenshot(path=str(ROOT / "test-artifacts" / "dashboard-routing-call.png"),
                        full_page=True)
    finally:
        context.close()
    assert problems == []
