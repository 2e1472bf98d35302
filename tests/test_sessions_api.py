"""The snippet-facing sessions API: capture, leasing, pool choice, reasons, bad input."""

from __future__ import annotations

import datetime as dt
import json
import socket
import time

import orjson
import pytest
from sqlalchemy import event

from dni_server.extensions import db
from factories import (
    GOOGLEBOT_UA,
    IPHONE_UA,
    heartbeat,
    make_pool,
    make_site,
    numbers,
    post_session,
    record,
)

LANDING = ("https://plumbing.example/emergency/leak?utm_source=google&utm_medium=cpc"
           "&utm_campaign=spring&utm_content=ad1&utm_id=c123&utm_source_platform=sa360"
           "&utm_creative_format=text&utm_marketing_tactic=prospecting"
           "&gclid=Cj0KCQ_AbC-123&gbraid=GB1&wbraid=WB1&msclkid=MS1&fbclid=FB1&ttclid=TT1"
           "&li_fat_id=LI1&dclid=DC1&kw=burst+pipe")


@pytest.fixture
def site(admin):
    return make_site(admin, keyword_params=["kw"])


@pytest.fixture
def pool(admin, site):
    return make_pool(admin, site)


def test_new_session_leases_a_number_and_captures_the_visit(app, client, admin, site, pool,
                                                            make_app, geoip_db):
    geo_app = make_app(DNI_GEOIP_DB=geoip_db)
    response = post_session(geo_app.test_client(), site["key"], LANDING, ua=IPHONE_UA,
                            ip="198.51.100.23", referrer="https://www.google.com/search?q=x",
                            ga_client_id="123456789.1700000000")
    assert response.status_code == 200
    body = response.get_json()
    [entry] = body["numbers"]
    assert entry["target"] == "+18005550100"
    assert entry["number"] in numbers(3)
    assert entry["fallback"] is False and "reason" not in entry
    assert entry["target_national"] == "8005550100"
    assert 299 <= entry["expires_in"] <= 300
    assert body["renew_in"] == 100  # a third of the default 300 s lease
    assert body["visitor_id"].startswith("v_")

    assert record(app) > 0
    visit = admin.get(f"/v1/sessions/{body['session_id']}").get_json()
    assert visit["source"] == "google" and visit["medium"] == "cpc"
    assert visit["utm_campaign"] == "spring" and visit["utm_content"] == "ad1"
    assert visit["utm_id"] == "c123" and visit["utm_source_platform"] == "sa360"
    assert visit["utm_creative_format"] == "text"
    assert visit["utm_marketing_tactic"] == "prospecting"
    assert visit["gclid"] == "Cj0KCQ_AbC-123"  # case kept exactly
    for name, value in [("gbraid", "GB1"), ("wbraid", "WB1"), ("msclkid", "MS1"),
                        ("fbclid", "FB1"), ("ttclid", "TT1"), ("li_fat_id", "LI1"),
                        ("dclid", "DC1")]:
        assert visit[name] == value
    assert visit["keyword"] == "burst pipe"  # from the site's extra keyword parameter
    assert visit["landing_path"] == "/emergency/leak"
    assert visit["referrer_domain"] == "google.com"
    assert (visit["device_type"], visit["browser"], visit["os"]) == ("mobile", "Mobile Safari",
                                                                     "iOS")
    assert (visit["country"], visit["region"], visit["city"]) == ("US", "MA", "Boston")
    assert visit["ga_client_id"] == "123456789.1700000000"
    assert [p["path"] for p in visit["pages"]] == ["/emergency/leak"]
    [lease] = visit["leases"]
    assert lease["number"] == entry["number"] and lease["ended_at"] is None


def test_utm_term_is_the_keyword_before_extra_parameters(client, admin, site, pool):
    body = post_session(client, site["key"], "https://x.example/?utm_term=drain&kw=other").json
    record(client.application)
    assert admin.get(f"/v1/sessions/{body['session_id']}").json["keyword"] == "drain"


