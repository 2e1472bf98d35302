"""Abuse and bad input: pool-draining bots, foreign origins, oversized, malformed and hostile
bodies on every public and admin endpoint. Real Redis, real SQL; never a 500."""

from __future__ import annotations

import base64
import json
import re
import time
from urllib.parse import quote

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from redis.crc import key_slot

from factories import (
    ADMIN_TOKEN,
    CHROME_UA,
    IPHONE_UA,
    TWILIO_TOKEN,
    AdminClient,
    heartbeat,
    make_pool,
    make_site,
    numbers,
    post_session,
    record,
    twilio_call,
    twilio_post,
)

POOL_SIZE = 20
# The defaults: one IP may hold 20% of a pool at once, one /24 (IPv6 /48) 40%.
IP_CAP, SUBNET_CAP = 4, 8
UAS = [CHROME_UA, IPHONE_UA, "Mozilla/5.0 (X11; Linux x86_64; rv:126.0) Gecko/20100101 "
       "Firefox/126.0", "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 "
       "(KHTML, like Gecko) Version/17.5 Safari/605.1.15"]


@pytest.fixture
def site(admin):
    return make_site(admin)


@pytest.fixture
def pool(admin, site):
    return make_pool(admin, site, numbers=numbers(POOL_SIZE), cooldown_seconds=0)


def live(admin, pool) -> dict:
    return admin.get(f"/v1/pools/{pool['id']}").json["live"]


# -- 1. a pool-draining bot ----------------------------------------------------------------

BOTS = {
    # name: (requests, IP of request i, visitor id of request i, cap on what it may hold)
    "one IP, one visitor id": (1000, lambda i: "203.0.113.7", lambda i: "v_bot0000001", IP_CAP),
    "one IP, rotating visitor ids and user agents": (
        1000, lambda i: "203.0.113.7", lambda i: f"v_bot{i:07d}", IP_CAP),
    "a /24, rotating IPs and visitor ids": (
        1000, lambda i: f"203.0.113.{i % 254 + 1}", lambda i: f"v_bot{i:07d}", SUBNET_CAP),
    "one IPv6 /64, rotating addresses": (
        400, lambda i: f"2001:db8:7:7::{i:x}", lambda i: f"v_bot{i:07d}", IP_CAP),
    "one IPv6 /48, rotating /64s": (
        400, lambda i: f"2001:db8:7:{i:x}::1", lambda i: f"v_bot{i:07d}", SUBNET_CAP),
}


def drive_bot(client, site, requests: int, ip, visitor) -> list[dict]:
    """Each request is a new session (no session id kept), as a draining bot makes them."""
    return [post_session(client, site["key"], f"https://shop.example/?n={i}", ua=UAS[i % 4],
                         ip=ip(i), visitor_id=visitor(i)).json["numbers"][0]
            for i in range(requests)]


def real_visitors(client, site, count: int = 10) -> list[dict]:
    """Visitors from ten other networks, each its own /24."""
    return [post_session(client, site["key"], ip=f"198.51.{i}.20",
                         visitor_id=f"v_real{i:06d}").json["numbers"][0] for i in range(count)]


@pytest.mark.parametrize("rate", ["30/60", "100000/60"], ids=["default rate", "rate off"])
@pytest.mark.parametrize("bot", list(BOTS))
def test_a_draining_bot_gets_no_more_than_its_share(make_app, admin, site, pool, bot, rate):
    """Whatever the bot rotates, it holds at most its share; real visitors still get numbers.

    With the rate limit set too high to matter, the share caps alone hold the line.
    """
    client = make_app(DNI_SESSION_RATE=rate).test_client()
    requests, ip, visitor, cap = BOTS[bot]
    requests = requests if rate == "30/60" else 300  # the caps bite after a handful anyway
    answers = drive_bot(client, site, requests, ip, visitor)
    held = [a for a in answers if not a["fallback"]]
    refused = [a for a in answers if a["fallback"]]
    assert len(held) == cap
    assert len({a["number"] for a in held}) == cap
    assert {a.get("reason") for a in refused} == {"rate_limited"}
    assert all(a["number"] == "+18005550100" for a in refused)  # the page's own number

    others = real_visitors(client, site)
    assert all(not a["fallback"] for a in others), others
    assert not {a["number"] for a in others} & {a["number"] for a in held}
    state = live(admin, pool)
    assert state["busy"] == cap + len(others)
    assert state["counters"]["rate_limited"] == len(refused)


