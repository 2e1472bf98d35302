"""Calls: matching (docs/architecture.md), static numbers, repeat callers, qualification."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from factories import make_pool, make_site, numbers, post_session, record
from pools.leases import LeaseRequest

T0 = int(dt.datetime(2026, 5, 4, 14, 0, tzinfo=dt.UTC).timestamp() * 1000)  # a Monday
NUMBER = numbers(1)[0]


def iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat()


def post_call(admin, call_id: str, at_ms: int, to: str = NUMBER, caller: str = "+14158675309",
              **fields):
    body = {"call_id": call_id, "from": caller, "to": to, "started_at": iso(at_ms)} | fields
    return admin.post("/v1/calls", json=body)


def call_of(admin, call_id, at_ms, **kw) -> dict:
    response = post_call(admin, call_id, at_ms, **kw)
    assert response.status_code in (200, 201), response.json
    return response.json


@pytest.fixture
def site(admin):
    return make_site(admin, timezone="America/New_York")


@pytest.fixture
def pool(admin, site):
    return make_pool(admin, site, numbers=[NUMBER], lease_seconds=300, cooldown_seconds=0,
                     attribution_window_seconds=3600)


def lease_at(app, pool, session, at_ms, **visit):
    payload = json.dumps({"session_id": session, "site_id": pool["site_id"],
                          "visitor_id": "v_" + session, "created_at_ms": at_ms, **visit})
    return app.extensions["dni"].pools.lease(LeaseRequest(pool["id"], session, at_ms,
                                                          payload=payload))


def release_at(app, pool, session, at_ms):
    assert app.extensions["dni"].pools.release(pool["id"], session, at_ms)


# -- matching ------------------------------------------------------------------------------


def test_a_call_inside_a_lease_gets_that_session(app, admin, pool):
    lease_at(app, pool, "s1", T0, source="google", medium="cpc", utm_campaign="spring",
             utm_term="burst pipe", utm_content="ad1", gclid="G1", keyword="burst pipe",
             landing_url="https://x.example/leak", device_type="mobile")
    record(app)
    call = call_of(admin, "c1", T0 + 100_000)
    a = call["attribution"]
    assert (a["method"], a["session_id"], a["confidence"]) == ("session", "s1", 1.0)
    assert (a["source"], a["medium"], a["campaign"], a["term"], a["content"]) == (
        "google", "cpc", "spring", "burst pipe", "ad1")
    assert (a["gclid"], a["keyword"], a["landing_page"], a["device_type"]) == (
        "G1", "burst pipe", "https://x.example/leak", "mobile")
    detail = admin.get(f"/v1/calls/{call['id']}").json
    [lease] = detail["explanation"]["leases"]
    assert "chosen" in lease["verdict"] and lease["session_id"] == "s1"


def test_the_live_holder_is_listed_once_in_the_explanation(app, admin, site, pool):
    import time

    lease_at(app, pool, "s_old", int(time.time() * 1000) - 3_600_000)  # long lapsed
    record(app)
    earlier = post_session(app.test_client(), site["key"]).json  # holds the number now
    call = call_of(admin, "c-live", int(time.time() * 1000))
    assert call["attribution"]["session_id"] == earlier["session_id"]
    leases = admin.get(f"/v1/calls/{call['id']}").json["explanation"]["leases"]
    assert [lease["session_id"] for lease in leases] == [earlier["session_id"], "s_old"]
    assert "live holder" in leases[0]["verdict"] and leases[0]["last_renewed_at_ms"]
    assert leases[1]["verdict"] == "older"


def test_after_expiry_within_the_window_the_last_holder_gets_it(app, admin, pool):
    lease_at(app, pool, "s1", T0, source="bing")
    record(app)
    call = call_of(admin, "c1", T0 + 300_000 + 600_000)
    assert call["attribution"]["method"] == "session_expired"
    assert call["attribution"]["session_id"] == "s1" and call["attribution"]["source"] == "bing"
    assert 0 < call["attribution"]["confidence"] < 1


def test_after_the_window_the_call_is_kept_unattributed(app, admin, pool):
    lease_at(app, pool, "s1", T0)
    record(app)
    call = call_of(admin, "c1", T0 + 300_000 + 3_601_000)
    assert call["attribution"]["method"] == "unattributed"
    assert call["attribution"]["session_id"] is None
    assert call["attribution"]["pool_id"] == pool["id"]
    assert "outside" in admin.get(f"/v1/calls/{call['id']}").json["explanation"]["leases"][0][
        "verdict"]


def test_a_number_leased_again_belongs_to_its_new_holder(app, admin, pool):
    lease_at(app, pool, "s1", T0, source="one")
    lease_at(app, pool, "s2", T0 + 1_000_000, source="two")  # s1 lapsed at T0+300s
    record(app)
    assert call_of(admin, "c-gap", T0 + 900_000)["attribution"]["session_id"] == "s1"
    # Other callers: the phone of c-gap is tied to s1's visit now (see the next test).
    assert call_of(admin, "c-new", T0 + 1_100_000,
                   caller="+14155550111")["attribution"]["session_id"] == "s2"
    late = call_of(admin, "c-late", T0 + 1_000_000 + 400_000, caller="+14155550122")
    assert (late["attribution"]["method"], late["attribution"]["session_id"]) == (
        "session_expired", "s2")


def test_a_phone_already_tied_to_the_earlier_visit_weighs_against_the_new_holder(
        app, admin, pool):
    """The phone that called about s1's visit calls the number again 100 s after s2 got it:
    the caller's own history is evidence, and the call goes to s1, said so in the
    explanation; another phone's call at that moment stays with s2."""
    lease_at(app, pool, "s1", T0, source="one")
    lease_at(app, pool, "s2", T0 + 1_000_000, source="two")
    record(app)
    assert call_of(admin, "c-gap", T0 + 900_000)["attribution"]["session_id"] == "s1"
    again = call_of(admin, "c-again", T0 + 1_100_000)
    assert again["attribution"]["session_id"] == "s1"
    assert 0 < again["attribution"]["confidence"] < 1
    leases = admin.get(f"/v1/calls/{again['id']}").json["explanation"]["leases"]
    assert [lease["session_id"] for lease in leases] == ["s2", "s1"]  # each lease once
    assert "caller_known" in leases[1]["evidence"]["evidence"]
    other = call_of(admin, "c-other", T0 + 1_100_500, caller="+14155550133")
    assert other["attribution"]["session_id"] == "s2"
    before = call_of(admin, "c-before", T0 - 1)["attribution"]
    assert before["method"] == "unattributed"


