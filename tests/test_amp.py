"""GET /v1/amp/number: the number for <amp-call-tracking>, leased per AMP client id through
the snippet's own session service, behind AMP's CORS rules."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from attribution.models import Visit
from dni_server.extensions import db
from factories import CHROME_UA, GOOGLEBOT_UA, make_pool, make_site, numbers, record

CACHE = "https://shop-example.cdn.ampproject.org"
SOURCE = "https://shop.example"
GRANT_HEADERS = ("Access-Control-Allow-Origin", "Access-Control-Allow-Credentials",
                 "AMP-Access-Control-Allow-Source-Origin", "Access-Control-Expose-Headers")


@pytest.fixture
def site(admin):
    return make_site(admin, domains=["shop.example"])


@pytest.fixture
def pool(admin, site):
    return make_pool(admin, site)


def amp_get(client, site_key: str, client_id: str = "amp-Xy7_abcdEFGH12345678", *,
            target: str = "%2B18005550100", origin: str | None = CACHE,
            source: str | None = SOURCE, same_origin: bool = False, ua: str = CHROME_UA,
            ip: str = "192.0.2.10", extra: str = ""):
    """The request AMP's runtime makes for <amp-call-tracking config=...>."""
    query = f"site={site_key}&target={target}&client_id={client_id}{extra}"
    if source is not None:
        query += f"&__amp_source_origin={source}"
    headers = {"User-Agent": ua}
    if origin is not None:
        headers["Origin"] = origin
    if same_origin:
        headers["AMP-Same-Origin"] = "true"
    return client.get(f"/v1/amp/number?{query}", headers=headers,
                      environ_base={"REMOTE_ADDR": ip})


def test_a_client_gets_a_pool_number_in_amps_format(client, site, pool):
    response = amp_get(client, site["key"])
    assert response.status_code == 200, response.json
    body = response.get_json()
    assert set(body) == {"phoneNumber", "formattedPhoneNumber"}
    assert body["phoneNumber"] in numbers(3)
    # +1650555010x as the US writes it
    assert body["formattedPhoneNumber"] == f"(650) 555-{body['phoneNumber'][-4:]}"
    assert response.headers["Cache-Control"] == "private, no-store"


def test_the_number_sticks_to_its_client_id(app, client, site, pool):
    first = amp_get(client, site["key"], "amp-client-one-0000000001").json["phoneNumber"]
    again = amp_get(client, site["key"], "amp-client-one-0000000001").json["phoneNumber"]
    other = amp_get(client, site["key"], "amp-client-two-0000000002").json["phoneNumber"]
    assert first == again
    assert other != first and other in numbers(3)
    # Two visitors, one visit each: the repeat request resumed the session it had.
    record(app)
    with app.app_context():
        visits = db.session.scalars(select(Visit)).all()
    assert sorted(v.visitor_id for v in visits) == ["amp-client-one-0000000001",
                                                    "amp-client-two-0000000002"]


def test_the_page_and_referrer_are_the_visits(app, client, site, pool):
    page = "https%3A%2F%2Fshop.example%2Foffer%3Futm_source%3Dnewsletter%26utm_medium%3Demail"
    response = amp_get(client, site["key"], extra=f"&url={page}&referrer=https%3A%2F%2Fmail."
                                                   "example%2F")
    assert response.status_code == 200
    record(app)
    with app.app_context():
        [visit] = db.session.scalars(select(Visit)).all()
    assert (visit.source, visit.medium, visit.landing_path) == ("newsletter", "email", "/offer")


def test_an_exhausted_pool_answers_its_fallback(admin, client, site):
    make_pool(admin, site, numbers=numbers(1), fallback="+18005550102")
    leased = amp_get(client, site["key"], "amp-first-client-00000001").json
    refused = amp_get(client, site["key"], "amp-second-client-0000002").json
    assert leased["phoneNumber"] == numbers(1)[0]
    assert refused == {"phoneNumber": "+18005550102", "formattedPhoneNumber": "(800) 555-0102"}


def test_rules_bots_and_rate_limits_answer_fallbacks_as_for_the_snippet(make_app, admin, site):
    make_pool(admin, site, fallback="+18005550102", rules=[{"source": "google"}])
    no_pool = amp_get(admin.client, site["key"])
    assert no_pool.json["phoneNumber"] == "+18005550102"
    bot = amp_get(admin.client, site["key"], ua=GOOGLEBOT_UA,
                  extra="&url=https%3A%2F%2Fshop.example%2F%3Futm_source%3Dgoogle")
    assert bot.json["phoneNumber"] == "+18005550102"

    limited = make_app(DNI_SESSION_RATE="2/60").test_client()
    google = "&url=https%3A%2F%2Fshop.example%2F%3Futm_source%3Dgoogle"
    answers = [amp_get(limited, site["key"], f"amp-rate-client-{i:010d}", extra=google).json
               for i in range(3)]
    assert [a["phoneNumber"] in numbers(3) for a in answers] == [True, True, False]
    assert answers[2]["phoneNumber"] == "+18005550102"
    [pool] = admin.get("/v1/pools").json["pools"]
    assert admin.get(f"/v1/pools/{pool['id']}").json["live"]["counters"]["rate_limited"] == 1


