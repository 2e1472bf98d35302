"""The admin API: sites, pools, numbers (E.164, validated), retiring, sessions."""

from __future__ import annotations

import pytest

from factories import make_pool, make_site, numbers, post_session, record


def test_admin_calls_need_the_token(client):
    for headers in ({}, {"Authorization": "Bearer wrong-token-wrong-token"},
                    {"Authorization": "Basic abc"}):
        response = client.get("/v1/sites", headers=headers)
        assert response.status_code == 401
        assert response.json["error"]["code"] == "unauthorized"


def test_create_list_show_and_update_a_site(admin):
    site = make_site(admin, domains=["plumbing.example"], timezone="America/New_York")
    assert site["key"].startswith("site_") and site["timezone"] == "America/New_York"
    assert admin.get("/v1/sites").json["sites"] == [site]
    assert admin.get(f"/v1/sites/{site['id']}").json == site
    updated = admin.patch(f"/v1/sites/{site['id']}", json={"keyword_params": ["kw"]}).json
    assert updated["keyword_params"] == ["kw"] and updated["key"] == site["key"]


@pytest.mark.parametrize("body, field", [
    ({}, "name"),
    ({"name": "x", "timezone": "Mars/Olympus"}, "timezone"),
    ({"name": "x", "domains": "a.example"}, "domains"),
])
def test_invalid_site_fields_are_422(admin, body, field):
    response = admin.post("/v1/sites", json=body)
    assert response.status_code == 422
    assert field in response.json["error"]["fields"]


def test_pool_numbers_are_normalised_to_e164(admin):
    site = make_site(admin)
    pool = make_pool(admin, site, target="(800) 555-0100", destination="212-555-0199",
                     numbers=["(650) 555-0101", "+1 650 555 0102", "6505550103"])
    assert (pool["target"], pool["destination"], pool["fallback"]) == (
        "+18005550100", "+12125550199", "+18005550100")
    listed = admin.get(f"/v1/pools/{pool['id']}/numbers").json["numbers"]
    assert [n["number"] for n in listed] == numbers(3)
    assert pool["numbers"]["active"] == 3 and pool["live"]["idle"] == 3


def test_a_bad_number_is_422_naming_it(admin):
    site = make_site(admin)
    response = admin.post("/v1/pools", json={
        "site": site["key"], "name": "P", "target": "+18005550100",
        "destination": "+12125550199", "numbers": ["+16505550101", "+15555550100", "12345"]})
    assert response.status_code == 422
    bad = response.json["error"]["fields"]["numbers"]
    assert set(bad) == {"+15555550100", "12345"}
    response = admin.post("/v1/pools", json={
        "site": site["key"], "name": "P", "target": "not a number", "destination": "+12125550199"})
    assert response.status_code == 422
    assert "target" in response.json["error"]["fields"]
    assert admin.get("/v1/pools").json["pools"] == []


def test_a_number_can_serve_only_one_pool(admin):
    site = make_site(admin)
    first = make_pool(admin, site, numbers=numbers(2))
    response = admin.post("/v1/pools", json={
        "site": site["key"], "name": "Second", "target": "+18005550100",
        "destination": "+12125550199", "numbers": [numbers(2)[1]]})
    assert response.status_code == 422
    assert f"pool {first['id']}" in response.json["error"]["fields"]["numbers"][numbers(2)[1]]


def test_adding_numbers_reports_each_rejected_one(admin):
    site = make_site(admin)
    pool = make_pool(admin, site, numbers=numbers(1))
    response = admin.post(f"/v1/pools/{pool['id']}/numbers",
                          json={"numbers": [numbers(2)[1], numbers(1)[0], "abc", numbers(2)[1]]})
    assert response.status_code == 201
    assert response.json["accepted"] == [numbers(2)[1]]
    reasons = {r["number"]: r["reason"] for r in response.json["rejected"]}
    assert "already in this pool" in reasons[numbers(1)[0]] and "abc" in reasons
    all_bad = admin.post(f"/v1/pools/{pool['id']}/numbers", json={"numbers": ["abc"]})
    assert all_bad.status_code == 422
    assert admin.get(f"/v1/pools/{pool['id']}").json["live"]["idle"] == 2