def test_an_early_release_then_a_new_lease_credits_the_new_holder(app, admin, pool):
    lease_at(app, pool, "s1", T0)
    release_at(app, pool, "s1", T0 + 50_000)
    lease_at(app, pool, "s2", T0 + 100_000)
    record(app)
    assert call_of(admin, "c1", T0 + 150_000)["attribution"]["session_id"] == "s2"
    assert call_of(admin, "c2", T0 + 60_000)["attribution"]["session_id"] == "s1"


def test_a_live_session_is_found_before_the_recorder_runs(admin, client, site, pool):
    session = post_session(client, site["key"], "https://x.example/?utm_source=tv&gclid=G9")
    now = int(dt.datetime.now(dt.UTC).timestamp() * 1000)
    call = call_of(admin, "live", now)  # no record(app): the lease is only in Redis
    assert call["attribution"]["session_id"] == session.json["session_id"]
    assert call["attribution"]["source"] == "tv" and call["attribution"]["gclid"] == "G9"


def test_static_numbers_credit_their_placement(admin):
    created = admin.post("/v1/static-numbers", json={
        "number": "(800) 555-0102", "destination": "+12125550199", "source": "radio",
        "medium": "offline", "campaign": "spring-spot", "label": "WXYZ 7am"})
    assert created.status_code == 201 and created.json["number"] == "+18005550102"
    call = call_of(admin, "c1", T0, to="+18005550102")["attribution"]
    assert (call["method"], call["source"], call["medium"], call["campaign"], call["label"]) == (
        "static", "radio", "offline", "spring-spot", "WXYZ 7am")
    listed = admin.get("/v1/static-numbers").json["static_numbers"]
    assert [s["label"] for s in listed] == ["WXYZ 7am"]
    patched = admin.patch(f"/v1/static-numbers/{created.json['id']}", json={"label": "Drive"})
    assert patched.json["label"] == "Drive"
    retired = admin.delete(f"/v1/static-numbers/{created.json['id']}").json
    assert retired["status"] == "retired"
    after = call_of(admin, "c2", int(dt.datetime.now(dt.UTC).timestamp() * 1000) + 1000,
                    to="+18005550102")
    assert after["attribution"]["method"] == "unattributed"


