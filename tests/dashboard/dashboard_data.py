"""Dashboard test data and helpers: the blueprint on a test app, a small data set, logins."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

from attribution.models import Call, PageView, StaticNumber, Visit
from attribution.zones import local_day
from dni_server.extensions import db
from factories import ADMIN_TOKEN, make_pool, make_site, numbers
from pools.models import Lease, PoolExhaustion

ZONE = "America/New_York"
XSS = "<script>alert(1)</script>"
XSS_ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"


def with_dashboard(app):
    """The app with the dashboard registered (until the factory registers it itself)."""
    if "dashboard" not in app.blueprints:
        from dni_server import dashboard

        app.register_blueprint(dashboard.bp)
    return app


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


def ms(text: str) -> int:
    return int(at(text).timestamp() * 1000)


def seed(app, admin) -> dict:
    """Three calls (publishers Acme, Beta, none) in May 2026, one with XSS in every field,
    on a New York site (UTC-4 in May)."""
    site = make_site(admin, timezone=ZONE)
    acme_pool = make_pool(admin, site, name="Acme pool", numbers=numbers(3), publisher="Acme")
    beta_pool = make_pool(admin, site, name="Beta pool", numbers=numbers(2, start=150),
                          publisher="Beta", target="+18005550111")
    ids = {}
    with app.app_context():
        db.session.add(Visit(
            session_id="s-xss", site_id=site["id"], visitor_id="v1",
            created_at=at("2026-05-04T13:55:00"), local_day=local_day(at("2026-05-04T13:55:00"), ZONE),
            source="google", medium="cpc", utm_campaign=XSS, utm_source="google",
            landing_url=f"https://shop.example/?q={XSS}", referrer=f"https://ref.example/{XSS}"))
        db.session.add_all([
            PageView(session_id="s-xss", url=f"https://shop.example/?q={XSS}", path="/",
                     viewed_at_ms=ms("2026-05-04T13:55:00")),
            PageView(session_id="s-xss", url="https://shop.example/contact", path="/contact",
                     viewed_at_ms=ms("2026-05-04T13:58:00"))])
        rows = [
            ("c1", "Acme", "google", "cpc", "2026-05-04T14:00:00", True, 120, XSS, {
                "session_id": "s-xss", "pool_id": acme_pool["id"], "utm_campaign": XSS,
                "landing_url": f"https://shop.example/?q={XSS}", "method": "session",
                "recording_url": "https://rec.example/c1.mp3", "caller_city": "Boston",
                "caller_region": "MA", "caller_country": "US",
                "explanation": {"steps": ["number belongs to pool 1 (Acme pool)",
                                          "chosen: the lease covering the call"],
                                "leases": [{"session_id": "s-xss",
                                            "started_at_ms": ms("2026-05-04T13:55:00"),
                                            "last_renewed_at_ms": ms("2026-05-04T13:59:00"),
                                            "covers_until_ms": ms("2026-05-04T14:04:00"),
                                            "ended_at_ms": None, "end_reason": None,
                                            "verdict": "covers the call: chosen"}]}}),
            ("c2", "Beta", "bing", "cpc", "2026-05-05T10:00:00", False, 8, "beta-spring", {
                "pool_id": beta_pool["id"], "method": "session_expired",
                "recording_url": "javascript:alert(3)",
                "qualification_failures": ["too_short"], "repeat_caller": True}),
            ("c3", None, "radio", "offline", "2026-05-10T15:00:00", True, 300, None, {
                "method": "static", "label": "WXYZ 7am"}),
        ]
        for cid, publisher, source, medium, started, qualified, duration, campaign, extra in rows:
            moment = at(started)
            extra.setdefault("explanation", {"steps": [f"{cid} matched"]})
            call = Call(
                provider="api", provider_call_id=cid, from_number="+14155550101",
                from_valid=True, to_number=numbers(1)[0], started_at=moment,
                local_day=local_day(moment, ZONE), answered_at=moment, status="completed",
                duration=duration, qualified=qualified, revenue=Decimal("40"),
                payout=Decimal("10"), source=source, medium=medium, site_id=site["id"],
                campaign=campaign, publisher=publisher, **extra)
            db.session.add(call)
            db.session.flush()
            ids[cid] = call.id
        db.session.add(StaticNumber(number="+16505550199", destination="+12125550199",
                                    source="radio", medium="offline", campaign=XSS,
                                    label="WXYZ 7am"))
        # Two overlapping leases and one exhaustion in Acme's pool on May 4.
        db.session.add_all([
            Lease(pool_id=acme_pool["id"], number=numbers(1)[0], session_id="s-xss",
                  started_at_ms=ms("2026-05-04T13:55:00"),
                  last_renewed_at_ms=ms("2026-05-04T13:59:00"),
                  expires_at_ms=ms("2026-05-04T14:04:00")),
            Lease(pool_id=acme_pool["id"], number=numbers(2)[1], session_id="s-2",
                  started_at_ms=ms("2026-05-04T13:57:00"),
                  last_renewed_at_ms=ms("2026-05-04T13:57:00"),
                  expires_at_ms=ms("2026-05-04T14:02:00")),
            PoolExhaustion(pool_id=acme_pool["id"], session_id="s-3",
                           at_ms=ms("2026-05-04T13:58:00"))])
        db.session.commit()
    return {"site": site, "acme_pool": acme_pool, "beta_pool": beta_pool, "calls": ids}




def make_token(admin, scope: str, publisher: str | None = None) -> str:
    response = admin.post("/v1/tokens", json={"name": f"{scope} {publisher}", "scope": scope,
                                               "publisher": publisher})
    assert response.status_code == 201, response.get_json()
    return response.get_json()["token"]


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no CSRF token in the form"
    return found.group(1)


def log_in(client, token: str = ADMIN_TOKEN):
    """Log the test client in through the form, as a person would."""
    page = client.get("/dashboard/login")
    response = client.post("/dashboard/login", data={"token": token,
                                                     "csrf_token": csrf_of(page.text)})
    assert response.status_code == 302, response.text
    return client
