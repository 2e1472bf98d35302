"""The snippet's calls answered ahead of Flask (dni_server.api.snippet_front, issue 14): the
same answers as Flask's view, Flask answering everything else, the hooks' work done."""

from __future__ import annotations

import json
import logging

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from werkzeug.test import Client

from attribution.models import Visit
from dni_server.api.snippet_front import SnippetFront
from dni_server.extensions import db
from dni_server.metrics import REGISTRY
from factories import ADMIN_TOKEN, CHROME_UA, AdminClient, make_pool, make_site, post_session, record

TEXT = {"Content-Type": "text/plain;charset=UTF-8", "User-Agent": CHROME_UA}


@pytest.fixture
def site(admin):
    return make_site(admin, domains=["shop.example"])


@pytest.fixture
def pool(admin, site):
    return make_pool(admin, site)


@pytest.fixture
def flask_calls(app, monkeypatch):
    """The requests the front handed on to Flask, by path."""
    front = app.wsgi_app
    assert isinstance(front, SnippetFront)
    handed, flask_wsgi = [], front.flask_wsgi

    def counted(environ, start_response):
        handed.append(environ["PATH_INFO"])
        return flask_wsgi(environ, start_response)

    monkeypatch.setattr(front, "flask_wsgi", counted)
    return handed


def flask_only(app) -> Client:
    """A client of the app without the front: Flask's own answer."""
    return Client(lambda environ, start_response: type(app).wsgi_app(
        app, environ, start_response))


def session_body(site, **fields) -> str:
    return json.dumps({"site": site["key"], "url": "https://shop.example/?utm_source=google",
                       **fields})


def test_ordinary_calls_are_answered_ahead_of_flask_as_flask_answers_them(
        app, client, site, pool, flask_calls):
    front = client.post("/v1/sessions", data=session_body(site), headers=TEXT)
    flask = flask_only(app).post("/v1/sessions", data=session_body(site), headers=TEXT)
    assert flask_calls == []
    assert front.status_code == flask.status_code == 200
    # The same headers in the same order, the same kinds of values.
    assert [name for name, _ in front.headers] == [name for name, _ in flask.headers]
    for name in ("Content-Type", "Access-Control-Allow-Origin"):
        assert front.headers[name] == flask.headers[name]
    assert len(front.headers["X-Request-Id"]) == len(flask.headers["X-Request-Id"]) == 32
    mine, theirs = front.get_json(), flask.get_json()
    assert mine.keys() == theirs.keys()
    assert mine["numbers"][0].keys() == theirs["numbers"][0].keys()
    assert not mine["numbers"][0]["fallback"] and not theirs["numbers"][0]["fallback"]
    assert mine["numbers"][0]["number"] != theirs["numbers"][0]["number"]  # two visits

    # A heartbeat of each session, each the other way round: the same answer, byte for byte
    # but for the expiry (a millisecond apart at most) and the request id.
    for session, other_way in ((mine, flask_only(app)), (theirs, client)):
        path = f"/v1/sessions/{session['session_id']}/heartbeat"
        body = json.dumps({"site": site["key"], "visitor_id": session["visitor_id"]})
        one, two = client.post(path, data=body, headers=TEXT), other_way.post(
            path, data=body, headers=TEXT)
        assert one.status_code == two.status_code == 200
        assert [h for h, _ in one.headers] == [h for h, _ in two.headers]
        first, second = one.get_json(), two.get_json()
        for entry in first["numbers"] + second["numbers"]:
            entry.pop("expires_at"), entry.pop("expires_in")
        assert first == second
        assert first["numbers"][0]["number"] == session["numbers"][0]["number"]
    assert flask_calls == []


def test_the_visit_recorded_through_the_front_is_the_one_flask_records(
        app, client, site, pool, flask_calls):
    for way in (client, flask_only(app)):
        post_session(way, site["key"], "https://shop.example/p?utm_source=bing&gclid=G1",
                     ip="198.51.100.7", referrer="https://www.bing.com/")
    assert flask_calls == []
    record(app)
    with app.app_context():
        first, second = db.session.scalars(select(Visit).order_by(Visit.created_at)).all()
        differ = {"session_id", "visitor_id", "created_at", "click_id_at_ms"}
        columns = [c.key for c in Visit.__table__.columns if c.key not in differ]
        assert {c: getattr(first, c) for c in columns} == {c: getattr(second, c) for c in columns}
        assert first.ip == "198.51.100.7" and first.gclid == "G1"


SITE = object()  # the test's site key, filled in below