def test_redis_down_answers_the_fallback(make_app, site, pool):
    down = make_app(REDIS_URL="redis://127.0.0.1:1/0", DNI_REDIS_TIMEOUT_MS="50").test_client()
    response = amp_get(down, site["key"])
    assert response.status_code == 200
    assert response.json["phoneNumber"] == "+18005550100"  # the pool's default fallback


def test_an_amp_cache_origin_with_the_sites_source_origin_is_granted(client, site, pool):
    response = amp_get(client, site["key"], origin=CACHE, source=SOURCE)
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == CACHE
    assert response.headers["Access-Control-Allow-Credentials"] == "true"
    assert response.headers["AMP-Access-Control-Allow-Source-Origin"] == SOURCE
    assert response.headers["Access-Control-Expose-Headers"] == \
        "AMP-Access-Control-Allow-Source-Origin"


def test_the_sites_own_origin_and_same_origin_requests_are_granted(client, site, pool):
    own = amp_get(client, site["key"], origin="https://www.shop.example",
                  source="https://www.shop.example")
    assert own.status_code == 200
    assert own.headers["Access-Control-Allow-Origin"] == "https://www.shop.example"
    same = amp_get(client, site["key"], "amp-same-origin-client-01", origin=None,
                   same_origin=True)
    assert same.status_code == 200 and same.json["phoneNumber"] in numbers(3)
    assert "Access-Control-Allow-Origin" not in same.headers
    assert same.headers["AMP-Access-Control-Allow-Source-Origin"] == SOURCE


@pytest.mark.parametrize(("origin", "source", "same_origin"), [
    (CACHE, "https://evil.example", False),  # a foreign page served from the cache
    ("https://evil.example", SOURCE, False),  # a foreign page claiming the source
    (CACHE, None, False),  # a cache without the source origin
    (None, SOURCE, False),  # no Origin, no AMP-Same-Origin: not from the AMP runtime
    (None, "https://evil.example", True),
])
def test_foreign_origins_are_refused_without_a_grant_or_a_lease(admin, client, site, pool,
                                                               origin, source, same_origin):
    response = amp_get(client, site["key"], origin=origin, source=source,
                       same_origin=same_origin)
    assert response.status_code == 403
    assert response.json["error"]["code"] == "foreign_origin"
    assert not set(GRANT_HEADERS) & set(response.headers.keys())
    live = admin.get(f"/v1/pools/{pool['id']}").json["live"]
    assert live is None or live["counters"].get("leases", 0) == 0


def test_a_site_without_domains_accepts_any_source_origin(admin, client):
    site = make_site(admin)
    make_pool(admin, site)
    response = amp_get(client, site["key"], source="https://anything.example")
    assert response.status_code == 200
    assert response.headers["AMP-Access-Control-Allow-Source-Origin"] == \
        "https://anything.example"
    own = amp_get(client, site["key"], "amp-own-origin-client-01",
                  origin="https://anything.example", source="https://anything.example")
    assert own.status_code == 200
    assert own.headers["Access-Control-Allow-Origin"] == "https://anything.example"


@pytest.mark.parametrize(("query", "status", "field"), [
    ("target=%2B18005550100&client_id=amp-abcdefgh", 422, "site"),
    ("site={key}&client_id=amp-abcdefgh", 422, "target"),
    ("site={key}&target=%2B18005550100", 422, "client_id"),
    ("site={key}&target=%2B18005550100&client_id=", 422, "client_id"),
    ("site={key}&target=%2B18005550100&client_id=a%20b%20c%20d", 422, "client_id"),
    ("site={key}&target=not-a-number&client_id=amp-abcdefgh", 422, "target"),
    ("site=nosuchsite&target=%2B18005550100&client_id=amp-abcdefgh", 404, None),
    ("site={key}&target=%2B18005550199&client_id=amp-abcdefgh", 404, None),
])
def test_bad_input_is_a_clear_4xx(client, site, pool, query, status, field):
    response = client.get("/v1/amp/number?" + query.format(key=site["key"])
                          + f"&__amp_source_origin={SOURCE}", headers={"Origin": CACHE})
    assert response.status_code == status, response.json
    error = response.json["error"]
    if field:
        assert field in error["fields"]
    else:
        assert error["code"] in {"unknown_site", "unknown_target"}


def test_an_unencoded_plus_in_the_target_is_read_as_plus(client, site, pool):
    response = amp_get(client, site["key"], target="+18005550100")  # arrives as a space
    assert response.status_code == 200 and response.json["phoneNumber"] in numbers(3)
