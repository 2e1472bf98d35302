"""The conversions admin API: validation, masking, scopes, the delivery log and the exports."""

from __future__ import annotations

import json
import re

from conversions.receivers import GoogleReceiver, MetaReceiver

from factories import make_pool, make_site, numbers

SECRET = "EAAsuperSECRETtoken-0123456789"


def meta_body(site, **extra):
    return {"site": site["key"], "name": "meta", "kind": "meta",
            "config": {"pixel_id": "1122334455", "access_token": SECRET,
                       "base_url": "http://127.0.0.1:9"}} | extra


def test_destination_credentials_are_masked_everywhere(admin):
    site = make_site(admin)
    created = admin.post("/v1/conversions/destinations", json=meta_body(site))
    assert created.status_code == 201
    dest = created.get_json()
    assert dest["config"]["access_token"] == "****6789"
    assert dest["config"]["pixel_id"] == "1122334455"  # ids are not secrets
    for answer in (dest, admin.get("/v1/conversions/destinations").get_json(),
                   admin.get(f"/v1/conversions/destinations/{dest['id']}").get_json()):
        assert SECRET not in json.dumps(answer)
    # Sending the masked value back keeps the stored secret; a new value replaces it.
    patched = admin.patch(f"/v1/conversions/destinations/{dest['id']}",
                          json={"config": dest["config"] | {"pixel_id": "999"}})
    assert patched.status_code == 200 and patched.get_json()["config"]["pixel_id"] == "999"
    from attribution.conversions.credentials import CredentialBox
    from attribution.conversions.models import ConversionDestination
    from dni_server.extensions import db
    app = admin.client.application
    with app.app_context():
        stored = db.session.get(ConversionDestination, dest["id"]).config
        box = CredentialBox(app.extensions["dni"].settings.credentials_keys)
        assert box.open(stored)["access_token"] == SECRET  # kept, and encrypted at rest
    assert admin.delete(f"/v1/conversions/destinations/{dest['id']}").status_code == 200


def test_bad_input_is_422_naming_the_field(admin):
    site = make_site(admin)
    cases = [
        ("/v1/conversions/destinations", meta_body(site, kind="tiktok"), "kind"),
        ("/v1/conversions/destinations", meta_body(site, config={"pixel_id": "1"}), "config"),
        ("/v1/conversions/destinations", meta_body(site, config="nope"), "config"),
        ("/v1/conversions/destinations", {"site": site["key"], "kind": "meta"}, "name"),
        ("/v1/conversions/rules", {"site": site["key"], "value_source": "fixed"}, "value"),
        ("/v1/conversions/rules", {"site": site["key"], "currency": "usd"}, "currency"),
        ("/v1/conversions/rules", {"site": site["key"], "min_duration": -1}, "min_duration"),
        ("/v1/conversions/rules", {"site": site["key"], "min_duration": "60"}, "min_duration"),
        ("/v1/conversions/rules", {"site": site["key"], "dispositions_excluded": ["meh"]},
         "dispositions_excluded"),
        ("/v1/conversions/rules", {"site": site["key"], "unknown_consent": "maybe"},
         "unknown_consent"),
        ("/v1/conversions/rules", {"site": site["key"], "pool": 999}, "pool"),
        ("/v1/conversions/rules", {"site": site["key"],
                                   "actions": [{"destination": 999, "name": "x"}]}, "actions"),
        ("/v1/conversions/rules", {"site": site["key"], "actions": [{"name": "x"}]}, "actions"),
        ("/v1/conversions/rules", {"site": site["key"], "value": "abc"}, "value"),
    ]
    for path, body, field in cases:
        response = admin.post(path, json=body)
        assert response.status_code == 422, (body, response.get_json())
        assert field in response.get_json()["error"]["fields"], (body, response.get_json())
    for query, field in (("status=nope", "status"), ("call=x", "call"),
                         ("destination=-1", "destination"), ("limit=0", "limit")):
        response = admin.get(f"/v1/conversions/deliveries?{query}")
        assert response.status_code == 422 and field in response.get_json()["error"]["fields"]
    for query, field in (("", "site"), (f"site={site['key']}&start=2026-13-01", "start"),
                         (f"site={site['key']}&start=2026-03-02&end=2026-03-01", "start"),
                         (f"site={site['key']}&id_type=dclid", "id_type")):
        response = admin.get(f"/v1/conversions/export/google.csv?{query}")
        assert response.status_code == 422 and field in response.get_json()["error"]["fields"]
    assert admin.post("/v1/conversions/rules", data="{").status_code == 400
    assert admin.get("/v1/conversions/rules/12345").status_code == 404
    assert admin.post("/v1/conversions/deliveries/12345/retry").status_code == 404