def test_static_number_validation(admin, pool):
    bad = admin.post("/v1/static-numbers", json={"number": "12345", "destination": "x",
                                                 "source": "radio", "medium": "offline"})
    assert bad.status_code == 422 and set(bad.json["error"]["fields"]) == {"number", "destination"}
    taken = admin.post("/v1/static-numbers", json={"number": NUMBER, "destination": "+12125550199",
                                                   "source": "radio", "medium": "offline"})
    assert taken.status_code == 422 and "pool number" in taken.json["error"]["message"]
    missing = admin.post("/v1/static-numbers", json={"number": "+18005550102"})
    assert missing.status_code == 422
    assert {"destination", "source", "medium"} <= set(missing.json["error"]["fields"])


def test_a_pool_fallback_number_gets_channel_attribution(admin, site):
    make_pool(admin, site, numbers=numbers(1), fallback="+18005550102",
              rules=[{"source": "google", "medium": "cpc"}])
    call = call_of(admin, "c1", T0, to="+18005550102")["attribution"]
    assert (call["method"], call["source"], call["medium"], call["session_id"]) == (
        "fallback", "google", "cpc", None)


def test_an_unknown_number_is_kept(admin):
    call = call_of(admin, "c1", T0, to="+12125550123")
    assert call["attribution"]["method"] == "unattributed"
    assert call["qualified"] is False and call["qualification_failures"] == ["unattributed"]
    assert admin.get("/v1/calls").json["calls"][0]["id"] == call["id"]


# -- the generic API -----------------------------------------------------------------------


def test_the_same_call_id_twice_is_one_call(admin, pool):
    first = post_call(admin, "cdr-1", T0, duration=30)
    again = post_call(admin, "cdr-1", T0, duration=30)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json == again.json
    assert len(admin.get("/v1/calls").json["calls"]) == 1


@pytest.mark.parametrize("body, field", [
    ({"from": "+14158675309", "to": NUMBER, "started_at": "2026-05-04T14:00:00Z"}, "call_id"),
    ({"call_id": "x", "from": "+1", "to": NUMBER, "started_at": "2026-05-04 14:00"}, "started_at"),
    ({"call_id": "x", "from": "+1", "to": NUMBER, "started_at": "2026-05-04T14:00:00"},
     "started_at"),
    ({"call_id": "x", "from": "+1", "to": NUMBER, "started_at": "2026-05-04T14:00:00Z",
      "duration": -1}, "duration"),
    ({"call_id": "x", "from": "+1", "to": NUMBER, "started_at": "2026-05-04T14:00:00Z",
      "status": "exploded"}, "status"),
    ({"call_id": "x", "from": "+1", "to": NUMBER, "started_at": "2026-05-04T14:00:00Z",
      "recording_url": "javascript:alert(1)"}, "recording_url"),
])
def test_invalid_calls_are_422(admin, body, field):
    response = admin.post("/v1/calls", json=body)
    assert response.status_code == 422
    assert field in response.json["error"]["fields"]


def test_calls_api_needs_the_token(client):
    assert client.post("/v1/calls", json={}).status_code == 401
    assert client.get("/v1/calls").status_code == 401


def test_callers_are_normalised_with_geo(admin, pool):
    call = call_of(admin, "c1", T0, caller="(650) 253-0000")["caller"]
    assert (call["number"], call["valid"], call["country"], call["region"], call["city"]) == (
        "+16502530000", True, "US", "CA", "Mountain View")
    uk = call_of(admin, "c2", T0, caller="+442079460000")["caller"]
    assert (uk["country"], uk["region"]) == ("GB", "London")
    odd = call_of(admin, "c3", T0, caller="anonymous")["caller"]
    assert (odd["number"], odd["valid"]) == ("anonymous", False)
    carrier = call_of(admin, "c4", T0, caller="+14158675309", caller_region="NV",
                      caller_city="Reno", caller_country="US")["caller"]
    assert (carrier["region"], carrier["city"]) == ("NV", "Reno")


def test_repeat_callers_keep_first_and_last_touch(app, admin, pool):
    lease_at(app, pool, "s1", T0, source="google", medium="cpc")
    release_at(app, pool, "s1", T0 + 10_000)
    lease_at(app, pool, "s2", T0 + 86_400_000, source="facebook", medium="social")
    record(app)
    first = call_of(admin, "c1", T0 + 5_000)
    second = call_of(admin, "c2", T0 + 86_400_000 + 5_000)
    assert first["caller"]["repeat"] is False
    assert second["caller"]["repeat"] is True
    assert second["caller"]["first_touch"]["source"] == "google"
    assert second["attribution"]["source"] == "facebook"


