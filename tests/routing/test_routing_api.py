"""The admin API of buyers and routing plans: the contract, every bad field named, PATCH
checked whole, publisher tenancy, and pools and static numbers taking a routing plan."""

from __future__ import annotations

import pytest

from factories import ADMIN_TOKEN, AdminClient, make_pool, make_site, numbers

BUYER = {"name": "Roofers Inc", "timezone": "America/Chicago",
         "targets": [{"number": "(212) 555-0101", "weight": 2, "concurrency": 3},
                     {"sip": "sip:leads@roofers.example", "ring_seconds": 20}],
         "hours": [{"days": [0, 1, 2, 3, 4], "start": "08:00", "end": "18:00"}],
         "caps": {"conversions": {"day": 50}, "revenue": {"month": "5000"}, "concurrency": 5,
                  "spacing_seconds": 10},
         "filters": [{"caller_state": ["TX", "OK"], "source": "google"}],
         "conversion": {"min_duration": 90, "from": "accept"}, "revenue": "45.5",
         "duplicate": {"days": 30}, "whisper": "Roofing call from Texas.", "accept": True}


def create(admin, path, body, status=201):
    response = admin.post(path, json=body)
    assert response.status_code == status, response.get_json()
    return response.get_json()


def plan_body(*tiers, **fields) -> dict:
    return {"name": "Roofing", "ivr": [{"type": "zip", "text": "Your ZIP code?"}],
            "tiers": [{"buyers": list(t)} for t in tiers],
            "fallback": {"message": "Nobody is free."}} | fields


def test_a_buyer_round_trips_in_canonical_form(admin):
    buyer = create(admin, "/v1/buyers", BUYER)
    assert buyer["targets"][0] == {"number": "+12125550101", "weight": 2, "concurrency": 3,
                                   "ring_seconds": 30}
    assert buyer["targets"][1]["sip"] == "sip:leads@roofers.example"
    assert buyer["revenue"] == "45.50" and buyer["caps"]["revenue"] == {"month": "5000.00"}
    assert buyer["filters"] == [{"caller_state": ["tx", "ok"], "source": ["google"]}]
    assert buyer["duplicate"] == {"days": 30, "after": "converted"}
    assert buyer["conversion"] == {"min_duration": 90, "from": "accept"}
    assert admin.get(f"/v1/buyers/{buyer['id']}").get_json() == buyer
    assert [b["id"] for b in admin.get("/v1/buyers").get_json()["buyers"]] == [buyer["id"]]


@pytest.mark.parametrize("change, field", [
    ({"timezone": "Mars/Olympus"}, "timezone"),
    ({"targets": []}, "targets"),
    ({"targets": [{"number": "+12125550101", "sip": "sip:a@b.example"}]}, "targets"),
    ({"targets": [{"number": "12"}]}, "targets"),
    ({"targets": [{"sip": "http://x"}]}, "targets"),
    ({"hours": [{"days": [7], "start": "08:00", "end": "18:00"}]}, "hours"),
    ({"hours": [{"days": [1], "start": "8am", "end": "18:00"}]}, "hours"),
    ({"caps": {"calls": {"week": 3}}}, "caps"),
    ({"caps": {"concurrency": 0}}, "caps"),
    ({"filters": [{"shoe_size": 9}]}, "filters"),
    ({"conversion": {"from": "answer"}}, "conversion"),
    ({"conversion": {"min_duration": 30, "from": "accept"}, "accept": False}, "conversion"),
    ({"revenue": "-1"}, "revenue"),
    ({"duplicate": {"days": 3, "after": "forever"}}, "duplicate"),
])
def test_every_bad_buyer_field_is_named(admin, change, field):
    response = admin.post("/v1/buyers", json=BUYER | change)
    assert response.status_code == 422
    assert field in response.get_json()["error"]["fields"]


def test_patch_changes_the_given_fields_and_checks_the_whole(admin):
    buyer = create(admin, "/v1/buyers", BUYER)
    path = f"/v1/buyers/{buyer['id']}"
    patched = admin.patch(path, json={"paused": True, "caps": {"concurrency": 2}}).get_json()
    assert patched["paused"] and patched["caps"] == {"concurrency": 2}
    assert patched["targets"] == buyer["targets"]
    # Turning accept off while converting from the accept breaks the whole: refused.
    refused = admin.patch(path, json={"accept": False})
    assert refused.status_code == 422 and "conversion" in refused.get_json()["error"]["fields"]
    cleared = admin.patch(path, json={"duplicate": None}).get_json()
    assert cleared["duplicate"] is None