def test_heartbeat_keeps_the_number_and_records_page_views(client, admin, site, pool):
    first = post_session(client, site["key"], "https://x.example/").get_json()
    sid = first["session_id"]
    beat = heartbeat(client, site["key"], sid, "https://x.example/pricing")
    assert beat.status_code == 200
    assert beat.json["numbers"][0]["number"] == first["numbers"][0]["number"]
    assert beat.json["session_id"] == sid
    heartbeat(client, site["key"], sid)  # a keep-alive without a url records no page
    record(client.application)
    pages = admin.get(f"/v1/sessions/{sid}").json["pages"]
    assert [p["path"] for p in pages] == ["/", "/pricing"]


def test_next_page_resumes_the_session_with_the_same_number(client, admin, site, pool):
    first = post_session(client, site["key"], "https://x.example/?utm_source=bing").get_json()
    again = post_session(client, site["key"], "https://x.example/about",
                         session_id=first["session_id"], visitor_id=first["visitor_id"]).json
    assert again["session_id"] == first["session_id"]
    assert again["visitor_id"] == first["visitor_id"]
    assert again["numbers"] == [dict(first["numbers"][0], expires_at=again["numbers"][0]
                                     ["expires_at"])]
    record(client.application)
    visit = admin.get(f"/v1/sessions/{first['session_id']}").json
    assert visit["source"] == "bing"  # the landing's attribution is kept
    assert [p["path"] for p in visit["pages"]] == ["/", "/about"]
    assert len(visit["leases"]) == 1


def test_a_forged_session_id_starts_a_new_session(client, site, pool):
    first = post_session(client, site["key"]).get_json()
    forged = first["session_id"][:-1] + ("0" if first["session_id"][-1] != "0" else "1")
    second = post_session(client, site["key"], session_id=forged).get_json()
    assert second["session_id"] not in (first["session_id"], forged)
    assert second["numbers"][0]["number"] != first["numbers"][0]["number"]


def test_text_plain_body_and_cors_headers(client, site, pool):
    response = post_session(client, site["key"])
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    preflight = client.options("/v1/sessions", headers={
        "Origin": "https://publisher.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type"})
    assert preflight.status_code == 200
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    assert preflight.headers["Access-Control-Allow-Origin"] in ("*", "https://publisher.example")


def test_snippet_answers_are_json_with_one_cors_grant_and_errors_keep_it(client, site, pool):
    """The answers are built by hand (cors.granted_json): the bytes jsonify wrote, one grant."""
    ok = post_session(client, site["key"])
    assert ok.status_code == 200 and ok.content_type == "application/json"
    assert ok.data == orjson.dumps(ok.json) + b"\n"
    assert ok.headers.getlist("Access-Control-Allow-Origin") == ["*"]
    beat = heartbeat(client, site["key"], ok.json["session_id"])
    assert beat.status_code == 200 and beat.headers.getlist("Access-Control-Allow-Origin") == ["*"]
    # Errors are answered by the error handlers: the blueprint's hook grants them.
    unknown = post_session(client, "no_such_site")
    assert unknown.status_code == 404 and unknown.headers["Access-Control-Allow-Origin"] == "*"
    lost = heartbeat(client, site["key"], "0" * 24 + ".1.0123456789abcdef")
    assert lost.status_code == 404 and lost.headers["Access-Control-Allow-Origin"] == "*"


def test_a_body_shorter_than_its_content_length_is_a_400(client, site, pool):
    body = json.dumps({"site": site["key"]})
    response = client.post("/v1/sessions", data=body, headers={"Content-Type": "text/plain"},
                           environ_overrides={"CONTENT_LENGTH": str(len(body) + 10)})
    assert response.status_code == 400


