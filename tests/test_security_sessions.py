"""Issue 11, F2 F6 F8 F15 F18 (fragment): a session id alone cannot change a visit's consent,
one visitor cannot grow storage without bound, IPv4-mapped addresses count as IPv4, the
user-agent cache is keyed on what is parsed, and no URL is stored with its fragment.
Against the suite's real Redis and SQL."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest

from attribution import devices
from attribution.sessions import rate_key_ip, rate_key_subnet
from attribution.visits import client_ip
from factories import heartbeat, make_pool, make_site, post_session, record
from pools.leases import MAX_PAGE_VIEWS, RESUME_WINDOW_MS

GA = "GA1.1.1234567890.1700000000"
FBP = "fb.1.1700000000000.1234567890"


@pytest.fixture
def site(admin):
    return make_site(admin)


@pytest.fixture
def pool(admin, site):
    return make_pool(admin, site)


def beat_with(client, site_key: str, session_id: str, **fields):
    """A renewal as the snippet sends one (JSON as text/plain)."""
    return client.post(f"/v1/sessions/{session_id}/heartbeat",
                       data=json.dumps({"site": site_key, **fields}),
                       headers={"Content-Type": "text/plain;charset=UTF-8"})


def visit_of(admin, session_id: str, **args) -> dict:
    response = admin.get(f"/v1/sessions/{session_id}", query_string=args)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def consent_of(admin, session_id: str) -> tuple:
    visit = visit_of(admin, session_id)
    return visit["ad_consent"], visit["ga_client_id"], visit["fbp"]


def pool_events(app, pool_id: int) -> int:
    pools = app.extensions["dni"].pools
    return pools.redis.xlen(pools.keys(pool_id).events)


def end_lease(app, pool_id: int, session_id: str, how: str) -> None:
    """The session's lease lapses (its expiry moved into the past) or is released."""
    pools = app.extensions["dni"].pools
    keys = pools.keys(pool_id)
    if how == "released":
        assert pools.release(pool_id, session_id, int(dt.datetime.now(dt.UTC).timestamp() * 1000))
        return
    number = pools.redis.hget(keys.session, session_id)
    pools.redis.zadd(keys.busy, {number: 1}, xx=True)


def call_to(admin, number: str, call_id: str) -> dict:
    response = admin.post("/v1/calls", json={"call_id": call_id, "from": "+14158675309",
                                              "to": number,
                                              "started_at": dt.datetime.now(dt.UTC).isoformat()})
    assert response.status_code in (200, 201), response.get_json()
    return response.get_json()


# -- F2: consent and ad ids change only while the session holds a live lease --------------


@pytest.mark.parametrize("how", ["expired", "released"])
def test_a_heartbeat_after_the_lease_ended_does_not_flip_refused_consent(app, client, admin,
                                                                         site, pool, how):
    sid = post_session(client, site["key"], consent=False).json["session_id"]
    record(app)
    end_lease(app, pool["id"], sid, how)

    # Someone holding the session id (read off a page, leaked) claims consent.
    answer = beat_with(client, site["key"], sid, consent=True, ga_client_id=GA, fbp=FBP)
    assert answer.status_code == 200
    assert answer.json["numbers"][0]["fallback"] is True  # answered, as before
    record(app)
    assert consent_of(admin, sid) == (False, None, None)


def test_resuming_an_ended_session_does_not_flip_refused_consent(app, client, admin, site,
                                                                 pool):
    """POST /v1/sessions naming the old session id leases it a number again, but records no
    ad ids or consent: only a session already holding a live lease may change them."""
    first = post_session(client, site["key"], consent=False).json
    record(app)
    end_lease(app, pool["id"], first["session_id"], "expired")
    again = post_session(client, site["key"], session_id=first["session_id"], consent=True,
                         ga_client_id=GA, fbp=FBP)
    assert again.status_code == 200 and again.json["session_id"] == first["session_id"]
    record(app)
    assert consent_of(admin, first["session_id"]) == (False, None, None)


