"""Dashboard forms for buyers and routing plans (issue 15: "buyers and plans created through
the API, CLI or dashboard"), in the test client: a form saves what the API would, through
the same schemas and service; refusals come back under their field; CSRF and token scope
are enforced. The browser test is test_routing_forms_browser.py."""

from __future__ import annotations

import re

import pytest
from dashboard_data import XSS, XSS_ESCAPED, csrf_of, log_in

from dni_server.dashboard.routing_forms import buyer_body, parse_targets, plan_body

BUYER = {"name": "Lone Star Roofing", "timezone": "America/Chicago", "revenue": "45.00",
         "targets": "+15125550101 concurrency=3\nsip:leads@roof.example weight=2 ring=20",
         "min_duration": "90", "conversion_from": "answer", "cap_day_conversions": "50",
         "cap_concurrency": "5", "whisper": "Roofing lead.",
         "more": '{"hours": [{"days": [0, 1, 2, 3, 4], "start": "08:00", "end": "18:00"}],'
                 ' "caps": {"calls": {"hour": 10}}}'}


class Form(dict):
    """A posted form: what ``request.form`` offers the parsers."""

    def getlist(self, name):
        value = self.get(name)
        return value if isinstance(value, list) else [] if value is None else [value]


def post(client, path: str, fields: dict):
    page = client.get(path)
    assert page.status_code == 200, page.text
    return client.post(path, data={**fields, "csrf_token": csrf_of(page.text)})


def api(admin, path: str) -> dict:
    response = admin.get(path)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def test_a_buyer_form_is_the_apis_body():
    errors: dict = {}
    body = buyer_body(Form(BUYER), errors)
    assert errors == {}
    assert body["targets"] == [{"number": "+15125550101", "concurrency": 3},
                               {"sip": "sip:leads@roof.example", "weight": 2,
                                "ring_seconds": 20}]
    assert body["caps"] == {"calls": {"hour": 10}, "conversions": {"day": 50},
                            "concurrency": 5}
    assert body["conversion"] == {"from": "answer", "min_duration": 90}
    assert body["hours"][0]["start"] == "08:00" and body["paused"] is False
    errors = {}
    parse_targets("+15125550101 speed=3", errors)
    assert "speed=3" in errors["targets"]


def test_a_plan_form_drops_blank_rows_and_keeps_the_order():
    errors: dict = {}
    body = plan_body(Form({
        "name": "Roofing", "step_type_0": "say", "step_text_0": "Thanks for calling.",
        "step_type_1": "", "step_text_1": "ignored",
        "step_type_2": "zip", "step_text_2": "Your ZIP?", "step_retries_2": "1",
        "step_on_failure_2": "fallback",
        "step_type_3": "menu", "step_text_3": "1 roof, 2 siding", "step_tag_3": "job",
        "step_options_3": "1=roof, 2=siding", "step_retries_3": "",
        "tier_mode_0": "weighted", "tier_buyers_0": ["2", "1"],
        "tier_mode_1": "simultaneous", "tier_mode_2": "weighted", "tier_buyers_2": "3",
        "fallback_message": "Sorry.", "recovery_min_seconds": "15",
        "recovery_attempts": "1"}), errors)
    assert errors == {}
    assert body["ivr"] == [
        {"type": "say", "text": "Thanks for calling."},
        {"type": "zip", "text": "Your ZIP?", "retries": 1, "on_failure": "fallback"},
        {"type": "menu", "text": "1 roof, 2 siding", "tag": "job",
         "options": {"1": "roof", "2": "siding"}}]
    assert body["tiers"] == [{"mode": "weighted", "buyers": [2, 1]},
                             {"mode": "weighted", "buyers": [3]}]
    assert body["fallback"] == {"message": "Sorry."}
    assert body["recovery"] == {"min_seconds": 15, "attempts": 1}


def test_creating_and_editing_a_buyer_saves_what_the_api_shows(dash_app, admin):
    client = log_in(dash_app.test_client())
    response = post(client, "/dashboard/buyers/new", BUYER | {"name": XSS})
    assert response.status_code == 302 and response.location.endswith("/dashboard/buyers")
    [made] = api(admin, "/v1/buyers")["buyers"]
    assert made["name"] == XSS and made["caps"]["conversions"] == {"day": 50}
    assert made["targets"][1]["sip"] == "sip:leads@roof.example"
    listed = client.get("/dashboard/buyers").text
    assert XSS not in listed and XSS_ESCAPED in listed
    assert f'/dashboard/buyers/{made["id"]}/edit' in listed

    edit = client.get(f'/dashboard/buyers/{made["id"]}/edit').text
    assert "sip:leads@roof.example weight=2 ring=20" in edit and "&#34;hour&#34;: 10" in edit
    more = re.search(r'<textarea name="more"[^>]*>(.*?)</textarea>', edit, re.S).group(1)
    response = post(client, f'/dashboard/buyers/{made["id"]}/edit', {
        **BUYER, "name": "Renamed", "paused": "on", "cap_day_conversions": "",
        "more": more.replace("&#34;", '"').replace("&quot;", '"')})
    assert response.status_code == 302, response.text
    shown = api(admin, f'/v1/buyers/{made["id"]}')
    assert (shown["name"], shown["paused"]) == ("Renamed", True)
    assert shown["caps"] == {"calls": {"hour": 10}, "concurrency": 5}
    assert shown["hours"] == made["hours"]