@pytest.mark.parametrize(("method", "path", "body", "headers", "status", "code"), [
    ("POST", "/v1/sessions?debug=1", {"site": SITE, "url": "https://shop.example/"}, {},
     200, None),
    ("POST", "/v1/sessions", b"{not json", {}, 400, "malformed_json"),
    ("POST", "/v1/sessions", b"", {}, 400, "malformed_json"),
    ("POST", "/v1/sessions", [1, 2], {}, 400, "malformed_json"),
    ("POST", "/v1/sessions", {"site": 5, "url": "https://shop.example/"}, {}, 422, "invalid"),
    ("POST", "/v1/sessions", {"site": SITE, "url": "x" * 5000}, {}, 422, "invalid"),
    ("POST", "/v1/sessions", {"site": SITE, "url": "https://shop.example/\u0000"}, {},
     422, "invalid"),
    ("POST", "/v1/sessions", {"site": "nope", "url": "https://shop.example/"}, {},
     404, "unknown_site"),
    ("POST", "/v1/sessions", {"site": SITE, "url": "https://evil.example/"},
     {"Origin": "https://evil.example"}, 403, "foreign_origin"),
    ("POST", "/v1/sessions", b"x" * 20_000, {}, 413, "too_large"),
    ("POST", "/v1/sessions/abc.1.0123456789abcdef/heartbeat", {"site": SITE}, {},
     404, "unknown_session"),
    ("POST", "/v1/sessions/\u00e9.1.0123456789abcdef/heartbeat", {"site": SITE}, {},
     404, "unknown_session"),
    ("POST", "/v1/sessions//heartbeat", {"site": SITE}, {}, 405, "method_not_allowed"),
    ("POST", "/v1/sessions/x/heartbeat/", {"site": SITE}, {}, 404, "not_found"),
    ("GET", "/v1/sessions", None, {}, 401, "unauthorized"),
    ("OPTIONS", "/v1/sessions", None, {"Origin": "https://shop.example"}, 200, None),
])
def test_everything_else_is_answered_by_flask(app, client, site, pool, flask_calls,
                                              method, path, body, headers, status, code):
    if isinstance(body, dict):
        body = json.dumps({k: site["key"] if v is SITE else v for k, v in body.items()})
    elif isinstance(body, list):
        body = json.dumps(body)
    response = client.open(path, method=method, data=body, headers={**TEXT, **headers})
    # (PATH_INFO carries the path's UTF-8 bytes as latin-1 characters, as WSGI has it.)
    assert flask_calls == [path.split("?")[0].encode().decode("latin-1")]
    assert response.status_code == status, response.get_data(as_text=True)
    flask = flask_only(app).open(path, method=method, data=body, headers={**TEXT, **headers})
    assert flask.status_code == status
    if code:
        assert response.get_json() == flask.get_json()
        assert response.get_json()["error"]["code"] == code
    assert [h for h, _ in response.headers] == [h for h, _ in flask.headers]
    if code == "foreign_origin":  # a page outside the site's domains cannot read the refusal
        assert "Access-Control-Allow-Origin" not in response.headers


def test_a_body_cut_short_is_flasks_400(app, client, site, pool, flask_calls):
    body = session_body(site).encode()
    response = client.post("/v1/sessions", data=body[:10], headers={
        **TEXT, "Content-Length": str(len(body))})
    assert flask_calls == ["/v1/sessions"]
    assert response.status_code == 400


def test_the_request_id_the_latency_and_the_log_line(app, client, site, pool, flask_calls,
                                                      caplog):
    def observed() -> float:
        return REGISTRY.get_sample_value("dni_request_duration_seconds_count", {
            "endpoint": "sessions.create_session", "status": "2xx"}) or 0.0

    before = observed()
    with caplog.at_level(logging.DEBUG, logger="dni_server.requests"):
        response = client.post("/v1/sessions", data=session_body(site),
                               headers={**TEXT, "X-Request-Id": "trace-42"})
    assert flask_calls == [] and response.status_code == 200
    assert response.headers["X-Request-Id"] == "trace-42"
    assert observed() == before + 1
    [line] = [r for r in caplog.records if r.name == "dni_server.requests"]
    assert line.levelno == logging.DEBUG and line.status == 200
    assert line.endpoint == "sessions.create_session" and line.path == "/v1/sessions"
    assert line.request_id == "trace-42"  # written while the request's id was set
    # An unsafe id is not echoed: a new one is made.
    unsafe = client.post("/v1/sessions", data=session_body(site),
                         headers={**TEXT, "X-Request-Id": "bad id!"})
    assert len(unsafe.headers["X-Request-Id"]) == 32


@pytest.mark.parametrize(("error", "status", "code"), [
    (RuntimeError("a bug"), 500, "internal"),
    (OperationalError("SELECT 1", {}, ConnectionError("refused")), 503, "unavailable"),
])
def test_an_error_once_leasing_began_is_answered_as_flask_answers_it(
        app, client, site, pool, flask_calls, monkeypatch, error, status, code):
    def fails(*_args, **_kwargs):
        raise error

    monkeypatch.setattr("attribution.sessions.start_session", fails)
    front = client.post("/v1/sessions", data=session_body(site), headers=TEXT)
    flask = flask_only(app).post("/v1/sessions", data=session_body(site), headers=TEXT)
    assert flask_calls == []  # not done twice: something may be leased already
    assert front.status_code == flask.status_code == status
    assert front.get_json() == flask.get_json() == {
        "error": {"code": code, "message": flask.get_json()["error"]["message"]}}
    assert front.headers.get("Retry-After") == flask.headers.get("Retry-After")
    assert front.headers["Access-Control-Allow-Origin"] == "*"


def test_a_site_lookup_that_fails_is_handed_to_flask(app, client, site, pool, flask_calls,
                                                      monkeypatch):
    ctx = app.extensions["dni"].sessions

    def away(_key):
        raise OperationalError("SELECT", {}, ConnectionError("refused"))

    monkeypatch.setattr(ctx.sites, "get", away)
    response = client.post("/v1/sessions", data=session_body(site), headers=TEXT)
    assert flask_calls == ["/v1/sessions"]
    assert response.status_code == 503 and response.headers["Retry-After"] == "5"


def test_behind_a_proxy_the_visit_has_the_forwarded_address(make_app):
    app = make_app(DNI_PROXY_HOPS="1")
    admin = AdminClient(app.test_client(), ADMIN_TOKEN)
    site = make_site(admin)
    make_pool(admin, site)
    response = app.test_client().post(
        "/v1/sessions", data=session_body(site), headers={
            **TEXT, "X-Forwarded-For": "203.0.113.9"}, environ_base={"REMOTE_ADDR": "10.0.0.1"})
    assert response.status_code == 200
    record(app)
    with app.app_context():
        assert db.session.scalars(select(Visit.ip)).all() == ["203.0.113.9"]
