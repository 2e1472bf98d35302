"""Issue 14: a new session's visit is enriched by the recorder, not on the request path.

A visit recorded through the worker (device and location worked out there, from the raw
user agent and IP the lease event carries) equals, column by column, the visit the
request path used to build in full; and starting a session runs no SQL and no geo lookup.
"""

from __future__ import annotations

from dataclasses import asdict

import orjson
import pytest
from sqlalchemy import event, select
from sqlalchemy.engine import Engine

from attribution import devices, visits
from attribution.geo import GeoLocator, Location
from attribution.models import PageView, Visit
from attribution.recorder import Batch
from dni_server.extensions import db
from factories import (
    CHROME_UA,
    IPHONE_UA,
    make_pool,
    make_site,
    numbers,
    post_session,
    record,
)

ANDROID_UA = ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
              "Chrome/120.0.0.0 Mobile Safari/537.36")

# (url, referrer, user agent, client address, ad ids and consent as the snippet sends them)
REQUESTS = [
    ("https://shop.example/", "https://www.google.com/search?q=x", CHROME_UA,
     "198.51.100.23", {}),
    ("https://shop.example/offer?utm_source=google&utm_medium=cpc&utm_campaign=spring"
     "&utm_term=leak&gclid=Cj0KCQ_AbC-123", None, IPHONE_UA, "203.0.113.5",
     {"ga_client_id": "GA1.1.123456789.1700000000", "fbp": "fb.1.1700000000000.42",
      "consent": True}),
    ("https://shop.example/#/deal?fbclid=FB1&utm_campaign=x", "https://facebook.com/",
     ANDROID_UA, "2001:db8::7", {}),
    ("https://shop.example/p?msclkid=MS1&source=newsletter#token=secret", None, CHROME_UA,
     "::ffff:198.51.100.99", {"ga_client_id": "123.456", "consent": False}),
    ("https://shop.example/" + "a" * 3000, "https://other.example/x", IPHONE_UA,
     "::ffff:203.0.113.9", {}),
]


def todays_record(visit: visits.Visit, device: devices.Device, location: Location) -> dict:
    """Visit.record as it was before issue 14 (asdict, then the device and location)."""
    row = {k: v for k, v in asdict(visit).items() if k not in ("utm", "click_ids")}
    row.update(visit.utm)
    row.update(visit.click_ids)
    row.update(device_type=device.device_type, browser=device.browser,
               browser_version=device.browser_version, os=device.os,
               os_version=device.os_version)
    row.update(country=location.country, region=location.region, city=location.city)
    return row


def todays_payload(site, geo: GeoLocator, url, referrer, ua, ip, ads, session_id, visitor_id,
                   now_ms) -> str:
    """The visit payload the request path built before issue 14, in full."""
    visit = visits.capture(url, referrer, site.keyword_params)
    address = visits.client_ip(ip)
    row = todays_record(visit, devices.describe(ua), geo.locate(address))
    row.update(session_id=session_id, visitor_id=visitor_id, site_id=site.id,
               created_at_ms=now_ms, ip=address, user_agent=ua[: devices.MAX_UA_LENGTH] or None,
               click_id_at_ms=now_ms if visit.click_ids else None)
    row.update(visits.AdIds.parse(ads.get("consent"), ads.get("ga_client_id"),
                                  ads.get("ga_session_id"), ads.get("fbp")).columns())
    return orjson.dumps(row).decode()


@pytest.fixture
def geo_app(admin, make_app, geoip_db):
    # Built after the admin client's app: the recorder locates with the process's last one.
    return make_app(DNI_GEOIP_DB=geoip_db, DNI_SITE_CACHE_SECONDS="60")


@pytest.fixture
def geo_site(geo_app, admin):
    # The admin client's app shares the geo app's database and Redis.
    site = make_site(admin, keyword_params=["kw"])
    pool = make_pool(admin, site, numbers=numbers(10))
    return site, pool


def columns(row: Visit) -> dict:
    return {c.name: getattr(row, c.name) for c in Visit.__table__.columns if c.name != "session_id"}