SESSION_BODIES = [
    {"site": "k"},
    {"site": "k", "url": "https://x.example/?gclid=1", "referrer": None, "visitor_id": "v" * 128,
     "session_id": "s" * 128, "ga_client_id": "GA1.1.1.2", "fbp": None, "consent": True},
    {"site": "k", "consent": False, "unknown": {"deep": 1}},
    {"site": "k", "url": "u" * 4097},
    {"site": "k", "session_id": "s" * 129},
    {"site": "k", "referrer": 5},
    {"site": "k", "consent": "yes"},
    {"site": ""},
    {"site": None},
    {},
]


@pytest.mark.parametrize("body", SESSION_BODIES)
def test_the_session_request_loader_agrees_with_its_schema(body):
    from marshmallow import ValidationError

    from dni_server.api.schemas import QuickLoader, SessionRequestSchema

    schema = SessionRequestSchema()
    try:
        expected = schema.load(body)
    except ValidationError as exc:
        with pytest.raises(ValidationError) as caught:
            QuickLoader(schema).load(body)
        assert caught.value.messages == exc.messages
    else:
        assert QuickLoader(schema).load(body) == expected


def test_rules_pick_the_pool_by_priority_with_a_default(admin, client, site):
    default = make_pool(admin, site, name="Default", numbers=numbers(2, 101))
    google = make_pool(admin, site, name="Google", numbers=numbers(2, 111), priority=10,
                       rules=[{"source": "google", "medium": ["cpc", "ppc"]}])
    clicks = make_pool(admin, site, name="Any click", numbers=numbers(2, 121), priority=5,
                       rules=[{"has_click_id": True}])
    landing = make_pool(admin, site, name="Landing", numbers=numbers(2, 131), priority=3,
                        rules=[{"landing_path": "/offer*"}, {"referrer_domain": "*.partner.example"},
                               {"campaign": "radio-*"}])

    def pool_of(url, referrer=None):
        body = post_session(client, site["key"], url, referrer=referrer).get_json()
        return int(body["session_id"].split(".")[1])

    assert pool_of("https://x.example/?utm_source=Google&utm_medium=CPC&gclid=1") == google["id"]
    assert pool_of("https://x.example/?msclkid=abc") == clicks["id"]
    assert pool_of("https://x.example/offers/today") == landing["id"]
    assert pool_of("https://x.example/", "https://blog.partner.example/post") == landing["id"]
    assert pool_of("https://x.example/?utm_campaign=radio-spring") == landing["id"]
    assert pool_of("https://x.example/", "https://www.bing.com/") == default["id"]


def test_a_target_without_a_matching_pool_gets_its_fallback(admin, client, site):
    make_pool(admin, site, fallback="+18005550102", rules=[{"source": "google"}])
    body = post_session(client, site["key"], "https://x.example/").get_json()
    assert body["numbers"] == [{
        "session_id": body["session_id"],
        "target": "+18005550100", "number": "+18005550102", "expires_at": None,
        "expires_in": None, "fallback": True, "reason": "no_pool", "target_national": "8005550100",
        "number_national": "8005550102"}]
    assert body["renew_in"] == 0


def test_a_site_with_two_targets_leases_one_number_for_each(admin, client, site):
    sales = make_pool(admin, site, numbers=numbers(2, 101))
    support = make_pool(admin, site, target="+18005550102", numbers=numbers(2, 111))
    body = post_session(client, site["key"]).get_json()
    assert [e["target"] for e in body["numbers"]] == ["+18005550100", "+18005550102"]
    assert body["session_id"].split(".")[1] == f"{sales['id']}-{support['id']}"
    beat = heartbeat(client, site["key"], body["session_id"]).get_json()
    assert [e["number"] for e in beat["numbers"]] == [e["number"] for e in body["numbers"]]


