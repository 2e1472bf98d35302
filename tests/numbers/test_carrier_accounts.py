"""Carrier accounts: CRUD, credentials sealed at rest and masked, the test action, and the
number search against the Twilio and Telnyx fakes."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from fakes import TELNYX_CONNECTION, TELNYX_KEY, TWILIO_SID, TWILIO_TOKEN

from dni_server.extensions import db
from factories import AdminClient

TWILIO = {"name": "Main Twilio", "carrier": "twilio",
          "credentials": {"account_sid": TWILIO_SID, "auth_token": TWILIO_TOKEN}}
TELNYX = {"name": "Main Telnyx", "carrier": "telnyx",
          "credentials": {"api_key": TELNYX_KEY, "connection_id": TELNYX_CONNECTION}}


def create(admin, body) -> dict:
    response = admin.post("/v1/carrier-accounts", json=body)
    assert response.status_code == 201, response.json
    return response.json


def test_an_account_is_stored_sealed_and_shown_masked(carrier_app, admin):
    twilio = create(admin, TWILIO)
    assert twilio["carrier"] == "twilio" and twilio["name"] == "Main Twilio"
    assert twilio["credentials"] == {"account_sid": TWILIO_SID,
                                     "auth_token": "****" + TWILIO_TOKEN[-4:]}
    telnyx = create(admin, TELNYX)
    assert telnyx["credentials"] == {"api_key": "****" + TELNYX_KEY[-4:],
                                     "connection_id": TELNYX_CONNECTION}
    with carrier_app.app_context():
        raw = dict(db.session.execute(sa.text(
            "SELECT name, credentials FROM carrier_accounts")).all())
    for stored in raw.values():
        assert TWILIO_TOKEN not in str(stored) and TELNYX_KEY not in str(stored)
        assert "fernet:" in str(stored)
    listed = admin.get("/v1/carrier-accounts").json["accounts"]
    assert [a["name"] for a in listed] == ["Main Twilio", "Main Telnyx"]
    assert TWILIO_TOKEN not in str(listed) and TELNYX_KEY not in str(listed)
    assert admin.get(f"/v1/carrier-accounts/{twilio['id']}").json == twilio


def test_patch_keeps_a_masked_secret_and_replaces_a_new_one(admin, twilio_fake):
    account = create(admin, TWILIO)
    kept = admin.patch(f"/v1/carrier-accounts/{account['id']}", json={
        "name": "Renamed", "credentials": account["credentials"]})
    assert kept.status_code == 200 and kept.json["name"] == "Renamed"
    assert admin.post(f"/v1/carrier-accounts/{account['id']}/test").json["ok"] is True
    changed = admin.patch(f"/v1/carrier-accounts/{account['id']}", json={"credentials": {
        "account_sid": TWILIO_SID, "auth_token": "a" * 32}})
    assert changed.json["credentials"]["auth_token"] == "****aaaa"
    refused = admin.post(f"/v1/carrier-accounts/{account['id']}/test").json
    assert refused["ok"] is False and refused["carrier_status"] == 401


def test_the_test_action_checks_each_carrier(admin, twilio_fake, telnyx_fake):
    twilio, telnyx = create(admin, TWILIO), create(admin, TELNYX)
    assert admin.post(f"/v1/carrier-accounts/{twilio['id']}/test").json == {
        "ok": True, "account": "Fake account (active)"}
    assert admin.post(f"/v1/carrier-accounts/{telnyx['id']}/test").json == {
        "ok": True, "account": "connection dni tracking"}
    wrong = create(admin, {**TELNYX, "name": "Wrong connection", "credentials": {
        "api_key": TELNYX_KEY, "connection_id": "999"}})
    answer = admin.post(f"/v1/carrier-accounts/{wrong['id']}/test").json
    assert answer["ok"] is False and answer["carrier_status"] == 404
    assert twilio_fake.violations == [] and telnyx_fake.violations == []


@pytest.mark.parametrize(("body", "field"), [
    ({**TWILIO, "carrier": "bandwidth"}, "carrier"),
    ({**TWILIO, "name": ""}, "name"),
    ({**TWILIO, "credentials": {"account_sid": "AC123", "auth_token": TWILIO_TOKEN}},
     "credentials"),
    ({**TWILIO, "credentials": {"account_sid": TWILIO_SID}}, "credentials"),
    ({**TELNYX, "credentials": {"api_key": TELNYX_KEY, "connection_id": TELNYX_CONNECTION,
                                "extra": "x"}}, "credentials"),
    ({"name": "x", "carrier": "twilio"}, "credentials"),
])
def test_bad_accounts_are_refused_with_the_field(admin, body, field):
    response = admin.post("/v1/carrier-accounts", json=body)
    assert response.status_code == 422, response.json
    assert field in response.json["error"]["fields"]


def test_names_are_unique_and_unknown_accounts_are_404(admin):
    create(admin, TWILIO)
    assert admin.post("/v1/carrier-accounts", json=TWILIO).status_code == 409
    assert admin.get("/v1/carrier-accounts/999").status_code == 404
    assert admin.patch("/v1/carrier-accounts/999", json={"name": "x"}).status_code == 404


def test_delete_an_unused_account(admin):
    account = create(admin, TWILIO)
    gone = admin.delete(f"/v1/carrier-accounts/{account['id']}")
    assert gone.status_code == 200 and gone.json["id"] == account["id"]
    assert admin.get(f"/v1/carrier-accounts/{account['id']}").status_code == 404


def test_publishers_and_readers_cannot_change_or_see_accounts(carrier_app, admin):
    account = create(admin, TWILIO)
    tokens = {scope: admin.post("/v1/tokens", json={
        "name": scope, "scope": scope, "publisher": "Acme" if scope == "publisher" else None
    }).json["token"] for scope in ("publisher", "read_only")}
    publisher = AdminClient(carrier_app.test_client(), tokens["publisher"])
    reader = AdminClient(carrier_app.test_client(), tokens["read_only"])
    assert publisher.get("/v1/carrier-accounts").status_code == 403
    assert publisher.get(f"/v1/carrier-accounts/{account['id']}").status_code == 403
    assert reader.post("/v1/carrier-accounts", json=TELNYX).status_code == 403
    assert reader.delete(f"/v1/carrier-accounts/{account['id']}").status_code == 403
    shown = reader.get(f"/v1/carrier-accounts/{account['id']}").json
    assert TWILIO_TOKEN not in str(shown)


@pytest.mark.parametrize("body", [TWILIO, TELNYX])
def test_search_lists_what_the_carrier_has_in_the_area(admin, twilio_fake, telnyx_fake, body):
    account = create(admin, body)
    found = admin.get(f"/v1/carrier-accounts/{account['id']}/available-numbers"
                      "?country=US&area_code=415&contains=&toll_free=false&limit=3")
    assert found.status_code == 200, found.json
    listed = [n["number"] for n in found.json["numbers"]]
    assert len(listed) == 3 and all(n.startswith("+1415") for n in listed)
    assert found.json["numbers"][0]["region"] == "CA"
    fake = twilio_fake if body is TWILIO else telnyx_fake
    assert fake.count("search") == 1 and fake.violations == []
    if body is TWILIO:
        assert "AreaCode=415" in fake.requests[-1]["query"]
        assert "Contains" not in fake.requests[-1]["query"]  # an empty filter is no filter
    else:
        assert "filter%5Bnational_destination_code%5D=415" in fake.requests[-1]["query"]


@pytest.mark.parametrize("query", ["area_code=4", "country=usa", "contains=%25%25",
                                   "limit=500", "toll_free=maybe"])
def test_bad_search_filters_are_422(admin, query):
    account = create(admin, TWILIO)
    response = admin.get(f"/v1/carrier-accounts/{account['id']}/available-numbers?{query}")
    assert response.status_code == 422


def test_a_carrier_outage_is_a_502_not_a_500(admin, twilio_fake):
    account = create(admin, TWILIO)
    twilio_fake.fail_next("search", 1, status=503)
    response = admin.get(f"/v1/carrier-accounts/{account['id']}/available-numbers")
    assert response.status_code == 502
    assert response.json["error"]["code"] == "carrier_error"


def test_credentials_sealed_with_a_removed_key_are_a_clear_answer(make_app, admin,
                                                                   twilio_fake):
    from cryptography.fernet import Fernet

    account = create(admin, TWILIO)
    other = make_app(DNI_TWILIO_API_URL=twilio_fake.url,
                     DNI_CREDENTIALS_KEYS=Fernet.generate_key().decode())
    stranger = AdminClient(other.test_client(), admin.headers["Authorization"].split()[1])
    shown = stranger.get(f"/v1/carrier-accounts/{account['id']}")
    assert shown.status_code == 200
    assert shown.json["credentials"] == {"account_sid": None, "auth_token": None}
    checked = stranger.post(f"/v1/carrier-accounts/{account['id']}/test").json
    assert checked["ok"] is False and "cannot be read" in checked["error"]
    search = stranger.get(f"/v1/carrier-accounts/{account['id']}/available-numbers")
    assert search.status_code == 409
    assert search.json["error"]["code"] == "credentials_unreadable"
    assert twilio_fake.count("search") == 0