def test_a_session_idle_past_the_resume_window_is_not_revived(app, client, admin, site, pool):
    """A session id is no lasting key: once the session has been idle for the resume window
    (its activity key expired), naming it starts a new session and leaves the old visit be."""
    first = post_session(client, site["key"], consent=False).json
    sid = first["session_id"]
    record(app)
    end_lease(app, pool["id"], sid, "expired")
    redis = app.extensions["dni"].pools.redis
    [activity] = redis.keys(f"*:pages:{sid}")
    assert 0 < redis.pttl(activity) <= (RESUME_WINDOW_MS + 300_000)  # window + lease
    redis.delete(activity)  # what the end of the window does

    again = post_session(client, site["key"], session_id=sid, consent=True, ga_client_id=GA)
    assert again.status_code == 200
    new_sid = again.json["session_id"]
    assert new_sid != sid and again.json["numbers"][0]["fallback"] is False
    assert beat_with(client, site["key"], sid, consent=True).json["numbers"][0]["fallback"]
    record(app)
    assert consent_of(admin, sid) == (False, None, None)
    assert consent_of(admin, new_sid) == (True, "1234567890.1700000000", None)


def test_consent_on_a_live_session_still_reaches_the_visit_in_one_round_trip(app, client,
                                                                            admin, site, pool):
    sid = post_session(client, site["key"], consent=False).json["session_id"]
    assert beat_with(client, site["key"], sid, consent=True, fbp=FBP).status_code == 200
    record(app)
    assert consent_of(admin, sid) == (True, None, FBP)


def test_a_matched_call_keeps_the_consent_its_visit_had_when_matched(app, client, admin, site,
                                                                    pool):
    body = post_session(client, site["key"], consent=False).json
    record(app)
    call = call_to(admin, body["numbers"][0]["number"], "CA-sec-consent")
    assert call["attribution"]["ad_consent"] is False

    beat_with(client, site["key"], body["session_id"], consent=True, ga_client_id=GA, fbp=FBP)
    record(app)
    assert consent_of(admin, body["session_id"])[0] is True  # the visit changed
    stored = admin.get(f"/v1/calls/{call['id']}").json["attribution"]
    assert (stored["ad_consent"], stored["ga_client_id"], stored["fbp"]) == (False, None, None)


# -- F6: page views capped, URLs length-limited, renewals rate-limited, journey paged ------


@pytest.fixture
def unlimited_app(make_app):
    """No per-client limits (DNI_SESSION_RATE=0): only the page view cap applies."""
    return make_app(DNI_SESSION_RATE="0")


def test_page_views_past_the_cap_are_counted_not_stored(unlimited_app, admin, site, pool):
    client = unlimited_app.test_client()
    sid = post_session(client, site["key"], "https://shop.example/p/0").json["session_id"]
    extra = 5
    for i in range(1, MAX_PAGE_VIEWS + extra):
        assert heartbeat(client, site["key"], sid, f"https://shop.example/p/{i}").status_code == 200
    record(unlimited_app)
    visit = visit_of(admin, sid, page_views_limit=1000)
    assert len(visit["pages"]) == MAX_PAGE_VIEWS
    assert visit["pages"][-1]["path"] == f"/p/{MAX_PAGE_VIEWS - 1}"
    assert visit["page_views"]["stored"] == MAX_PAGE_VIEWS
    assert visit["page_views"]["seen"] == MAX_PAGE_VIEWS + extra

    # Redis forgot the count (a restart): the recorder still stores no more.
    pools = unlimited_app.extensions["dni"].pools
    pools.redis.delete(*pools.redis.keys(f"*:pages:{sid}"))
    heartbeat(client, site["key"], sid, "https://shop.example/after-restart")
    record(unlimited_app)
    assert visit_of(admin, sid)["page_views"]["stored"] == MAX_PAGE_VIEWS