@pytest.mark.parametrize("ua", [GOOGLEBOT_UA, "", "curl/8.0 (bot)"])
def test_bots_get_no_lease(client, admin, site, pool, ua):
    body = post_session(client, site["key"], ua=ua).get_json()
    assert body["numbers"][0]["fallback"] is True
    assert body["numbers"][0]["reason"] == "bot"
    assert body["numbers"][0]["number"] == "+18005550100"
    live = admin.get(f"/v1/pools/{pool['id']}").json["live"]
    assert live["busy"] == 0


def test_a_visitor_asking_too_fast_is_rate_limited(make_app, site, pool):
    client = make_app(DNI_SESSION_RATE="2/60").test_client()
    reasons = [post_session(client, site["key"], ip="192.0.2.50").json["numbers"][0].get("reason")
               for _ in range(3)]
    assert reasons == [None, None, "rate_limited"]
    # Another visitor from elsewhere is not affected.
    other = post_session(client, site["key"], ip="198.51.100.51").json["numbers"][0]
    assert other["fallback"] is False


def test_an_exhausted_pool_answers_with_its_fallback_and_records_it(admin, client, site):
    pool = make_pool(admin, site, numbers=numbers(1), fallback="+18005550102")
    post_session(client, site["key"])
    body = post_session(client, site["key"]).get_json()
    assert body["numbers"][0]["number"] == "+18005550102"
    assert body["numbers"][0]["reason"] == "pool_exhausted"
    record(client.application)
    visit = admin.get(f"/v1/sessions/{body['session_id']}").json
    assert visit["fallback_reason"] == "pool_exhausted"
    assert admin.get(f"/v1/pools/{pool['id']}").json["live"]["counters"]["exhausted"] == 1


def test_heartbeat_after_the_lease_lapsed_says_expired(app, client, site, pool, redis_client):
    body = post_session(client, site["key"]).get_json()
    services = app.extensions["dni"]
    services.pools.release(pool["id"], body["session_id"], int(time.time() * 1000))
    beat = heartbeat(client, site["key"], body["session_id"]).get_json()
    assert beat["numbers"][0]["fallback"] is True
    assert beat["numbers"][0]["reason"] == "expired"
    assert beat["renew_in"] == 0


def test_heartbeat_touches_no_sql(app, client, site, pool):
    """The heartbeat path is Redis only: count the SQL statements it runs."""
    body = post_session(client, site["key"]).get_json()
    statements = []
    with app.app_context():
        engine = db.engine
    listener = lambda *args: statements.append(args[2])  # noqa: E731
    event.listen(engine, "before_cursor_execute", listener)
    try:
        for _ in range(3):
            assert heartbeat(client, site["key"], body["session_id"], "https://x/p").status_code \
                == 200
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    assert statements == []


# -- bad input: a clear error, never a 500 ----------------------------------------------


def test_oversized_body_is_413(client, site):
    huge = json.dumps({"site": site["key"], "url": "https://x.example/?" + "a" * 20_000})
    response = client.post("/v1/sessions", data=huge, headers={"Content-Type": "text/plain"})
    assert response.status_code == 413
    assert response.json["error"]["code"] == "too_large"


@pytest.mark.parametrize("raw", ["{not json", "[1, 2]", "", '"a string"', "\xff\xfe",
                                 "[" * 5000 + "]" * 5000])
def test_malformed_json_is_400(client, raw):
    response = client.post("/v1/sessions", data=raw.encode("utf-8", "surrogateescape"),
                           headers={"Content-Type": "text/plain"})
    assert response.status_code == 400
    assert response.json["error"]["code"] == "malformed_json"


@pytest.mark.parametrize("body, field", [
    ({}, "site"),
    ({"site": 12}, "site"),
    ({"site": "k", "url": ["x"]}, "url"),
    ({"site": "k", "session_id": {"a": 1}}, "session_id"),
    ({"site": "x" * 100}, "site"),
])
def test_invalid_fields_are_422_naming_them(client, body, field):
    response = client.post("/v1/sessions", json=body)
    assert response.status_code == 422
    assert field in response.json["error"]["fields"]