def test_rules_crud_and_duplicate_destination_names(admin):
    site = make_site(admin)
    pool = make_pool(admin, site)
    dest = admin.post("/v1/conversions/destinations", json=meta_body(site)).get_json()
    again = admin.post("/v1/conversions/destinations", json=meta_body(site))
    assert again.status_code == 409
    rule = admin.post("/v1/conversions/rules", json={
        "site": site["key"], "pool": pool["id"], "min_duration": 30, "value_source": "fixed",
        "value": "12.50", "currency": "EUR",
        "actions": [{"destination": dest["id"], "name": "Lead"}]})
    assert rule.status_code == 201, rule.get_json()
    body = rule.get_json()
    assert body["actions"] == [{"destination": dest["id"], "name": "Lead", "enabled": True}]
    assert (body["pool"], body["value"], body["currency"]) == (pool["id"], "12.50", "EUR")
    patched = admin.patch(f"/v1/conversions/rules/{body['id']}", json={"enabled": False})
    assert patched.get_json()["enabled"] is False
    assert len(admin.get(f"/v1/conversions/rules?site={site['key']}").get_json()["rules"]) == 1
    assert admin.delete(f"/v1/conversions/rules/{body['id']}").status_code == 200
    assert admin.get(f"/v1/conversions/rules/{body['id']}").status_code == 404


def test_read_only_and_publisher_tokens(admin, client):
    site = make_site(admin)
    tokens = {}
    for scope, extra in (("read_only", {}), ("publisher", {"publisher": "Acme"})):
        answer = admin.post("/v1/tokens", json={"name": scope, "scope": scope, **extra})
        tokens[scope] = {"Authorization": f"Bearer {answer.get_json()['token']}"}
    assert client.post("/v1/conversions/destinations", json=meta_body(site),
                       headers=tokens["read_only"]).status_code == 403
    assert client.get("/v1/conversions/destinations",
                      headers=tokens["read_only"]).status_code == 200
    assert client.get("/v1/conversions/destinations",
                      headers=tokens["publisher"]).status_code == 403
    answer = client.get("/v1/conversions/deliveries", headers=tokens["publisher"])
    assert answer.status_code == 200 and answer.get_json() == {"deliveries": []}
    assert client.get("/v1/conversions/deliveries").status_code == 401


def test_exports_for_a_date_range(admin):
    site = make_site(admin, timezone="America/New_York")
    pool = make_pool(admin, site, numbers=numbers(3), revenue="120.00")
    with GoogleReceiver() as google:
        google_dest = admin.post("/v1/conversions/destinations", json={
            "site": site["key"], "name": "google", "kind": "google",
            "config": google.config()}).get_json()
    ms = admin.post("/v1/conversions/destinations", json={
        "site": site["key"], "name": "bing", "kind": "microsoft", "enabled": False,
        "config": {"customer_id": "1", "account_id": "2", "developer_token": "dev-token-123456",
                   "access_token": "access-token-123456"}}).get_json()
    admin.post("/v1/conversions/rules", json={"site": site["key"], "actions": [
        {"destination": google_dest["id"], "name": "Qualified call"},
        {"destination": ms["id"], "name": "Qualified call"}]})
    number = admin.get(f"/v1/pools/{pool['id']}/numbers").get_json()["numbers"][0]["number"]
    from attribution.models import Call
    from dni_server.extensions import db
    for i, (when, gclid, msclkid) in enumerate((
            ("2026-03-01T18:45:00Z", "EAIaIQobChMI-example", "b1c2d3"),
            ("2026-03-05T18:45:00Z", "EAIaIQobChMI-later", None))):
        call = admin.post("/v1/calls", json={"call_id": f"c-{i}", "from": "+14158675309",
                                             "to": number, "started_at": when,
                                             "duration": 90}).get_json()
        with admin.client.application.app_context():
            row = db.session.get(Call, call["id"])
            row.gclid, row.msclkid = gclid, msclkid
            db.session.commit()
    google = admin.get(f"/v1/conversions/export/google.csv?site={site['key']}"
                       "&start=2026-03-01&end=2026-03-02")
    assert google.status_code == 200 and google.mimetype == "text/csv"
    assert google.get_data(as_text=True) == (
        "Parameters:TimeZone=America/New_York\r\n"
        "Google Click ID,Conversion Name,Conversion Time,Conversion Value,Conversion Currency\r\n"
        "EAIaIQobChMI-example,Qualified call,2026-03-01 13:45:00,120.00,USD\r\n")
    microsoft = admin.get(f"/v1/conversions/export/microsoft.csv?site={site['key']}"
                          "&start=2026-03-01&end=2026-03-31")
    assert microsoft.get_data(as_text=True) == (
        "Parameters:TimeZone=+0000\r\n"
        "Microsoft Click ID,Conversion Name,Conversion Time,Conversion Value,"
        "Conversion Currency\r\n"
        "b1c2d3,Qualified call,3/1/2026 6:45:00 PM,120.00,USD\r\n")