def test_renewals_past_the_session_limit_keep_the_number_and_record_nothing(app, client, admin,
                                                                          site, pool):
    ctx = app.extensions["dni"].sessions
    first = post_session(client, site["key"]).json
    sid, number = first["session_id"], first["numbers"][0]["number"]
    for i in range(ctx.renewal_limit):
        assert heartbeat(client, site["key"], sid, f"https://shop.example/{i}").status_code == 200
    events = pool_events(app, pool["id"])

    for i in range(3):
        limited = beat_with(client, site["key"], sid, url=f"https://shop.example/x{i}",
                            consent=True, fbp=FBP)
        assert limited.status_code == 200
        [entry] = limited.json["numbers"]
        assert entry["number"] == number and entry["fallback"] is False
        assert limited.json["renew_in"] >= 5
    again = post_session(client, site["key"], "https://shop.example/y", session_id=sid)
    assert again.json["numbers"][0]["number"] == number
    assert pool_events(app, pool["id"]) == events  # nothing new recorded
    record(app)
    visit = visit_of(admin, sid)
    assert not any(p["path"].startswith(("/x", "/y")) for p in visit["pages"])
    assert visit["fbp"] is None
    counters = app.extensions["dni"].pools.status(pool["id"], 0)["counters"]
    assert counters["renewals_limited"] == 4


def test_stored_urls_are_cut_to_the_limit_and_lose_their_fragment(app, client, admin, site,
                                                                   pool):
    """Defence in depth: a URL reaching the recorder by another way (an older event) is cut
    and loses its fragment as well."""
    sid = post_session(client, site["key"]).json["session_id"]
    pools = app.extensions["dni"].pools
    long_url = "https://shop.example/" + "a" * 5000 + "#access_token=SECRET"
    pools.redis.xadd(pools.keys(pool["id"]).events, {
        "t": "renew", "n": "+16505550101", "s": sid, "st": 1, "at": 2, "x": 3, "u": long_url})
    record(app)
    urls = [p["url"] for p in visit_of(admin, sid)["pages"]]
    assert len(urls) == 2
    assert all(len(u) <= 2048 and "#" not in u and "SECRET" not in u for u in urls)


def test_the_journey_is_paged_in_the_api(app, client, admin, site, pool):
    sid = post_session(client, site["key"], "https://shop.example/p/0").json["session_id"]
    for i in range(1, 5):
        heartbeat(client, site["key"], sid, f"https://shop.example/p/{i}")
    record(app)
    page = visit_of(admin, sid, page_views_offset=1, page_views_limit=2)
    assert [p["path"] for p in page["pages"]] == ["/p/1", "/p/2"]
    assert page["page_views"] == {"stored": 5, "seen": 5, "offset": 1, "limit": 2,
                                  "next_offset": 3}
    last = visit_of(admin, sid, page_views_offset=3, page_views_limit=2)
    assert [p["path"] for p in last["pages"]] == ["/p/3", "/p/4"]
    assert last["page_views"]["next_offset"] is None
    assert len(visit_of(admin, sid)["pages"]) == 5  # the default shows a whole session


@pytest.mark.parametrize("name, value", [
    ("page_views_limit", "0"), ("page_views_limit", "1001"), ("page_views_limit", "x"),
    ("page_views_limit", "\u00b2"), ("page_views_offset", "-1"),
    ("page_views_offset", "99999999999999999999"),
])
def test_bad_journey_paging_is_a_422(client, admin, site, pool, name, value):
    sid = post_session(client, site["key"]).json["session_id"]
    record(client.application)
    response = admin.get(f"/v1/sessions/{sid}", query_string={name: value})
    assert response.status_code == 422
    assert response.get_json()["error"]["fields"] == {name: "out of range"}


def test_the_journey_is_paged_on_the_dashboard_call_page(unlimited_app, admin, site, pool):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent / "dashboard"))
    from dashboard_data import log_in, with_dashboard

    client = unlimited_app.test_client()
    body = post_session(client, site["key"], "https://shop.example/p/0").json
    for i in range(1, 60):
        heartbeat(client, site["key"], body["session_id"], f"https://shop.example/p/{i}")
    record(unlimited_app)
    call = call_to(admin, body["numbers"][0]["number"], "CA-sec-journey")

    def journey(html: str) -> list[str]:
        listed = re.search(r'<ol class="journey".*?</ol>', html, re.DOTALL).group(0)
        return re.findall(r"https://shop\.example/p/(\d+)<", listed)

    dash = log_in(with_dashboard(unlimited_app).test_client())
    first = dash.get(f"/dashboard/calls/{call['id']}").text
    # Two heartbeats can land in the same millisecond, so pages are checked as sets of
    # pages seen in time order, not as one exact sequence.
    assert len(journey(first)) == 50 and journey(first)[0] == "0"
    assert "journey_page=2" in first
    second = dash.get(f"/dashboard/calls/{call['id']}?journey_page=2").text
    assert len(journey(second)) == 10
    assert sorted(map(int, journey(first) + journey(second))) == list(range(60))
    assert dash.get(f"/dashboard/calls/{call['id']}?journey_page=%C2%B2").status_code == 200