def test_unknown_site_is_404(client):
    response = post_session(client, "site_nope")
    assert response.status_code == 404
    assert response.json["error"]["code"] == "unknown_site"


@pytest.mark.parametrize("session_id", ["nope", "a" * 24 + ".1." + "0" * 16, "%00", "x" * 500])
def test_heartbeat_for_an_unknown_session_is_404(client, site, pool, session_id):
    response = heartbeat(client, site["key"], session_id)
    assert response.status_code == 404
    assert response.json["error"]["code"] in ("unknown_session", "not_found")


def test_heartbeat_with_another_sites_key_is_404(admin, client, site, pool):
    other = make_site(admin, name="Other")
    body = post_session(client, site["key"]).get_json()
    assert heartbeat(client, other["key"], body["session_id"]).status_code == 404


def test_garbage_urls_and_referrers_are_kept_not_fatal(client, admin, site, pool):
    for url, ref in [("not a url", "::::"), ("http://[::1", "http://[bad"), ("", None),
                     ("javascript:alert(1)", "https://\u2603.example/"), (None, None)]:
        response = post_session(client, site["key"], url, referrer=ref)
        assert response.status_code == 200, (url, response.json)
    record(client.application)


# -- Redis down or slow: fallbacks within the budget, never a 5xx -------------------------