def test_update_pool_settings_reach_redis(admin, app):
    site = make_site(admin)
    pool = make_pool(admin, site)
    response = admin.patch(f"/v1/pools/{pool['id']}", json={
        "lease_seconds": 120, "rules": [{"source": "Google"}], "priority": 7})
    assert response.status_code == 200
    assert response.json["rules"] == [{"source": ["google"]}]
    meta = app.extensions["dni"].redis.hgetall(app.extensions["dni"].pools.keys(pool["id"]).meta)
    assert meta["lease_ms"] == "120000"
    bad = admin.patch(f"/v1/pools/{pool['id']}", json={"rules": [{"colour": "red"}]})
    assert bad.status_code == 422 and "rules" in bad.json["error"]["fields"]
    bad = admin.patch(f"/v1/pools/{pool['id']}", json={"lease_seconds": "long"})
    assert bad.status_code == 422 and "lease_seconds" in bad.json["error"]["fields"]


def test_retiring_an_idle_number_is_immediate(admin):
    site = make_site(admin)
    pool = make_pool(admin, site, numbers=numbers(2))
    response = admin.delete(f"/v1/pools/{pool['id']}/numbers/{numbers(1)[0]}")
    assert response.status_code == 200 and response.json["status"] == "retired"
    assert admin.get(f"/v1/pools/{pool['id']}").json["live"]["idle"] == 1
    assert admin.delete(f"/v1/pools/{pool['id']}/numbers/+16505550199").status_code == 404


def test_retiring_a_leased_number_waits_for_its_visitor(app, admin, client):
    site = make_site(admin)
    pool = make_pool(admin, site, numbers=numbers(1))
    body = post_session(client, site["key"]).get_json()
    leased = body["numbers"][0]["number"]
    response = admin.delete(f"/v1/pools/{pool['id']}/numbers/{leased}")
    assert response.json["status"] == "retiring"
    # The visitor keeps the number until the lease ends...
    again = post_session(client, site["key"], session_id=body["session_id"]).json
    assert again["numbers"][0]["number"] == leased
    app.extensions["dni"].pools.release(pool["id"], body["session_id"], 2**41)
    record(app)
    # ...then it is retired and never leased again.
    listed = admin.get(f"/v1/pools/{pool['id']}/numbers").json["numbers"]
    assert listed[0]["status"] == "retired" and listed[0]["retired_at"]
    assert post_session(client, site["key"]).json["numbers"][0]["reason"] == "pool_exhausted"
    # A retired number may join another pool.
    other = make_pool(admin, site, name="Other", numbers=[leased])
    assert other["numbers"]["active"] == 1


def test_unknown_things_are_404_json(admin):
    for path in ("/v1/sites/99", "/v1/pools/99", "/v1/sessions/nope", "/v1/nothing-here"):
        response = admin.get(path)
        assert response.status_code == 404
        assert set(response.json["error"]) >= {"code", "message"}
    assert admin.post("/v1/pools", json={"site": "site_x", "name": "P", "target": "+18005550100",
                                         "destination": "+12125550199"}).status_code == 404


def test_wrong_method_is_405_json(admin):
    response = admin.put("/v1/sites")
    assert response.status_code == 405
    assert response.json["error"]["code"] == "method_not_allowed"


def test_sessions_list_shows_recent_visits(app, admin, client):
    site = make_site(admin)
    make_pool(admin, site)
    sid = post_session(client, site["key"], "https://x.example/?utm_source=radio").json[
        "session_id"]
    record(app)
    listed = admin.get(f"/v1/sessions?site={site['key']}").json["sessions"]
    assert [(s["session_id"], s["source"]) for s in listed] == [(sid, "radio")]
    assert admin.get("/v1/sessions?limit=0").status_code == 422


def test_admin_bodies_may_carry_thousands_of_numbers(admin, client):
    """The public API keeps its small body limit; the admin API takes 10,000-number lists."""
    site = make_site(admin)
    pool = make_pool(admin, site, numbers=numbers(1))
    many = numbers(3000, start=200)
    response = admin.post(f"/v1/pools/{pool['id']}/numbers", json={"numbers": many})
    assert response.status_code == 201, response.json
    assert len(response.json["accepted"]) == 3000
    assert admin.get(f"/v1/pools/{pool['id']}").json["live"]["idle"] == 3001
    big = client.post("/v1/sessions", json={"site": site["key"], "url": "x" * 20_000})
    assert big.status_code == 413