# -- F8: IPv4-mapped IPv6 addresses are IPv4 -----------------------------------------------


@pytest.mark.parametrize("given, normal", [
    ("::ffff:192.0.2.10", "192.0.2.10"), ("::FFFF:c000:20a", "192.0.2.10"),
    ("192.0.2.10", "192.0.2.10"), ("2001:db8::1", "2001:db8::1"), ("junk", None), (None, None),
])
def test_one_helper_normalises_an_address(given, normal):
    assert client_ip(given) == normal


def test_mapped_addresses_are_keyed_as_ipv4():
    assert rate_key_ip("::ffff:192.0.2.10") == "192.0.2.10"
    assert rate_key_subnet("::ffff:192.0.2.10") == "192.0.2.0"
    assert rate_key_ip("::ffff:198.51.100.7") != rate_key_ip("::ffff:192.0.2.10")


def test_ipv4_visitors_on_a_dual_stack_bind_do_not_share_one_limit(client, admin, site, pool):
    """Each IP may hold 2 of the pool's 3 numbers: a second IPv4 visitor still gets one."""
    for _ in range(2):
        leased = post_session(client, site["key"], ip="::ffff:192.0.2.10").json["numbers"][0]
        assert leased["fallback"] is False
    refused = post_session(client, site["key"], ip="::ffff:192.0.2.10").json["numbers"][0]
    assert refused["reason"] == "rate_limited"
    other = post_session(client, site["key"], ip="::ffff:198.51.100.7").json["numbers"][0]
    assert other["fallback"] is False


def test_a_mapped_address_is_stored_and_located_as_ipv4(make_app, admin, site, pool, geoip_db):
    geo_app = make_app(DNI_GEOIP_DB=geoip_db)
    sid = post_session(geo_app.test_client(), site["key"],
                       ip="::ffff:198.51.100.23").json["session_id"]
    record(geo_app)
    visit = visit_of(admin, sid)
    assert (visit["country"], visit["city"]) == ("US", "Boston")
    from attribution.models import Visit
    from dni_server.extensions import db

    with geo_app.app_context():
        assert db.session.get(Visit, sid).ip == "198.51.100.23"


# -- F15: the user-agent cache is keyed on what is parsed ----------------------------------


def test_long_user_agents_sharing_what_is_parsed_share_one_cache_entry():
    prefix = "Mozilla/5.0 (X11; Linux x86_64) " + "A" * 600
    devices.parsed.cache_clear()
    for i in range(100):
        devices.describe(f"{prefix}{i:08d}" + "z" * 8000)
    info = devices.parsed.cache_info()
    assert info.currsize == 1 and info.hits == 99


# -- F18: no URL is stored with its fragment -----------------------------------------------


def test_fragments_are_not_stored_but_hash_route_click_ids_are_read(app, client, admin, site,
                                                                    pool):
    landing = "https://shop.example/cb?x=1#access_token=SECRET1&state=s"
    sid = post_session(client, site["key"], landing,
                       referrer="https://idp.example/auth#id_token=SECRET2").json["session_id"]
    heartbeat(client, site["key"], sid, "https://shop.example/next#code=SECRET3")
    hashed = post_session(client, site["key"], "https://shop.example/#/offer?gclid=G-1",
                          ip="203.0.113.9").json["session_id"]
    record(app)
    visit = visit_of(admin, sid)
    assert visit["landing_url"] == "https://shop.example/cb?x=1"
    assert visit["referrer"] == "https://idp.example/auth"
    assert [p["url"] for p in visit["pages"]] == ["https://shop.example/cb?x=1",
                                                 "https://shop.example/next"]
    assert "SECRET" not in json.dumps(visit)
    other = visit_of(admin, hashed)
    assert other["gclid"] == "G-1" and other["landing_url"] == "https://shop.example/"