@pytest.fixture
def silent_port():
    """A TCP port that accepts connections and never answers: a hung Redis."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    yield server.getsockname()[1]
    server.close()


@pytest.mark.parametrize("down", ["refused", "silent"])
def test_redis_down_or_slow_answers_fallbacks_quickly(make_app, site, pool, down, silent_port):
    port = silent_port if down == "silent" else 1
    client = make_app(REDIS_URL=f"redis://127.0.0.1:{port}/0",
                      DNI_REDIS_TIMEOUT_MS="50").test_client()  # the production default
    started = time.perf_counter()
    response = post_session(client, site["key"])
    elapsed = time.perf_counter() - started
    assert response.status_code == 200
    entry = response.json["numbers"][0]
    assert (entry["fallback"], entry["reason"], entry["number"]) == (True, "unavailable",
                                                                     "+18005550100")
    beat = heartbeat(client, site["key"], response.json["session_id"])
    assert beat.status_code == 200
    # Not a speed target (bench/ measures that): a guard against hanging on the socket.
    assert elapsed < 2.0


# -- ad ids and consent (_ga, _ga_<id>, _fbp): captured, updated later, copied to calls -----

GA = "GA1.1.1234567890.1700000000"
GS1 = "GS1.1.1700000123.4.1.1700000456.0.0.0"
GS2 = "GS2.1.s1700000123$o4$g1$t1700000456$j60$l0$h0"
FBP = "fb.1.1700000000000.1234567890"


def beat_with(client, site_key: str, session_id: str, **fields):
    """A renewal carrying ad ids, as the snippet sends one (JSON as text/plain)."""
    return client.post(f"/v1/sessions/{session_id}/heartbeat",
                       data=json.dumps({"site": site_key, **fields}),
                       headers={"Content-Type": "text/plain;charset=UTF-8"})


def visit_of(admin, session_id: str) -> dict:
    return admin.get(f"/v1/sessions/{session_id}").get_json()


def ad_fields(row: dict) -> tuple:
    return row["ga_client_id"], row["ga_session_id"], row["fbp"], row["ad_consent"]


@pytest.mark.parametrize("sent, stored", [
    # Raw cookies, as the snippet sends them, in both _ga_<id> formats.
    ({"ga_client_id": GA, "ga_session_id": GS1, "fbp": FBP, "consent": True},
     ("1234567890.1700000000", "1700000123", FBP, True)),
    ({"ga_client_id": GA, "ga_session_id": GS2, "fbp": FBP},
     ("1234567890.1700000000", "1700000123", FBP, None)),
    # Already parsed, as another client may send them; fbp with the appendix Meta adds.
    ({"ga_client_id": "123.456", "ga_session_id": "1700000123",
      "fbp": FBP + ".AQEAAQMB", "consent": None},
     ("123.456", "1700000123", FBP + ".AQEAAQMB", None)),
    # Refused consent: whatever ids came along are not kept.
    ({"ga_client_id": GA, "ga_session_id": GS2, "fbp": FBP, "consent": False},
     (None, None, None, False)),
    # Not the platform's shape: ignored, never guessed at, and the lease still works.
    ({"ga_client_id": "GA1.1.abc.def", "ga_session_id": "GS1.1.soon", "consent": True,
      "fbp": "fb.1.17000.123"}, (None, None, None, True)),
    ({"fbp": "fb.1.1700000000000.12;x", "ga_session_id": "x" * 4096},
     (None, None, None, None)),
])
def test_ad_ids_and_consent_are_stored_on_the_visit(app, client, admin, site, pool, sent, stored):
    response = post_session(client, site["key"], **sent)
    assert response.status_code == 200
    assert response.json["numbers"][0]["fallback"] is False
    record(app)
    assert ad_fields(visit_of(admin, response.json["session_id"])) == stored


@pytest.mark.parametrize("field, value", [
    ("consent", "yes"), ("consent", "true"), ("consent", 2), ("consent", [True]),
    ("fbp", 1234567890), ("fbp", {"v": FBP}), ("ga_session_id", ["1700000123"]),
    ("ga_client_id", 123.456), ("fbp", "f" * 4097), ("ga_session_id", "1" * 4097),
])
@pytest.mark.parametrize("path", ["session", "heartbeat"])
def test_ad_fields_of_the_wrong_type_or_length_are_422(client, site, pool, field, value, path):
    sid = post_session(client, site["key"]).json["session_id"]
    if path == "session":
        response = post_session(client, site["key"], **{field: value})
    else:
        response = beat_with(client, site["key"], sid, **{field: value})
    assert response.status_code == 422
    assert response.json["error"]["code"] == "invalid"
    assert field in response.json["error"]["fields"]


def test_consent_given_later_reaches_sql_through_the_heartbeat(app, client, admin, site, pool):
    """Consent required and refused at first; given on the page later; then withdrawn."""
    sid = post_session(client, site["key"], consent=False).json["session_id"]
    record(app)
    assert ad_fields(visit_of(admin, sid)) == (None, None, None, False)

    statements = []
    with app.app_context():
        engine = db.engine
    listener = lambda *args: statements.append(args[2])  # noqa: E731
    event.listen(engine, "before_cursor_execute", listener)
    try:
        given = beat_with(client, site["key"], sid, consent=True, ga_client_id=GA,
                          ga_session_id=GS2, fbp=FBP)
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    assert given.status_code == 200 and given.json["numbers"][0]["fallback"] is False
    assert statements == []  # the heartbeat stays Redis only
    assert ad_fields(visit_of(admin, sid)) == (None, None, None, False)  # not recorded yet
    record(app)
    assert ad_fields(visit_of(admin, sid)) == ("1234567890.1700000000", "1700000123", FBP,
                                                True)

    # A cookie set since (a new GA session): only what changed is sent, the rest is kept.
    beat_with(client, site["key"], sid, ga_session_id="GS2.1.s1700009999$o5$g0$t1700009999")
    record(app)
    assert ad_fields(visit_of(admin, sid)) == ("1234567890.1700000000", "1700009999", FBP,
                                                True)

    beat_with(client, site["key"], sid, consent=False)  # withdrawn: the ids go too
    record(app)
    assert ad_fields(visit_of(admin, sid)) == (None, None, None, False)


def test_ad_ids_on_a_resumed_session_reach_its_visit(app, client, admin, site, pool):
    """The next page resumes the session and brings a cookie the first page did not have."""
    first = post_session(client, site["key"], ga_client_id=GA).json
    again = post_session(client, site["key"], "https://shop.example/next",
                         session_id=first["session_id"], visitor_id=first["visitor_id"],
                         ga_client_id=GA, fbp=FBP)
    assert again.json["session_id"] == first["session_id"]
    record(app)
    assert ad_fields(visit_of(admin, first["session_id"])) == (
        "1234567890.1700000000", None, FBP, None)


def test_a_heartbeat_without_ad_ids_writes_no_ad_event(app, client, site, pool):
    sid = post_session(client, site["key"]).json["session_id"]
    heartbeat(client, site["key"], sid, "https://shop.example/b")
    pools = app.extensions["dni"].pools

    def kinds() -> list[str]:
        return [f["t"] for _, f in pools.redis.xrange(pools.keys(pool["id"]).events)]

    assert kinds() == ["lease", "renew"]
    beat_with(client, site["key"], sid, fbp=FBP)
    assert kinds() == ["lease", "renew", "renew", "ad"]


def test_ad_ids_on_a_heartbeat_cost_no_extra_round_trip(client, site, pool, monkeypatch):
    """The ad event is written by the renew script itself: still one send to Redis."""
    import redis.connection

    sid = post_session(client, site["key"]).json["session_id"]
    sends = []
    original = redis.connection.AbstractConnection.send_packed_command

    def counted(self, command, check_health=True):
        sends.append(command)
        return original(self, command, check_health)

    monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", counted)
    assert beat_with(client, site["key"], sid, fbp=FBP, consent=True).status_code == 200
    assert len(sends) == 1


def call_to(admin, number: str, call_id: str) -> dict:
    started = dt.datetime.now(dt.UTC).isoformat()
    response = admin.post("/v1/calls", json={"call_id": call_id, "from": "+14158675309",
                                              "to": number, "started_at": started})
    assert response.status_code in (200, 201), response.json
    return response.json


def test_a_matched_call_carries_the_visits_ad_ids(app, client, admin, site, pool):
    before = int(time.time() * 1000)
    body = post_session(client, site["key"], "https://shop.example/?fbclid=IwAR-x1",
                        ga_client_id=GA, ga_session_id=GS1, fbp=FBP, consent=True).json
    record(app)
    call = call_to(admin, body["numbers"][0]["number"], "CA-ad-1")
    a = call["attribution"]
    assert a["session_id"] == body["session_id"]
    assert (a["ga_client_id"], a["ga_session_id"], a["fbp"], a["ad_consent"]) == (
        "1234567890.1700000000", "1700000123", FBP, True)
    # When the click id was first seen, for Meta's fbc: the session's start.
    assert a["fbclid"] == "IwAR-x1"
    assert before <= a["click_id_at_ms"] <= int(time.time() * 1000)
    detail = admin.get(f"/v1/calls/{call['id']}").json["attribution"]
    assert (detail["ga_session_id"], detail["fbp"], detail["ad_consent"]) == (
        "1700000123", FBP, True)


def test_consent_given_after_the_call_was_matched_reaches_only_the_visit(app, client, admin,
                                                                         site, pool):
    """A call keeps the consent its visit had when it was matched (issue 11, F2)."""
    body = post_session(client, site["key"], consent=False).json
    record(app)
    call = call_to(admin, body["numbers"][0]["number"], "CA-ad-2")
    assert call["attribution"]["ad_consent"] is False
    beat_with(client, site["key"], body["session_id"], consent=True, fbp=FBP)
    record(app)
    a = admin.get(f"/v1/calls/{call['id']}").json["attribution"]
    assert (a["ad_consent"], a["fbp"], a["ga_client_id"]) == (False, None, None)
    assert ad_fields(visit_of(admin, body["session_id"]))[2:] == (FBP, True)
