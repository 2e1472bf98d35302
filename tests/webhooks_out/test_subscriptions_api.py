"""/v1/webhooks: validation, the secret shown once and sealed at rest, tenancy."""

from __future__ import annotations

import dataclasses

import pytest
from sqlalchemy import select

from attribution.webhooks.models import WebhookSubscription
from factories import make_pool, make_site, numbers
from webhooks_out.conftest import subscribe


def token_client(admin, app, scope, publisher=None):
    from factories import AdminClient

    response = admin.post("/v1/tokens", json={"name": f"{scope}-{publisher}", "scope": scope,
                                              "publisher": publisher})
    assert response.status_code == 201, response.get_json()
    return AdminClient(app.test_client(), response.get_json()["token"])


def stored(app, subscription_id) -> WebhookSubscription:
    with app.extensions["dni"].session_factory() as db:
        return db.scalar(select(WebhookSubscription).where(
            WebhookSubscription.id == subscription_id))


def test_the_secret_is_shown_once_and_encrypted_at_rest(app, admin, receiver):
    site = make_site(admin)
    created = subscribe(admin, site, receiver, events=["call.completed"])
    secret = created["secret"]
    assert secret.startswith("whsec_") and len(secret) > 40
    assert created["events"] == ["call.completed"] and created["enabled"] is True
    row = stored(app, created["id"])
    assert row.secret.startswith("fernet:") and secret not in row.secret
    shown = admin.get(f"/v1/webhooks/{created['id']}").get_json()
    listed = admin.get("/v1/webhooks").get_json()["webhooks"]
    for view in (shown, listed[0]):
        assert secret not in str(view)
        assert view["secret"] == "whsec_****" + secret[-4:]
    rotated = admin.patch(f"/v1/webhooks/{created['id']}", json={"rotate_secret": True})
    assert rotated.status_code == 200
    new = rotated.get_json()["secret"]
    assert new.startswith("whsec_") and new != secret
    assert admin.get(f"/v1/webhooks/{created['id']}").get_json()["secret"].endswith(new[-4:])


def test_nothing_is_stored_without_an_encryption_key(app, admin):
    services = app.extensions["dni"]  # as on PostgreSQL with DNI_CREDENTIALS_KEYS unset
    services.settings = dataclasses.replace(services.settings, credentials_keys=())
    site = make_site(admin)
    response = admin.post("/v1/webhooks", json={"site": site["key"], "events": ["call.started"],
                                                 "url": "https://crm.example/hooks"})
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "credentials_key_missing"
    assert admin.get("/v1/webhooks").get_json()["webhooks"] == []


@pytest.mark.parametrize("url, why", [
    ("http://crm.example/hooks", "https"),
    ("https://10.1.2.3/hooks", "private"),
    ("https://169.254.169.254/latest/meta-data", "link-local"),
    ("https://[::1]/hooks", "loopback"),
    ("https://user:pw@crm.example/hooks", "user name"),
    ("ftp://crm.example/hooks", "http(s)"),
    ("not a url", "spaces"),
])
def test_bad_urls_are_refused_with_the_field_named(app, admin, url, why):
    site = make_site(admin)
    response = admin.post("/v1/webhooks", json={"site": site["key"], "url": url,
                                                 "events": ["call.started"]})
    assert response.status_code == 422, response.get_json()
    error = response.get_json()["error"]
    assert why in error["fields"]["url"]


def test_http_is_allowed_only_to_operator_allowed_hosts(app, admin):
    site = make_site(admin)
    ok = admin.post("/v1/webhooks", json={"site": site["key"], "events": ["call.started"],
                                           "url": "http://127.0.0.1:9/hooks"})
    assert ok.status_code == 201  # 127.0.0.1 is in the test apps' DNI_OUTBOUND_ALLOW_HOSTS


@pytest.mark.parametrize("body, field", [
    ({"events": ["call.started", "call.exploded"]}, "events"),
    ({"events": []}, "events"),
    ({"events": "call.started"}, "events"),
    ({"url": 7}, "url"),
    ({"publisher": "nobody-here"}, "publisher"),
])
def test_bad_fields_are_422_never_500(app, admin, body, field):
    site = make_site(admin)
    make_pool(admin, site, numbers=numbers(2), publisher="A")
    full = {"site": site["key"], "url": "https://crm.example/hooks",
            "events": ["call.started"]} | body
    response = admin.post("/v1/webhooks", json=full)
    assert response.status_code == 422, response.get_json()
    assert field in response.get_json()["error"]["fields"]