def test_a_bots_share_frees_up_as_its_leases_end(make_app, admin, site, pool):
    """The cap counts live leases: a released one makes room; it is not a ban."""
    app = make_app(DNI_SESSION_RATE="100000/60")
    client = app.test_client()
    answers = [post_session(client, site["key"], ip="203.0.113.9", visitor_id=f"v_bot{i:07d}")
               .json for i in range(IP_CAP + 1)]
    assert [a["numbers"][0]["fallback"] for a in answers] == [False] * IP_CAP + [True]
    app.extensions["dni"].pools.release(pool["id"], answers[0]["session_id"],
                                        int(time.time() * 1000))
    again = post_session(client, site["key"], ip="203.0.113.9", visitor_id="v_bot9999999").json
    assert again["numbers"][0]["fallback"] is False


def test_a_session_holding_a_number_keeps_it_whatever_the_caps(make_app, site, pool):
    """Renewing (same session id) is never refused: only new leases count against a share."""
    client = make_app().test_client()
    first = post_session(client, site["key"], ip="203.0.113.10").json
    for i in range(IP_CAP * 3):
        post_session(client, site["key"], ip="203.0.113.10", visitor_id=f"v_bot{i:07d}")
    again = post_session(client, site["key"], ip="203.0.113.10",
                         session_id=first["session_id"]).json
    assert again["numbers"][0]["number"] == first["numbers"][0]["number"]
    beat = heartbeat(client, site["key"], first["session_id"]).json
    assert beat["numbers"][0]["number"] == first["numbers"][0]["number"]


def test_a_small_pool_still_lets_one_network_hold_two(make_app, admin, site):
    """A share is never less than two numbers, so an office behind one IP is not starved."""
    small = make_pool(admin, site, target="+18005550102", numbers=numbers(3, 150))
    client = make_app().test_client()
    got = [post_session(client, site["key"], ip="203.0.113.11", visitor_id=f"v_off{i:07d}")
           .json["numbers"] for i in range(3)]
    mine = [next(e for e in answer if e["target"] == small["target"]) for answer in got]
    assert [e["fallback"] for e in mine] == [False, False, True]


def test_unknown_client_address_is_not_one_shared_bucket(make_app, admin, site, pool):
    """Without REMOTE_ADDR (a proxy misconfigured) the shares do not lump every visitor."""
    client = make_app(DNI_SESSION_RATE="100000/60").test_client()
    answers = [post_session(client, site["key"], ip="", visitor_id=f"v_anon{i:06d}").json
               for i in range(IP_CAP * 2)]
    assert all(not a["numbers"][0]["fallback"] for a in answers)


def test_every_key_the_lease_script_touches_is_in_the_pools_slot(app, site, pool):
    """Redis Cluster: the rate and share keys carry the pool's hash tag (one slot)."""
    from pools.leases import LeaseRequest

    service = app.extensions["dni"].sessions.pools
    keys, _ = service._lease_call(LeaseRequest(
        pool["id"], "s", 0, ip="2001:db8::1", visitor_id="v_x0000000",
        subnet="2001:db8::", subnet_rate_limit=1, ip_share=0.2, subnet_share=0.4))
    assert len(keys) == 15  # with the session's renewal and page view counters (issue 11)
    assert len({key_slot(key.encode()) for key in keys}) == 1


def test_the_share_keys_expire_and_stay_in_the_pools_tag(make_app, redis_client, site, pool):
    client = make_app().test_client()
    post_session(client, site["key"], ip="203.0.113.12")
    share_keys = [key for key in redis_client.keys("*:live:*")]
    assert sorted(k.split(":live:")[1] for k in share_keys) == ["ip:203.0.113.12",
                                                                "net:203.0.113.0"]
    for key in share_keys:
        assert f"{{{pool['id']}}}" in key
        assert 0 < redis_client.pttl(key) <= (14_400 + 300) * 1000  # max lease + lease


# -- 2. foreign origins --------------------------------------------------------------------