# -- qualification -------------------------------------------------------------------------


def qualify(admin, pool, rules, **call):
    admin.patch(f"/v1/pools/{pool['id']}", json={"qualification": rules})
    return call_of(admin, call.pop("call_id", "q"), call.pop("at", T0), **call)


def test_minimum_duration(admin, pool):
    assert qualify(admin, pool, {"min_duration": 60}, call_id="a", duration=59)[
        "qualification_failures"] == ["too_short"]
    assert qualify(admin, pool, {"min_duration": 60}, call_id="b", duration=60)["qualified"]


def test_unique_caller_within_days(admin, pool):
    rules = {"unique_days": 30}
    assert qualify(admin, pool, rules, call_id="a", at=T0)["qualified"]
    again = qualify(admin, pool, rules, call_id="b", at=T0 + 10 * 86_400_000)
    assert again["qualification_failures"] == ["repeat_caller"]
    later = qualify(admin, pool, rules, call_id="c", at=T0 + 41 * 86_400_000)
    assert later["qualified"]


def test_caller_geography(admin, pool):
    assert qualify(admin, pool, {"countries": ["US"]}, call_id="a", caller="+442079460000")[
        "qualification_failures"] == ["outside_countries"]
    assert qualify(admin, pool, {"regions": ["CA"]}, call_id="b", caller="+12125550199")[
        "qualification_failures"] == ["outside_regions"]
    assert qualify(admin, pool, {"regions": ["CA"]}, call_id="c", caller="+16505550123")[
        "qualified"]
    assert qualify(admin, pool, {"area_codes": ["650"]}, call_id="d", caller="+12125550199")[
        "qualification_failures"] == ["outside_area_codes"]


def test_business_hours_in_the_sites_time_zone(admin, pool):
    hours = {"hours": {"days": [0, 1, 2, 3, 4], "start": "09:00", "end": "17:00"}}
    at = int(dt.datetime(2026, 5, 4, 13, 0, tzinfo=dt.UTC).timestamp() * 1000)  # Mon 09:00 EDT
    assert qualify(admin, pool, hours, call_id="a", at=at)["qualified"]
    assert qualify(admin, pool, hours, call_id="b", at=at - 60_000)[
        "qualification_failures"] == ["outside_hours"]  # 08:59 EDT
    assert qualify(admin, pool, hours, call_id="c", at=at + 8 * 3_600_000)[
        "qualification_failures"] == ["outside_hours"]  # 17:00 EDT
    saturday = at + 5 * 86_400_000
    assert qualify(admin, pool, hours, call_id="d", at=saturday)[
        "qualification_failures"] == ["outside_hours"]


def test_invalid_qualification_rules_are_422(admin, pool):
    for rules in ({"min_duration": "long"}, {"colour": "red"}, {"hours": {"start": "9am"}},
                  {"countries": "US"}, ["min_duration"]):
        response = admin.patch(f"/v1/pools/{pool['id']}", json={"qualification": rules})
        assert response.status_code == 422, rules
        assert "qualification" in response.json["error"]["fields"]


def test_revenue_payout_and_dispositions(admin, pool):
    admin.patch(f"/v1/pools/{pool['id']}", json={
        "qualification": {"min_duration": 60}, "revenue": "40.00", "payout": "25.50",
        "publisher": "Acme Media"})
    call = call_of(admin, "c1", T0, duration=90)
    assert (call["qualified"], call["revenue"], call["payout"]) == (True, "40.00", "25.50")
    assert call["attribution"]["publisher"] == "Acme Media"
    spam = admin.post(f"/v1/calls/{call['id']}/disposition", json={"disposition": "spam"}).json
    assert spam["qualified"] is False and "disposition_spam" in spam["qualification_failures"]
    assert (spam["revenue"], spam["payout"]) == ("0.00", "0.00")
    short = call_of(admin, "c2", T0 + 1000, caller="+16505550123", duration=10)
    assert short["qualified"] is False
    sale = admin.post(f"/v1/calls/{short['call_id']}/disposition",
                      json={"disposition": "sale", "value": 250}).json
    assert (sale["qualified"], sale["revenue"], sale["disposition_value"]) == (True, "250.00",
                                                                               "250.00")
    bad = admin.post(f"/v1/calls/{call['id']}/disposition", json={"disposition": "maybe"})
    assert bad.status_code == 422
    assert admin.post("/v1/calls/999/disposition", json={"disposition": "sale"}).status_code == 404