def pages(session_id: str) -> list[tuple]:
    return [(p.url, p.path, p.viewed_at_ms) for p in db.session.scalars(
        select(PageView).where(PageView.session_id == session_id))]


@pytest.mark.parametrize("url, referrer, ua, ip, ads", REQUESTS)
def test_a_visit_recorded_by_the_worker_equals_the_one_recorded_before(
        geo_app, geo_site, geoip_db, url, referrer, ua, ip, ads):
    site, pool = geo_site
    services = geo_app.extensions["dni"]
    response = post_session(geo_app.test_client(), site["key"], url, ua=ua, ip=ip,
                            referrer=referrer, **ads)
    [entry] = response.get_json()["numbers"]
    assert entry["fallback"] is False
    sid = response.get_json()["session_id"]
    [(_, lease)] = [e for e in services.pools.events.peek(pool["id"]) if e[1]["s"] == sid]
    sent = orjson.loads(lease["p"])
    # The request path no longer works out the device or the location.
    assert not {"device_type", "browser", "os", "country", "city"} & set(sent)
    record(geo_app)

    # The same lease event as the request path built it before: a twin session.
    twin = "f" + sid[1:]
    geo = GeoLocator(geoip_db)
    payload = todays_payload(services.sessions.sites.get(site["key"]), geo, url, referrer, ua,
                             ip, ads, twin, sent["visitor_id"], sent["created_at_ms"])
    with geo_app.app_context():
        batch = Batch(pool["id"])
        batch.add(lease | {"s": twin, "p": payload})
        batch.write(db.session)
        db.session.commit()
        now, before = db.session.get(Visit, sid), db.session.get(Visit, twin)
        assert columns(now) == columns(before)
        assert pages(sid) == pages(twin) and len(pages(sid)) == 1
    geo.close()


def test_the_worker_locates_and_describes_the_visitor(geo_app, geo_site):
    site, _ = geo_site
    sid = post_session(geo_app.test_client(), site["key"], ua=IPHONE_UA,
                       ip="::ffff:198.51.100.23").json["session_id"]
    record(geo_app)
    with geo_app.app_context():
        visit = db.session.get(Visit, sid)
        assert (visit.device_type, visit.os, visit.browser) == ("mobile", "iOS", "Mobile Safari")
        assert (visit.country, visit.region, visit.city, visit.ip) == (
            "US", "MA", "Boston", "198.51.100.23")


def test_starting_a_session_runs_no_sql_and_no_geo_lookup(geo_app, geo_site, monkeypatch):
    site, _ = geo_site
    client = geo_app.test_client()
    post_session(client, site["key"])  # the site is read once, then cached
    statements, lookups = [], []

    def count_sql(conn, cursor, statement, *args):
        statements.append(statement)

    real_locate = GeoLocator.locate

    def count_locate(self, ip):
        lookups.append(ip)
        return real_locate(self, ip)

    monkeypatch.setattr(GeoLocator, "locate", count_locate)
    event.listen(Engine, "before_cursor_execute", count_sql)
    try:
        for i, ua in enumerate([CHROME_UA, IPHONE_UA, ANDROID_UA]):
            answer = post_session(client, site["key"], "https://shop.example/?gclid=G" + str(i),
                                  ua=ua, ip=f"198.51.100.{i + 1}")
            assert answer.json["numbers"][0]["fallback"] is False
    finally:
        event.remove(Engine, "before_cursor_execute", count_sql)
    assert statements == [] and lookups == []

    record(geo_app)  # the worker locates each new visit once
    assert sorted(lookups) == ["192.0.2.10", "198.51.100.1", "198.51.100.2", "198.51.100.3"]


def test_bots_still_get_no_lease_and_no_visit(geo_app, geo_site):
    site, pool = geo_site
    answer = post_session(geo_app.test_client(), site["key"],
                          ua="Googlebot/2.1 (+http://www.google.com/bot.html)")
    assert answer.json["numbers"][0]["reason"] == "bot"
    assert geo_app.extensions["dni"].pools.events.peek(pool["id"]) == []