def test_plans_name_existing_buyers_and_check_their_steps(admin):
    a = create(admin, "/v1/buyers", BUYER)
    b = create(admin, "/v1/buyers", BUYER | {"name": "Gutters"})
    plan = create(admin, "/v1/routing-plans", plan_body([a["id"]], [b["id"]]) | {
        "tiers": [{"buyers": [a["id"]]}, {"buyers": [b["id"]], "mode": "simultaneous"}],
        "fallback": {"number": "212 555 0199"}, "recovery": {"min_seconds": 15, "attempts": 2}})
    assert plan["ivr"] == [{"type": "zip", "text": "Your ZIP code?", "retries": 1,
                            "on_failure": "continue"}]
    assert plan["tiers"][0]["mode"] == "weighted" and plan["fallback"]["number"] == "+12125550199"
    missing = admin.post("/v1/routing-plans", json=plan_body([a["id"], 999]))
    assert missing.status_code == 422
    assert missing.get_json()["error"]["fields"] == {"tiers": {"0": {"buyers": "unknown buyer 999"}}}
    bad_step = admin.post("/v1/routing-plans", json=plan_body([a["id"]]) | {
        "ivr": [{"type": "menu", "text": "?", "tag": "x", "options": {"12": "y"}}]})
    assert bad_step.status_code == 422 and "ivr" in bad_step.get_json()["error"]["fields"]
    patched = admin.patch(f"/v1/routing-plans/{plan['id']}", json={"ivr": []}).get_json()
    assert patched["ivr"] == [] and patched["tiers"] == plan["tiers"]


def test_pools_and_static_numbers_take_a_routing_plan(admin):
    buyer = create(admin, "/v1/buyers", BUYER)
    plan = create(admin, "/v1/routing-plans", plan_body([buyer["id"]]))
    site = make_site(admin)
    pool = make_pool(admin, site, routing_plan=plan["id"])
    assert pool["routing_plan"] == plan["id"]
    assert admin.patch(f"/v1/pools/{pool['id']}", json={"routing_plan": None}).get_json()[
        "routing_plan"] is None
    unknown = admin.patch(f"/v1/pools/{pool['id']}", json={"routing_plan": 4242})
    assert unknown.status_code == 422 and "routing_plan" in unknown.get_json()["error"]["fields"]
    static = create(admin, "/v1/static-numbers", {
        "number": numbers(1, start=150)[0], "destination": "+12125550100", "source": "radio",
        "medium": "offline", "routing_plan": plan["id"]})
    assert static["routing_plan"] == plan["id"]


def test_a_publisher_sees_only_its_own_buyers_and_plans(app, admin):
    network = create(admin, "/v1/buyers", BUYER)
    acme = create(admin, "/v1/buyers", BUYER | {"name": "Acme's", "publisher": "Acme"})
    other = create(admin, "/v1/buyers", BUYER | {"name": "Other's", "publisher": "Other"})
    # A plan of Acme may use the network's buyers and Acme's, never another publisher's.
    refused = admin.post("/v1/routing-plans", json=plan_body([acme["id"], other["id"]],
                                                             publisher="Acme"))
    assert refused.status_code == 422
    acme_plan = create(admin, "/v1/routing-plans", plan_body([acme["id"], network["id"]],
                                                             publisher="Acme"))
    other_plan = create(admin, "/v1/routing-plans", plan_body([other["id"]], publisher="Other"))
    token = create(admin, "/v1/tokens", {"name": "acme", "scope": "publisher",
                                         "publisher": "Acme"})["token"]
    acme_client = AdminClient(app.test_client(), token)
    assert [b["id"] for b in acme_client.get("/v1/buyers").get_json()["buyers"]] == [acme["id"]]
    assert acme_client.get(f"/v1/buyers/{other['id']}").status_code == 404
    assert acme_client.get(f"/v1/buyers/{network['id']}").status_code == 404
    assert [p["id"] for p in acme_client.get("/v1/routing-plans").get_json()[
        "routing_plans"]] == [acme_plan["id"]]
    assert acme_client.get(f"/v1/routing-plans/{other_plan['id']}").status_code == 404
    assert acme_client.post("/v1/buyers", json=BUYER).status_code == 403
    # Another publisher's pool cannot use Acme's plan; the network's own pools neither.
    site = make_site(admin)
    assert admin.post("/v1/pools", json={
        "site": site["key"], "name": "Other", "target": "+18005550100",
        "destination": "+12125550199", "numbers": numbers(1), "publisher": "Other",
        "routing_plan": acme_plan["id"]}).status_code == 422
    assert AdminClient(app.test_client(), ADMIN_TOKEN).get(
        f"/v1/routing-plans/{other_plan['id']}").status_code == 200