def test_unknown_site_and_unknown_subscription_are_404(app, admin):
    response = admin.post("/v1/webhooks", json={"site": "nope", "events": ["call.started"],
                                                 "url": "https://crm.example/hooks"})
    assert response.status_code == 404
    for method in ("get", "patch", "delete"):
        kwargs = {"json": {"enabled": False}} if method == "patch" else {}
        assert getattr(admin, method)("/v1/webhooks/999", **kwargs).status_code == 404


def test_patch_and_delete(app, admin, receiver):
    site = make_site(admin)
    created = subscribe(admin, site, receiver)
    off = admin.patch(f"/v1/webhooks/{created['id']}", json={"enabled": False,
                                                              "events": ["pool.exhausted"]})
    assert off.status_code == 200
    assert off.get_json()["enabled"] is False and off.get_json()["events"] == ["pool.exhausted"]
    assert off.get_json()["disabled_reason"] == "disabled through the API"
    on = admin.patch(f"/v1/webhooks/{created['id']}", json={"enabled": True}).get_json()
    assert on["enabled"] is True and on["disabled_reason"] is None
    bad = admin.patch(f"/v1/webhooks/{created['id']}", json={"url": "https://192.168.1.1/x"})
    assert bad.status_code == 422
    assert admin.delete(f"/v1/webhooks/{created['id']}").status_code == 200
    assert admin.get(f"/v1/webhooks/{created['id']}").status_code == 404


def test_a_publisher_token_sees_only_its_subscriptions_and_changes_none(app, admin, receiver):
    site = make_site(admin)
    make_pool(admin, site, numbers=numbers(2), publisher="A")
    make_pool(admin, site, numbers=numbers(2, start=150), publisher="B", name="B pool",
              target="+18005550111")
    mine = subscribe(admin, site, receiver, publisher="A")
    theirs = subscribe(admin, site, receiver, publisher="B")
    everything = subscribe(admin, site, receiver)
    a = token_client(admin, app, "publisher", "A")
    listed = a.get("/v1/webhooks").get_json()["webhooks"]
    assert [w["id"] for w in listed] == [mine["id"]]
    assert a.get(f"/v1/webhooks/{mine['id']}").status_code == 200
    for other in (theirs, everything):
        assert a.get(f"/v1/webhooks/{other['id']}").status_code == 404
        assert a.get(f"/v1/webhooks/{other['id']}/deliveries").status_code == 404
    assert a.post("/v1/webhooks", json={"site": site["key"], "url": "https://x.example/",
                                         "events": ["call.started"]}).status_code == 403
    assert a.patch(f"/v1/webhooks/{mine['id']}", json={"enabled": False}).status_code == 403
    assert a.delete(f"/v1/webhooks/{mine['id']}").status_code == 403
    read_only = token_client(admin, app, "read_only")
    assert len(read_only.get("/v1/webhooks").get_json()["webhooks"]) == 3
    assert read_only.post("/v1/webhooks", json={}).status_code == 403


def test_routes_are_in_the_openapi_document(app, client):
    paths = client.get("/openapi.json").get_json()["paths"]
    assert {"post", "get"} <= set(paths["/v1/webhooks"])
    assert {"get", "patch", "delete"} <= set(paths["/v1/webhooks/{subscription_id}"])
    assert "post" in paths["/v1/webhooks/{subscription_id}/deliveries/{delivery_id}/replay"]


def test_bad_query_and_body_values_are_4xx(app, admin, receiver):
    site = make_site(admin)
    created = subscribe(admin, site, receiver)
    base = f"/v1/webhooks/{created['id']}"
    assert admin.get(f"{base}/deliveries?status=lost").status_code == 422
    assert admin.get(f"{base}/deliveries?limit=abc").status_code == 422
    assert admin.get("/v1/webhooks?site=nope").status_code == 404
    assert admin.post("/v1/webhooks", data="not json",
                      headers={"Content-Type": "application/json"}).status_code == 400
    assert admin.patch(base, json={"enabled": "maybe"}).status_code == 422
    assert admin.patch(base, json=[1]).status_code in (400, 422)
    assert admin.post(f"{base}/deliveries/1/replay").status_code == 404
    assert admin.get("/v1/webhooks", headers={"Authorization": "Bearer nope"}).status_code == 401


def test_after_a_key_rotation_the_worker_reseals_secrets_with_the_new_key(app, admin,
                                                                          receiver):
    from attribution.conversions.credentials import CredentialBox, new_key
    from attribution.webhooks.delivery import WebhookDeliverer

    site = make_site(admin)
    created = subscribe(admin, site, receiver)
    old = app.extensions["dni"].settings.credentials_keys[0]
    new = new_key()
    worker = WebhookDeliverer(app.extensions["dni"].session_factory,
                              credentials_keys=(new, old))
    worker.run_once()
    row = stored(app, created["id"])
    assert CredentialBox((new,)).open({"secret": row.secret})["secret"] == created["secret"]