@pytest.mark.parametrize("origin, allowed", [
    ("https://shop.example", True),
    ("https://www.shop.example", True),
    ("http://shop.example:8080", True),
    ("https://SHOP.example", True),
    (None, True),  # not a browser page
    ("https://evil.example", False),
    ("https://shop.example.evil.example", False),
    ("https://evilshop.example", False),
    ("null", False),  # sandboxed iframes, file:// pages
    ("https://[::1", False),  # malformed
])
def test_foreign_origins_get_no_session_and_no_cors_grant(client, admin, origin, allowed):
    site = make_site(admin, domains=["shop.example"])
    pool = make_pool(admin, site)
    headers = {"Content-Type": "text/plain", "User-Agent": CHROME_UA}
    if origin:
        headers["Origin"] = origin
    response = client.post("/v1/sessions", data=json.dumps({"site": site["key"],
                                                            "url": "https://shop.example/"}),
                           headers=headers)
    if allowed:
        assert response.status_code == 200
        assert response.headers["Access-Control-Allow-Origin"] == "*"
        assert response.json["numbers"][0]["fallback"] is False
        assert live(admin, pool)["busy"] == 1
    else:
        assert response.status_code == 403
        assert response.json["error"]["code"] == "foreign_origin"
        assert "Access-Control-Allow-Origin" not in response.headers
        assert live(admin, pool)["busy"] == 0


def test_a_site_without_domains_accepts_any_origin(client, admin, site, pool):
    response = client.post("/v1/sessions", json={"site": site["key"]},
                           headers={"Origin": "https://anywhere.example", "User-Agent": CHROME_UA})
    assert response.status_code == 200 and response.json["numbers"][0]["fallback"] is False
    assert response.headers["Access-Control-Allow-Origin"] == "*"


def test_errors_on_the_snippet_api_still_carry_the_cors_grant(client):
    """The snippet must be able to read a 404 or 422 to fall back quietly."""
    response = client.post("/v1/sessions", json={"site": "site_nope"},
                           headers={"Origin": "https://anywhere.example"})
    assert response.status_code == 404
    assert response.headers["Access-Control-Allow-Origin"] == "*"


# -- 3. oversized, malformed, invalid and unknown ------------------------------------------

