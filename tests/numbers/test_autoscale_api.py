"""The autoscale policy on the pool (PATCH/GET /v1/pools/<id>), its checks, and the log."""

from __future__ import annotations

from fakes import TWILIO_SID, TWILIO_TOKEN

from factories import AdminClient, make_pool, make_site, numbers

TWILIO = {"name": "Scaling Twilio", "carrier": "twilio",
          "credentials": {"account_sid": TWILIO_SID, "auth_token": TWILIO_TOKEN}}


def patch(admin, pool, autoscale):
    return admin.patch(f"/v1/pools/{pool['id']}", json={"autoscale": autoscale})


def test_a_policy_is_checked_stored_merged_and_removed(admin, pool):
    account = admin.post("/v1/carrier-accounts", json=TWILIO).json
    assert admin.get(f"/v1/pools/{pool['id']}").json["autoscale"] is None

    bad = patch(admin, pool, {"mode": "auto", "max": 0, "budget": 3, "accuracy_target": 2})
    assert bad.status_code == 422, bad.json
    assert set(bad.json["error"]["fields"]["autoscale"]) == {"mode", "max", "budget",
                                                             "accuracy_target"}
    no_account = patch(admin, pool, {"enabled": True, "mode": "apply"})
    assert no_account.status_code == 422
    assert "account" in no_account.json["error"]["fields"]["autoscale"]
    unknown = patch(admin, pool, {"enabled": True, "account": "nobody"})
    assert unknown.json["error"]["fields"]["autoscale"] == {
        "account": "unknown carrier account 'nobody'"}
    assert admin.get(f"/v1/pools/{pool['id']}").json["autoscale"] is None  # nothing stored

    done = patch(admin, pool, {"enabled": True, "mode": "apply", "account": "Scaling Twilio",
                               "min": 2, "max": 30, "accuracy_target": 0.9, "trim_day": 28})
    assert done.status_code == 200, done.json
    policy = done.json["autoscale"]
    assert policy["account"] == account["id"]  # the name resolved to the id
    assert (policy["min"], policy["max"], policy["step"], policy["daily_limit"]) == (2, 30, 5, 10)
    # A change merges into the stored policy; a pool setting beside it still applies.
    merged = admin.patch(f"/v1/pools/{pool['id']}",
                         json={"autoscale": {"step": 3}, "lease_seconds": 120})
    assert merged.status_code == 200, merged.json
    assert merged.json["autoscale"]["step"] == 3 and merged.json["autoscale"]["max"] == 30
    assert merged.json["lease_seconds"] == 120
    assert patch(admin, pool, {"min": 40}).json["error"]["fields"]["autoscale"] == {
        "min": "must not be over max"}
    assert patch(admin, pool, None).json["autoscale"] is None
    assert patch(admin, pool, [1]).status_code == 422  # not an object


def test_a_pool_can_be_created_with_a_policy_and_a_bad_one_creates_nothing(admin):
    site = make_site(admin)
    refused = admin.post("/v1/pools", json={
        "site": site["key"], "name": "Scaled", "target": "+18005550100",
        "destination": "+12125550199", "numbers": numbers(2, start=170),
        "autoscale": {"enabled": True, "step": 0}})
    assert refused.status_code == 422
    assert admin.get("/v1/pools").json["pools"] == []
    created = make_pool(admin, site, numbers=numbers(2, start=170),
                        autoscale={"enabled": True, "max": 12})
    assert created["autoscale"]["max"] == 12 and created["autoscale"]["mode"] == "propose"


def test_the_decision_log_is_for_operators_only(carrier_app, admin, pool):
    assert admin.get(f"/v1/pools/{pool['id']}/autoscale/decisions").json == {"decisions": []}
    assert admin.get("/v1/pools/999999/autoscale/decisions").status_code == 404
    patch(admin, pool, {"enabled": True})
    admin.patch(f"/v1/pools/{pool['id']}", json={"publisher": "Acme"})
    token = admin.post("/v1/tokens", json={"name": "acme", "scope": "publisher",
                                           "publisher": "Acme"}).json["token"]
    publisher = AdminClient(carrier_app.test_client(), token)
    seen = publisher.get(f"/v1/pools/{pool['id']}")
    assert seen.status_code == 200 and seen.json["autoscale"] is None
    assert publisher.get(f"/v1/pools/{pool['id']}/autoscale/decisions").status_code == 403
    refused = publisher.patch(f"/v1/pools/{pool['id']}", json={"autoscale": {"max": 99}})
    assert refused.status_code == 403
    assert admin.get(f"/v1/pools/{pool['id']}").json["autoscale"]["max"] == 50


def test_odd_policies_are_422_never_500(admin, pool):
    for odd in ("on", 7, {"account": 2**40}, {"account": -1}, {"account": {"id": 1}},
                {"mode": ["apply"]}, {"min": 10**12}, {"accuracy_target": "0.9"},
                {"area_code": "４１５"}, {"trim_day": 0}, {"": 1}, {"enabled": None}):
        response = patch(admin, pool, odd)
        assert response.status_code == 422, (odd, response.json)
        assert response.json["error"]["fields"]