def test_refusals_come_back_under_their_fields(dash_app, admin):
    client = log_in(dash_app.test_client())
    response = post(client, "/dashboard/buyers/new", BUYER | {
        "timezone": "Mars/Olympus", "revenue": "lots", "targets": "12"})
    assert response.status_code == 422
    for field in ("timezone", "revenue", "targets"):
        assert re.search(rf'class="error field-error" data-field="{field}"', response.text)
    assert 'value="Mars/Olympus"' in response.text  # what was typed is kept
    assert api(admin, "/v1/buyers")["buyers"] == []
    response = post(client, "/dashboard/routing-plans/new", {
        "name": "Plan", "step_type_0": "zip", "step_text_0": "", "tier_mode_0": "weighted",
        "tier_buyers_0": "999"})
    assert response.status_code == 422
    assert 'data-field="step_0"' in response.text
    assert api(admin, "/v1/routing-plans")["routing_plans"] == []
    response = post(client, "/dashboard/routing-plans/new", {
        "name": "Plan", "tier_mode_0": "weighted", "tier_buyers_0": "999"})
    assert response.status_code == 422 and 'data-field="tiers"' in response.text
    assert "unknown buyer 999" in response.text


def test_a_plan_is_created_and_edited_with_its_steps_and_tiers(dash_app, admin):
    client = log_in(dash_app.test_client())
    ids = []
    for name, number in (("A", "+15125550101"), ("B", "+15125550102")):
        assert post(client, "/dashboard/buyers/new", BUYER | {
            "name": name, "targets": number}).status_code == 302
    ids = [b["id"] for b in api(admin, "/v1/buyers")["buyers"]]
    response = post(client, "/dashboard/routing-plans/new", {
        "name": "Roofing", "step_type_0": "zip", "step_text_0": "Your ZIP code?",
        "step_retries_0": "1", "step_on_failure_0": "continue",
        "tier_mode_0": "weighted", "tier_buyers_0": str(ids[0]),
        "tier_mode_1": "simultaneous", "tier_buyers_1": [str(i) for i in ids],
        "fallback_number": "+12125550199"})
    assert response.status_code == 302
    [plan] = api(admin, "/v1/routing-plans")["routing_plans"]
    assert plan["ivr"] == [{"type": "zip", "text": "Your ZIP code?", "retries": 1,
                            "on_failure": "continue"}]
    assert plan["tiers"] == [{"buyers": [ids[0]], "mode": "weighted"},
                             {"buyers": ids, "mode": "simultaneous"}]
    edit = client.get(f'/dashboard/routing-plans/{plan["id"]}/edit').text
    assert 'value="Your ZIP code?"' in edit
    response = post(client, f'/dashboard/routing-plans/{plan["id"]}/edit', {
        "name": "Roofing", "step_type_0": "zip", "step_text_0": "Your ZIP code?",
        "tier_mode_0": "simultaneous", "tier_buyers_0": [str(i) for i in ids],
        "fallback_message": "Nobody is free."})
    assert response.status_code == 302
    plan = api(admin, f'/v1/routing-plans/{plan["id"]}')
    assert plan["tiers"] == [{"buyers": ids, "mode": "simultaneous"}]
    assert plan["fallback"] == {"message": "Nobody is free."}


def test_without_the_csrf_token_nothing_is_saved(dash_app, admin):
    client = log_in(dash_app.test_client())
    response = client.post("/dashboard/buyers/new", data=BUYER)
    assert response.status_code == 400
    assert api(admin, "/v1/buyers")["buyers"] == []


@pytest.mark.parametrize("scope", ["read_only", "publisher"])
def test_tokens_that_cannot_write_get_no_forms(dash_app, admin, scope):
    body = {"name": "t", "scope": scope} | ({"publisher": "Acme"} if scope == "publisher"
                                           else {})
    token = admin.post("/v1/tokens", json=body).get_json()["token"]
    client = log_in(dash_app.test_client(), token)
    assert client.get("/dashboard/buyers/new").status_code == 403
    assert "New buyer" not in client.get("/dashboard/buyers").text
    page = client.get("/dashboard/buyers").text
    response = client.post("/dashboard/routing-plans/new", data={
        "name": "x", "csrf_token": csrf_of(page)})
    assert response.status_code == 403
