"""Every admin route against every token scope, from the URL map; tokens at rest; dashboard
headers and CSRF on every form route. (tests/test_tokens.py covers the publisher's view of
its own data; this file makes sure no route is left out.)"""

from __future__ import annotations

import re

import pytest
from sqlalchemy import event

from dni_server.extensions import db
from dni_server.tokens import digest
from factories import ADMIN_TOKEN, AdminClient, make_pool, make_site, numbers

PUBLIC = {"/v1/sessions": {"POST"}, "/v1/sessions/<session_id>/heartbeat": {"POST"},
          "/v1/sessions/<session_id>/touch": {"POST"}, "/v1/amp/number": {"GET"},
          "/v1/callbacks": {"POST"}, "/v1/callbacks/<callback_id>": {"GET"}}
# GET routes a publisher token may not read at all; every other GET is scoped to its data.
NOT_FOR_PUBLISHERS = re.compile(r"^/v1/(sites|sessions|tokens)")
ADMIN_ONLY = re.compile(r"^/v1/tokens")  # read-only tokens may not even list tokens


def admin_routes(app):
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/v1/"):
            continue
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"} - PUBLIC.get(rule.rule, set())):
            yield method, rule.rule


@pytest.fixture
def world(app, admin):
    site = make_site(admin)
    mine = make_pool(admin, site, numbers=numbers(1), publisher="Acme")
    theirs = make_pool(admin, site, target="+18005550102", numbers=numbers(1, 111),
                       publisher="Other")
    call = admin.post("/v1/calls", json={"call_id": "theirs", "from": "+14158675309",
                                         "to": numbers(1, 111)[0],
                                         "started_at": "2026-05-01T10:00:00Z"}).json
    static = admin.post("/v1/static-numbers", json={
        "number": "+18005550103", "destination": "+12125550199", "source": "radio",
        "medium": "offline", "publisher": "Other"}).json

    def token(scope, publisher=None):
        body = {"name": scope, "scope": scope, "publisher": publisher}
        return AdminClient(app.test_client(), admin.post("/v1/tokens", json=body).json["token"])

    # Path parameters point at the other publisher's things.
    values = {"site_id": site["id"], "pool_id": theirs["id"], "call_ref": call["id"],
              "static_id": static["id"], "token_id": 1, "session_id": "x",
              "number": numbers(1, 111)[0]}
    return {"app": app, "admin": admin, "values": values, "mine": mine,
            "reader": token("read_only"), "publisher": token("publisher", "Acme"),
            "anonymous": app.test_client()}


def path_of(rule: str, values: dict) -> str:
    return re.sub(r"<(?:\w+:)?(\w+)>", lambda m: str(values.get(m.group(1), 1)), rule)


def test_the_scope_table_covers_every_admin_route(world):
    routes = list(admin_routes(world["app"]))
    assert len(routes) >= 30
    for method, rule in routes:
        path = path_of(rule, world["values"])
        call = {"json": {}} if method in ("POST", "PATCH", "PUT") else {}

        anonymous = getattr(world["anonymous"], method.lower())(path, **call)
        assert anonymous.status_code == 401, (method, rule)

        reader = getattr(world["reader"], method.lower())(path, **call)
        publisher = getattr(world["publisher"], method.lower())(path, **call)
        if method != "GET":
            assert reader.status_code == 403, (method, rule, reader.json)
            assert publisher.status_code == 403, (method, rule, publisher.json)
            continue
        if ADMIN_ONLY.match(rule):
            assert reader.status_code == 403, (method, rule)
        else:
            assert reader.status_code not in (401, 403), (method, rule, reader.json)
        if NOT_FOR_PUBLISHERS.match(rule):
            assert publisher.status_code == 403, (method, rule, publisher.json)
        elif "<" in rule:
            # Named things belong to the other publisher: not found (or refused), never shown.
            assert publisher.status_code in (403, 404), (method, rule, publisher.json)
        else:
            # Lists are the publisher's own (or refused outright), never the other's.
            assert publisher.status_code in (200, 403), (method, rule, publisher.json)
            assert "Other" not in publisher.get_data(as_text=True), (method, rule)


def test_read_only_and_publisher_tokens_cannot_mint_tokens_or_escalate(world):
    for who in ("reader", "publisher"):
        response = world[who].post("/v1/tokens", json={"name": "x", "scope": "admin"})
        assert response.status_code == 403
    assert world["publisher"].get(f"/v1/pools/{world['mine']['id']}").status_code == 200


def test_tokens_reach_sql_only_as_their_sha256(app, admin):
    """The lookup is by hash: the secret itself is never a SQL parameter (nor stored)."""
    secret = admin.post("/v1/tokens", json={"name": "r", "scope": "read_only"}).json["token"]
    seen: list[str] = []
    with app.app_context():
        engine = db.engine

    def capture(conn, cursor, statement, parameters, context, executemany):
        seen.append(repr(parameters))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        assert AdminClient(app.test_client(), secret).get("/v1/calls").status_code == 200
        assert AdminClient(app.test_client(), secret + "x").get("/v1/calls").status_code == 401
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    assert any(digest(secret) in params for params in seen)
    assert not any(secret in params.replace(digest(secret), "") for params in seen)


@pytest.mark.parametrize("header", ["Bearer", "Bearer ", "Basic " + ADMIN_TOKEN, ADMIN_TOKEN,
                                    "Bearer " + ADMIN_TOKEN[:-1], "Bearer " + ADMIN_TOKEN + "\x00",
                                    "Bearer " + "é" * 20])
def test_malformed_or_near_miss_tokens_are_401(client, header):
    response = client.get("/v1/calls", headers={"Authorization": header})
    assert response.status_code == 401


def test_every_dashboard_form_route_needs_the_csrf_token(app):
    """Every POST route of the dashboard (today login and logout) refuses a forged form."""
    client = app.test_client()
    client.get("/dashboard/login")
    posts = [rule.rule for rule in app.url_map.iter_rules()
             if rule.rule.startswith("/dashboard") and "POST" in rule.methods]
    assert "/dashboard/login" in posts
    for path in posts:
        response = client.post(re.sub(r"<[^>]+>", "1", path),
                               data={"token": ADMIN_TOKEN, "csrf_token": "forged"})
        assert response.status_code == 400, path


def test_every_dashboard_page_sends_the_security_headers(app):
    client = app.test_client()
    form = client.get("/dashboard/login").text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
    client.post("/dashboard/login", data={"token": ADMIN_TOKEN, "csrf_token": csrf})
    pages = [rule.rule for rule in app.url_map.iter_rules()
             if rule.rule.startswith("/dashboard") and "GET" in rule.methods]
    for path in pages:
        response = client.get(re.sub(r"<[^>]+>", "1", path))
        csp = response.headers.get("Content-Security-Policy", "")
        assert "frame-ancestors 'none'" in csp, path
        assert response.headers.get("X-Content-Type-Options") == "nosniff", path
        assert response.headers.get("Referrer-Policy"), path
