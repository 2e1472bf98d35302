"""POST /v1/callbacks and GET /v1/callbacks/<id>: validation, evidence, the visit linked."""

from __future__ import annotations

import datetime as dt

import pytest

from attribution.callbacks.models import Callback
from callbacks.helpers import CONSENT, post_callback, site_with_session
from dni_server.extensions import db

# 17:00 UTC on a weekday: 09:00 in California, inside calling hours.
OPEN = dt.datetime(2026, 12, 7, 17, 0, tzinfo=dt.UTC)


class Clock:
    def __init__(self, monkeypatch):
        self.now = OPEN
        monkeypatch.setattr("dni_server.api.callbacks.utcnow", lambda: self.now)


@pytest.fixture
def clock(monkeypatch):
    return Clock(monkeypatch)


def test_a_request_is_scheduled_with_its_evidence_and_visit(admin, client, app, clock):
    site, session = site_with_session(admin, client)
    answer = post_callback(client, site["key"], session, "(650) 555-0177")
    assert answer.status_code == 202, answer.get_json()
    body = answer.get_json()
    assert body["status"] == "scheduled" and body["id"].startswith("cb_")
    assert body["at"] == "2026-12-07T17:00:00Z" and body["deferred"] is False
    assert answer.headers["Access-Control-Allow-Origin"] == "*"
    with app.app_context():
        row = db.session.get(Callback, body["id"])
        assert row.phone == "+16505550177"  # normalised to E.164
        assert row.session_id == session and row.pool_id is not None
        assert row.consent_text == CONSENT and row.page_url == "https://shop.example/pricing"
        assert len(row.client_hash) == 64 and "192.0.2.10" not in row.client_hash
        assert row.requested_at == OPEN and row.time_zones == ["America/Los_Angeles"]


def test_outside_calling_hours_it_is_scheduled_for_the_next_opening_and_says_so(admin, client,
                                                                               clock):
    site, session = site_with_session(admin, client)
    late = dt.datetime(2026, 12, 8, 6, 0, tzinfo=dt.UTC)  # 22:00 in California
    clock.now = late
    answer = post_callback(client, site["key"], session)
    body = answer.get_json()
    assert answer.status_code == 202, body
    assert body["deferred"] is True and body["reason"] == "outside_calling_hours"
    assert body["at"] == "2026-12-08T16:00:00Z"  # 08:00 in California


def test_the_status_is_given_to_the_same_session_only(admin, client, clock):
    site, session = site_with_session(admin, client)
    created = post_callback(client, site["key"], session).get_json()
    mine = client.get(f"/v1/callbacks/{created['id']}?session_id={session}")
    assert mine.status_code == 200
    assert mine.get_json() | {"history": None} == {
        "id": created["id"], "status": "scheduled", "at": "2026-12-07T17:00:00Z",
        "attempts": 0, "last_outcome": None, "history": None}
    other = client.get(f"/v1/callbacks/{created['id']}?session_id=someone-else")
    assert other.status_code == 404 and other.get_json()["error"]["code"] == "unknown_callback"


def test_bad_numbers_and_sessions_are_clear_4xx(admin, client, clock):
    site, session = site_with_session(admin, client)
    bad = post_callback(client, site["key"], session, "555")
    assert bad.status_code == 422 and "phone" in bad.get_json()["error"]["fields"]
    forged = post_callback(client, site["key"], session[:-1] + ("0" if session[-1] != "0" else "1"))
    assert forged.status_code == 404 and forged.get_json()["error"]["code"] == "unknown_session"
    unknown = post_callback(client, "nope", session)
    assert unknown.status_code == 404
    far = post_callback(client, site["key"], session, at="2030-01-01T10:00:00Z")
    assert far.status_code == 422 and "at" in far.get_json()["error"]["fields"]
    naive = post_callback(client, site["key"], session, at="2026-12-07T10:00:00")
    assert naive.status_code == 422
    missing = client.post("/v1/callbacks", data='{"site": "x"}',
                          headers={"Content-Type": "text/plain"})
    assert missing.status_code == 422
    assert set(missing.get_json()["error"]["fields"]) >= {"phone", "consent", "session_id"}


def test_a_page_on_a_foreign_origin_is_refused(admin, client, clock):
    site, session = site_with_session(admin, client, domains=["shop.example"])
    foreign = post_callback(client, site["key"], session, origin="https://evil.example")
    assert foreign.status_code == 403 and "Access-Control-Allow-Origin" not in foreign.headers
    own = post_callback(client, site["key"], session, origin="https://www.shop.example")
    assert own.status_code == 202, own.get_json()


@pytest.mark.parametrize("fields", [
    {"phone": 6505550177}, {"phone": None}, {"phone": "+1" + "6" * 60}, {"at": "tomorrow"},
    {"at": 12}, {"name": ["x"]}, {"consent": ""}, {"url": {"a": 1}}, {"site": 5},
    {"phone": "+16505550177\u0000"}, {"at": "1970-01-01T00:00:00Z"},
])
def test_wrong_types_and_values_are_a_4xx_never_a_5xx(admin, client, clock, fields):
    site, session = site_with_session(admin, client)
    answer = post_callback(client, site["key"], session, **fields)
    if fields == {"at": "1970-01-01T00:00:00Z"}:  # in the past: as soon as possible
        assert answer.status_code == 202 and answer.get_json()["at"] == "2026-12-07T17:00:00Z"
        return
    assert 400 <= answer.status_code < 500, answer.get_json()
    assert answer.get_json()["error"]["code"]


def test_unknown_or_too_long_callback_ids_are_404(client):
    assert client.get("/v1/callbacks/cb_nope?session_id=x").status_code == 404
    assert client.get("/v1/callbacks/" + "x" * 500).status_code == 404


def test_a_nul_in_the_status_query_is_a_documented_422(client):
    answer = client.get("/v1/callbacks/cb_nope?session_id=a%00b")
    assert answer.status_code == 422
    assert answer.get_json()["error"]["fields"] == {"session_id": "must not contain NUL characters"}
    spec = client.get("/openapi.json").get_json()
    assert "422" in spec["paths"]["/v1/callbacks/{callback_id}"]["get"]["responses"]
