"""Scoped tokens: publishers see only their own pools, numbers, calls and reports."""

from __future__ import annotations

import datetime as dt

import pytest

from dni_server.extensions import db
from dni_server.tokens import ApiToken
from factories import AdminClient, make_pool, make_site, numbers


def token(admin, scope: str, publisher: str | None = None) -> str:
    response = admin.post("/v1/tokens", json={"name": f"{scope} {publisher}", "scope": scope,
                                              "publisher": publisher})
    assert response.status_code == 201, response.json
    return response.json["token"]


@pytest.fixture
def world(app, admin):
    site = make_site(admin)
    acme = make_pool(admin, site, numbers=numbers(1), publisher="Acme")
    other = make_pool(admin, site, target="+18005550102", numbers=numbers(1, 111),
                      publisher="Other")
    for call_id, to in (("acme-call", numbers(1)[0]), ("other-call", numbers(1, 111)[0])):
        admin.post("/v1/calls", json={"call_id": call_id, "from": "+14158675309", "to": to,
                                      "started_at": dt.datetime.now(dt.UTC).isoformat(),
                                      "duration": 90})
    admin.post("/v1/static-numbers", json={"number": "+18005550103", "destination": "+12125550199",
                                           "source": "radio", "medium": "offline",
                                           "publisher": "Other"})
    return {"site": site, "acme": acme, "other": other,
            "publisher": AdminClient(app.test_client(), token(admin, "publisher", "Acme")),
            "reader": AdminClient(app.test_client(), token(admin, "read_only"))}


def test_a_publisher_sees_only_its_own(world):
    pub = world["publisher"]
    assert [p["id"] for p in pub.get("/v1/pools").json["pools"]] == [world["acme"]["id"]]
    assert pub.get(f"/v1/pools/{world['acme']['id']}").status_code == 200
    assert pub.get(f"/v1/pools/{world['other']['id']}").status_code == 404
    assert pub.get(f"/v1/pools/{world['other']['id']}/numbers").status_code == 404
    assert pub.get(f"/v1/pools/{world['other']['id']}/health").status_code == 404
    calls = pub.get("/v1/calls").json["calls"]
    assert [c["call_id"] for c in calls] == ["acme-call"]
    assert pub.get("/v1/calls/other-call").status_code == 404
    assert pub.get("/v1/static-numbers").json["static_numbers"] == []
    report = pub.get("/v1/reports/attribution", query_string={"publisher": "Other",
                                                               "metrics": "calls"}).json
    assert report["totals"]["calls"] == 1  # its own, whatever it asks for


def test_a_publisher_cannot_see_sites_sessions_or_change_anything(world):
    pub = world["publisher"]
    for path in ("/v1/sites", f"/v1/sites/{world['site']['id']}", "/v1/sessions", "/v1/tokens"):
        assert pub.get(path).status_code == 403, path
    assert pub.post("/v1/sites", json={"name": "x"}).status_code == 403
    assert pub.patch(f"/v1/pools/{world['acme']['id']}", json={"priority": 3}).status_code == 403
    assert pub.post("/v1/calls/acme-call/disposition",
                    json={"disposition": "spam"}).status_code == 403


def test_read_only_sees_everything_and_changes_nothing(world):
    reader = world["reader"]
    assert len(reader.get("/v1/calls").json["calls"]) == 2
    assert reader.get("/v1/sites").status_code == 200
    assert reader.post("/v1/sites", json={"name": "x"}).json["error"]["code"] == "forbidden"
    assert reader.get("/v1/tokens").status_code == 403


def test_tokens_are_hashed_at_rest_and_can_be_revoked(app, admin, world):
    secret = token(admin, "read_only")
    with app.app_context():
        stored = [row.token_hash for row in db.session.query(ApiToken)]
    assert secret not in stored and all(len(h) == 64 for h in stored)
    listed = admin.get("/v1/tokens").json["tokens"]
    assert all("token" not in t for t in listed)
    client = AdminClient(app.test_client(), secret)
    assert client.get("/v1/calls").status_code == 200
    admin.delete(f"/v1/tokens/{listed[-1]['id']}")
    assert client.get("/v1/calls").status_code == 401


@pytest.mark.parametrize("body", [{"name": "x", "scope": "publisher"},
                                  {"name": "x", "scope": "admin", "publisher": "Acme"},
                                  {"name": "x", "scope": "root"}])
def test_bad_token_requests_are_422(admin, body):
    assert admin.post("/v1/tokens", json=body).status_code == 422