def test_config_file_destinations_are_applied_by_the_worker(make_app, tmp_path):
    with MetaReceiver() as meta:
        path = tmp_path / "conversions.json"
        app = make_app()
        from factories import ADMIN_TOKEN, AdminClient
        admin = AdminClient(app.test_client(), ADMIN_TOKEN)
        site = make_site(admin)
        path.write_text(json.dumps({"sites": {site["key"]: {
            "destinations": {"meta": {"kind": "meta", "config": meta.config()}},
            "rule": {"currency": "USD", "actions": {"meta": {"name": "Lead"}}}}}}))
        configured = make_app(DNI_CONVERSIONS_CONFIG=str(path))
        from dni_server.worker import Worker
        Worker(configured).run_once()
        answer = AdminClient(configured.test_client(), ADMIN_TOKEN).get(
            "/v1/conversions/destinations").get_json()["destinations"]
        assert [(d["name"], d["managed_by"]) for d in answer] == [("meta", "env")]
        assert meta.ACCESS_TOKEN not in json.dumps(answer)


def test_a_bad_config_file_stops_the_app_naming_the_variable(tmp_path):
    import pytest

    from dni_server.config import ConfigError, load_settings
    path = tmp_path / "bad.json"
    for document, needle in (
            ("{", "DNI_CONVERSIONS_CONFIG"),
            (json.dumps({"sites": {"k": {"destinations": {"x": {"kind": "tiktok"}}}}}), "kind"),
            (json.dumps({"sites": {"k": {"destinations": {"x": {"kind": "meta",
                                                                 "config": {}}}}}}), "pixel_id"),
            (json.dumps({"sites": {"k": {"rule": {"actions": {"nope": {"name": "x"}}}}}}),
             "nope")):
        path.write_text(document)
        with pytest.raises(ConfigError, match=needle):
            load_settings({"DNI_CONVERSIONS_CONFIG": str(path)})
    with pytest.raises(ConfigError, match="DNI_CONVERSIONS_CONFIG"):
        load_settings({"DNI_CONVERSIONS_CONFIG": str(tmp_path / "missing.json")})


def test_dashboard_lists_deliveries_and_their_log(app, admin):
    from attribution.conversions.models import ConversionAttempt, ConversionDelivery
    from dni_server.extensions import db

    site = make_site(admin)
    pool = make_pool(admin, site)
    dest = admin.post("/v1/conversions/destinations", json=meta_body(site)).get_json()
    admin.post("/v1/conversions/rules", json={
        "site": site["key"], "actions": [{"destination": dest["id"], "name": "Lead"}]})
    number = admin.get(f"/v1/pools/{pool['id']}/numbers").get_json()["numbers"][0]["number"]
    admin.post("/v1/calls", json={"call_id": "c-1", "from": "+14158675309", "to": number,
                                  "started_at": "2026-03-01T18:45:00Z", "duration": 90})
    with app.app_context():
        row = db.session.scalars(db.select(ConversionDelivery)).one()
        db.session.add(ConversionAttempt(delivery_id=row.id, outcome="retry", http_status=503,
                                         request={"url": "https://graph/x?access_token=****6789"},
                                         response={"body": "down for maintenance"}))
        db.session.commit()
        delivery_id = row.id
    browser = app.test_client()
    login = browser.get("/dashboard/login").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', login).group(1)
    assert browser.post("/dashboard/login", data={"token": "test-admin-token-0123456789abcdef",
                                                  "csrf_token": csrf}).status_code == 302
    page = browser.get("/dashboard/conversions")
    text = page.get_data(as_text=True)
    assert page.status_code == 200 and "Lead" in text and "pending" in text
    detail = browser.get(f"/dashboard/conversions?delivery={delivery_id}").get_data(as_text=True)
    assert "down for maintenance" in detail and "access_token=****6789" in detail
    assert SECRET not in detail
    assert browser.get("/dashboard/conversions?delivery=999").status_code == 404