TELNYX_SEED = bytes(range(32))
TELNYX_PUBLIC = base64.b64encode(Ed25519PrivateKey.from_private_bytes(TELNYX_SEED).public_key()
                                 .public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


@pytest.fixture
def world(make_app):
    """An app with carriers configured, and one of everything to aim requests at."""
    app = make_app(DNI_TWILIO_AUTH_TOKEN=TWILIO_TOKEN, DNI_TELNYX_PUBLIC_KEY=TELNYX_PUBLIC)
    admin = AdminClient(app.test_client(), ADMIN_TOKEN)
    site = make_site(admin, domains=["shop.example"])
    pool = make_pool(admin, site, numbers=numbers(5))
    call = admin.post("/v1/calls", json={"call_id": "CA-world", "from": "+14158675309",
                                         "to": numbers(1)[0],
                                         "started_at": "2026-05-01T10:00:00Z"}).json
    static = admin.post("/v1/static-numbers", json={
        "number": "+18005550177", "destination": "+12125550199", "source": "radio",
        "medium": "offline"}).json
    token = admin.post("/v1/tokens", json={"name": "reader", "scope": "read_only"}).json
    session = post_session(app.test_client(), site["key"], ip="198.51.100.99").json
    return {"app": app, "admin": admin, "client": app.test_client(), "site": site,
            "pool": pool, "call": call, "static": static, "token": token, "session": session}


def fill(path: str, w: dict) -> str:
    """A route with its parameters set to things that exist."""
    values = {"site_id": w["site"]["id"], "pool_id": w["pool"]["id"], "call_ref": w["call"]["id"],
              "static_id": w["static"]["id"], "token_id": w["token"]["id"],
              "session_id": w["session"]["session_id"], "number": numbers(1)[0]}
    return re.sub(r"<(?:\w+:)?(\w+)>", lambda m: str(values.get(m.group(1), 1)), path)


JSON_ROUTES = [  # (method, route, admin)
    ("post", "/v1/sessions", False),
    ("post", "/v1/sessions/<session_id>/heartbeat", False),
    ("post", "/v1/sites", True), ("patch", "/v1/sites/<site_id>", True),
    ("post", "/v1/pools", True), ("patch", "/v1/pools/<pool_id>", True),
    ("post", "/v1/pools/<pool_id>/numbers", True),
    ("post", "/v1/calls", True), ("post", "/v1/calls/<call_ref>/disposition", True),
    ("post", "/v1/static-numbers", True), ("patch", "/v1/static-numbers/<static_id>", True),
    ("post", "/v1/tokens", True),
]
MALFORMED = [b"{", b"[1, 2]", b"", b"null", b'"text"', b"\xff\xfe{}", b'{"a": 1,}', b"{" * 5000]


def send(w: dict, method: str, path: str, admin: bool, **kwargs):
    client = w["admin"] if admin else w["client"]
    headers = {"User-Agent": CHROME_UA, **kwargs.pop("headers", {})}
    return getattr(client, method)(path, headers=headers, **kwargs)


@pytest.mark.parametrize("method, route, admin", JSON_ROUTES)
def test_malformed_json_is_400_everywhere(world, method, route, admin):
    for body in MALFORMED:
        response = send(world, method, fill(route, world), admin, data=body,
                        headers={"Content-Type": "application/json"})
        assert response.status_code == 400, (body[:20], response.json)
        assert response.json["error"]["code"] == "malformed_json"


@pytest.mark.parametrize("method, route, admin", JSON_ROUTES + [
    ("post", "/webhooks/twilio/voice", False), ("post", "/webhooks/twilio/status", False),
    ("post", "/webhooks/telnyx", False)])
def test_oversized_bodies_are_413(world, method, route, admin):
    size = (2 * 1024 * 1024 if admin else 16_384) + 1
    response = send(world, method, fill(route, world), admin,
                    data=b'{"x": "' + b"a" * size + b'"}',
                    headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert response.json["error"]["code"] == "too_large"


def test_every_route_survives_junk_bodies(world):
    """A sweep of the URL map, other engineers' routes included: junk is never a 500."""
    for rule in world["app"].url_map.iter_rules():
        if rule.rule.startswith(("/static", "/dashboard")):
            continue
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            for body in MALFORMED[:4] + [b'{"site": {"$ne": 1}}', b'{"id": 1e999}']:
                response = send(world, method.lower(), fill(rule.rule, world), True, data=body,
                                headers={"Content-Type": "application/json"})
                assert response.status_code < 500, (method, rule.rule, body, response.data)


@pytest.mark.parametrize("method, route, body, field", [
    ("post", "/v1/pools", {"target": "12"}, "target"),
    ("post", "/v1/pools", {"destination": "not a number"}, "destination"),
    ("post", "/v1/pools", {"fallback": "+1 555"}, "fallback"),
    ("post", "/v1/pools", {"numbers": ["+16505550101", "555-CALL-NOW"]}, "numbers"),
    ("patch", "/v1/pools/<pool_id>", {"destination": "0"}, "destination"),
    ("patch", "/v1/pools/<pool_id>", {"fallback": "+999"}, "fallback"),
    ("post", "/v1/pools/<pool_id>/numbers", {"numbers": ["12345"]}, "numbers"),
    ("post", "/v1/static-numbers", {"number": "not-a-number"}, "number"),
    ("post", "/v1/static-numbers", {"destination": "+1"}, "destination"),
    ("patch", "/v1/static-numbers/<static_id>", {"destination": "x"}, "destination"),
])
def test_invalid_phone_numbers_are_422_naming_the_field(world, method, route, body, field):
    base = {"post /v1/pools": {"site": world["site"]["key"], "name": "P", "target": "+18005550111",
                               "destination": "+12125550199", "numbers": numbers(1, 160)},
            "post /v1/static-numbers": {"number": "+18005550178", "destination": "+12125550199",
                                        "source": "tv", "medium": "offline"}}
    full = base.get(f"{method} {route}", {}) | body
    response = send(world, method, fill(route, world), True, json=full)
    assert response.status_code == 422, response.json
    assert field in response.json["error"]["fields"], response.json


@pytest.mark.parametrize("method, path, body", [
    ("post", "/v1/sessions", {"site": "site_nope", "url": "https://shop.example/"}),
    ("post", "/v1/pools", {"site": "site_nope", "name": "P", "target": "+18005550111",
                           "destination": "+12125550199"}),
    ("post", "/v1/pools", {"site": 99999, "name": "P", "target": "+18005550111",
                           "destination": "+12125550199"}),
    ("post", "/v1/static-numbers", {"site": "site_nope", "number": "+18005550179",
                                    "destination": "+12125550199", "source": "tv",
                                    "medium": "offline"}),
    ("get", "/v1/calls?site=site_nope", None),
    ("get", "/v1/reports/attribution?site=site_nope", None),
    ("get", "/v1/sites/99999", None),
    ("get", "/v1/sites/99999999999999999999999", None),
    ("get", "/v1/calls/99999999999999999999999", None),
])
def test_unknown_sites_and_ids_are_404(world, method, path, body):
    admin = not path.startswith("/v1/sessions")
    response = send(world, method, path, admin, **({"json": body} if body else {}))
    assert response.status_code == 404, response.json


def test_a_made_up_session_on_an_unknown_site_is_404(world):
    response = heartbeat(world["client"], "site_nope", "0" * 24 + ".1.0123456789abcdef")
    assert response.status_code == 404


# -- 4. injection strings in every field ----------------------------------------------------

INJECTIONS = [
    "' OR '1'='1' --",
    "1); DROP TABLE calls; --",
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "{{7*7}}${7*7}<%= 7*7 %>",
    "../../../../etc/passwd",
    "\u202egnp.exe",
    "Robert'); DELETE FROM sites WHERE ('1'='1",
    "emoji 😀 and \\ backslash",
]


@pytest.mark.parametrize("evil", INJECTIONS)
def test_hostile_strings_in_a_session_are_stored_verbatim(world, evil):
    client, admin = world["client"], world["admin"]
    site = world["site"]
    url = f"https://shop.example/land?utm_campaign={quote(evil)}&utm_term={quote(evil)}"
    response = post_session(client, site["key"], url, referrer=f"https://ref.example/{evil}",
                            visitor_id=evil, session_id=evil, ga_client_id=evil,
                            ua=f"{CHROME_UA} {evil}", ip="198.51.100.77")
    assert response.status_code == 200
    session_id = response.json["session_id"]
    assert heartbeat(client, site["key"], session_id, url=f"https://shop.example/{evil}"
                     ).status_code == 200
    for junk in ({"site": evil}, {"site": site["key"], "url": evil}):
        assert client.post(f"/v1/sessions/{quote(evil, safe='')}/heartbeat", json=junk
                           ).status_code in (404, 422)
    assert post_session(client, evil).status_code in (404, 422)
    record(world["app"])
    visit = admin.get(f"/v1/sessions/{session_id}").json
    assert visit["utm_campaign"] == evil and visit["utm_term"] == evil
    assert visit["referrer"] == f"https://ref.example/{evil}"


@pytest.mark.parametrize("evil", INJECTIONS)
def test_hostile_strings_in_admin_bodies_are_stored_verbatim(world, evil):
    admin = world["admin"]
    site = admin.post("/v1/sites", json={"name": evil, "domains": [evil],
                                         "keyword_params": [evil[:60]]})
    assert site.status_code == 201, site.json
    assert admin.get(f"/v1/sites/{site.json['id']}").json["name"] == evil
    pool = admin.post("/v1/pools", json={
        "site": site.json["key"], "name": evil, "target": "+18005550122", "publisher": evil,
        "destination": "+12125550199", "numbers": numbers(1, 170),
        "rules": [{"source": evil, "campaign": [evil]}]})
    assert pool.status_code == 201, pool.json
    assert admin.get(f"/v1/pools/{pool.json['id']}").json["name"] == evil
    static = admin.post("/v1/static-numbers", json={
        "number": "+18005550181", "destination": "+12125550199", "source": evil,
        "medium": evil, "campaign": evil, "label": evil, "publisher": evil})
    assert static.status_code == 201, static.json
    assert admin.get(f"/v1/static-numbers/{static.json['id']}").json["label"] == evil
    token = admin.post("/v1/tokens", json={"name": evil, "scope": "publisher", "publisher": evil})
    assert token.status_code == 201
    call = admin.post("/v1/calls", json={"call_id": evil, "from": evil, "to": evil,
                                         "started_at": "2026-05-01T10:00:00Z",
                                         "caller_city": evil, "caller_region": evil[:60]})
    assert call.status_code == 201, call.json
    shown = admin.get(f"/v1/calls/{call.json['id']}").json
    assert (shown["call_id"], shown["from"], shown["caller"]["city"]) == (evil, evil, evil)
    assert admin.post(f"/v1/calls/{call.json['id']}/disposition",
                      json={"disposition": evil, "value": evil}).status_code == 422
    assert admin.patch(f"/v1/sites/{site.json['id']}", json={"timezone": evil}).status_code == 422


@pytest.mark.parametrize("evil", INJECTIONS)
def test_hostile_strings_in_webhooks_never_break_them(world, evil):
    client = world["client"]
    for path in ("/webhooks/twilio/voice", "/webhooks/twilio/status", "/webhooks/twilio/dial",
                 "/webhooks/twilio/recording"):
        params = twilio_call(evil, evil, caller=evil, CallStatus=evil, RecordingUrl=evil,
                             SequenceNumber=evil, DialCallStatus=evil, CallDuration=evil)
        assert twilio_post(client, path, params).status_code < 500, path
    event = {"data": {"record_type": "event", "event_type": "call.initiated", "id": evil,
                      "occurred_at": evil, "payload": {"call_control_id": evil, "from": evil,
                                                       "to": evil, "direction": evil}}}
    raw = json.dumps(event).encode()
    stamp = str(int(time.time()))
    signature = Ed25519PrivateKey.from_private_bytes(TELNYX_SEED).sign(stamp.encode() + b"|" + raw)
    response = client.post("/webhooks/telnyx", data=raw, headers={
        "Content-Type": "application/json", "telnyx-timestamp": stamp,
        "telnyx-signature-ed25519": base64.b64encode(signature).decode()})
    assert response.status_code < 500


@pytest.mark.parametrize("evil", INJECTIONS)
def test_hostile_query_parameters_never_break_reports(world, evil):
    admin = world["admin"]
    params = ["start", "end", "group_by", "metrics", "site", "pool", "qualified", "caller",
              "publisher", "format", "limit", "target"]
    for path in ("/v1/reports/attribution", "/v1/calls", "/v1/sessions", "/v1/sites",
                 "/v1/static-numbers", "/v1/pools", f"/v1/pools/{world['pool']['id']}/health"):
        for name in params:
            response = admin.get(path, query_string={name: evil})
            assert response.status_code < 500, (path, name, response.json)
        assert admin.get(path, query_string=dict.fromkeys(params, evil)).status_code < 500


@pytest.mark.parametrize("evil", ["<script>alert(1)</script>", '"><img src=x onerror=alert(1)>'])
def test_hostile_admin_values_render_escaped_on_the_dashboard(world, evil):
    admin = world["admin"]
    admin.patch(f"/v1/pools/{world['pool']['id']}", json={"name": evil})
    admin.patch(f"/v1/static-numbers/{world['static']['id']}", json={"label": evil})
    client = world["app"].test_client()
    form = client.get("/dashboard/login").text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
    client.post("/dashboard/login", data={"token": ADMIN_TOKEN, "csrf_token": csrf})
    for page in ("/dashboard/pools", f"/dashboard/pools/{world['pool']['id']}",
                 "/dashboard/static-numbers"):
        html = client.get(page).text
        assert evil not in html, page
        assert evil.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace(
            '"', "&#34;") in html, page


def test_nul_characters_are_refused_or_dropped_never_a_500(world):
    """PostgreSQL text cannot hold NUL: a NUL in a JSON field is a 422 naming the field."""
    admin = world["admin"]
    response = admin.post("/v1/sites", json={"name": "a\x00b"})
    assert response.status_code == 422 and "name" in response.json["error"]["fields"]
    response = post_session(world["client"], world["site"]["key"], visitor_id="v\x00x")
    assert response.status_code == 422 and "visitor_id" in response.json["error"]["fields"]
    assert admin.get("/v1/reports/attribution", query_string={"publisher": "a\x00"}
                     ).status_code < 500
    assert admin.get("/v1/calls", query_string={"site": "a\x00"}).status_code < 500


def test_a_nul_in_a_landing_url_still_records_the_visit(world):
    """A %00 in the page's own query string is the page's business: the visit is kept."""
    response = post_session(world["client"], world["site"]["key"],
                            "https://shop.example/?utm_campaign=a%00b&utm_source=x%00",
                            ip="198.51.100.78")
    assert response.status_code == 200
    record(world["app"])
    visit = world["admin"].get(f"/v1/sessions/{response.json['session_id']}")
    assert visit.status_code == 200, "the visit never reached SQL"
    assert visit.json["utm_campaign"] in ("ab", "a\ufffdb")
