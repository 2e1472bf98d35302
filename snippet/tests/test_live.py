"""Happy paths against the real service: the Flask app on its own port, real Redis and SQL.

The snippet is served by the app's own /dni.js route; pages come from another origin.
"""

from __future__ import annotations

import json
import threading

import pytest
from dni_helpers import (
    TRACK_BEATS,
    UK_TARGET,
    US_TARGET,
    assert_bot_leaves_the_page,
    back_from_the_cache,
    mismatches,
    stored,
    wait_responses,
)
from werkzeug.serving import make_server

pytestmark = pytest.mark.browser



class Live:
    """The running service with one site; ``us``/``uk`` make its pools."""

    def __init__(self, service, pages):
        self.service = service
        self.pages = pages
        self.site = service.create_site("Snippet site", domains=["127.0.0.1"])
        self.key = self.site["key"]
        pages.configure(service.url, self.key)

    def pool(self, target: str, numbers: list[str], **fields) -> dict:
        return self.service.create_pool(self.site, name=f"Pool {target}", target=target,
                                        numbers=numbers, **fields)

    def admin_get(self, path: str) -> dict:
        response = self.service.app.test_client().get(
            path, headers={"Authorization": f"Bearer {self.service.admin_token}"})
        assert response.status_code == 200, response.get_json()
        return response.get_json()

    def visit(self, session_id: str) -> dict:
        """The session as the service recorded it (pages viewed, leases)."""
        self.service.record()
        return self.admin_get(f"/v1/sessions/{session_id}")


@pytest.fixture
def live(live_service, pages):
    return Live(live_service, pages)


def session_of(page) -> dict:
    [value] = stored(page)["local"].values()
    return json.loads(value)


def sent(page, fragment: str) -> list[dict]:
    """Bodies of the requests this page sent whose URL contains fragment (see track())."""
    return [json.loads(body) for url, body in page.sent if fragment in url]


def track(page):
    page.sent = []
    page.on("request", lambda r: r.method == "POST" and page.sent.append((r.url, r.post_data)))
    page.preflights = []
    page.on("request", lambda r: r.method == "OPTIONS" and page.preflights.append(r.url))
    return page


def test_every_format_swaps_with_numbers_from_the_real_service(live, pages, page):
    """Two pools, two targets: every layout on the formats page swaps, nothing else does."""
    live.pool(US_TARGET, ["+18005550123"])
    live.pool(UK_TARGET, ["+442079460123"])
    track(page)
    page.goto(pages.page("formats.html"))
    wait_responses(page)
    assert mismatches(page) == []
    assert page.preflights == []  # text/plain JSON: CORS-simple, no preflight


def test_second_page_keeps_the_number_and_the_session(live, pages, page):
    """Page two shows the same number from the same session: one lease, two page views."""
    live.pool(US_TARGET, ["+18005550123", "+18005550124", "+18005550125"])
    track(page)
    page.goto(pages.page("plain.html"))
    wait_responses(page)
    first = session_of(page)
    shown = page.text_content("#num")
    assert shown != "800-555-0100"
    page.click("#next")
    page.wait_for_url("**/other.html")
    wait_responses(page)
    second = session_of(page)
    assert second["session_id"] == first["session_id"]
    assert second["visitor_id"] == first["visitor_id"]
    assert second["numbers"][0]["number"] == first["numbers"][0]["number"]
    assert page.text_content("#num").endswith(shown[-8:] + ".")
    assert sent(page, "/v1/sessions")[-1]["session_id"] == first["session_id"]
    visit = live.visit(first["session_id"])
    assert len(visit["leases"]) == 1
    assert [p["path"] for p in visit["pages"]] == ["/plain.html", "/other.html"]


def test_spa_route_change_is_recorded_as_a_page_view(live, pages, page):
    """pushState: new content swaps and the service records the new page."""
    live.pool(US_TARGET, ["+18005550123"])
    page.goto(pages.page("spa.html"))
    wait_responses(page)
    page.evaluate("go('/contact')")
    page.wait_for_function("document.getElementById('contact').textContent.includes('0123')")
    wait_responses(page, 2)
    assert page.get_attribute("#tel", "href") == "tel:+18005550123"
    visit = live.visit(session_of(page)["session_id"])
    assert [p["path"] for p in visit["pages"]] == ["/spa.html", "/contact"]


def test_bot_gets_the_fallback_and_the_page_is_unchanged(live, pages, make_page):
    """The service spots a crawler's user agent: fallback (the target), page untouched."""
    live.pool(US_TARGET, ["+18005550123"])
    assert_bot_leaves_the_page(make_page, pages)


def test_consent_denied_leases_for_the_page_only(live, pages, page):
    """data-consent=required and no consent: swapped, nothing stored, a new session per page."""
    live.pool(US_TARGET, ["+18005550123", "+18005550124"])
    pages.configure(live.service.url, live.key, attrs='data-consent="required"')
    track(page)
    page.goto(pages.page("plain.html"))
    wait_responses(page)
    assert page.text_content("#num") in ("800-555-0123", "800-555-0124")
    assert stored(page) == {"local": {}, "cookie": ""}
    page.goto(pages.page("other.html"))
    wait_responses(page)
    assert stored(page) == {"local": {}, "cookie": ""}
    assert all("session_id" not in b and "visitor_id" not in b for b in sent(page, "/v1/sessions"))


def test_ad_ids_and_consent_given_later_reach_the_recorded_visit(live, pages, page):
    """data-consent=required: nothing read at first; dni('consent', true) sends the cookies
    with a renewal, and the recorder sets them on the visit."""
    live.pool(US_TARGET, ["+18005550123"])
    live.pages.configure(live.service.url, live.key, attrs='data-consent="required"')
    page.context.add_cookies([
        {"name": name, "value": value, "url": pages.url} for name, value in [
            ("_ga", "GA1.1.1234567890.1700000000"),
            ("_ga_ABC123", "GS2.1.s1700000123$o4$g1$t1700000456$j60$l0$h0"),
            ("_fbp", "fb.1.1700000000000.1234567890")]])
    track(page)
    page.goto(pages.page("plain.html"))
    wait_responses(page)
    assert sent(page, "/v1/sessions")[0]["consent"] is False
    page.evaluate("dni('consent', true)")
    wait_responses(page, 2)
    [(url, _)] = [(u, b) for u, b in page.sent if u.endswith("/heartbeat")]
    visit = live.visit(url.split("/")[-2])
    assert (visit["ga_client_id"], visit["ga_session_id"], visit["fbp"], visit["ad_consent"]) \
        == ("1234567890.1700000000", "1700000123", "fb.1.1700000000000.1234567890", True)


def test_back_forward_cache_restore_renews_with_the_service(live, pages, page):
    """Back to a cached page: a renewal reaches the service at once and is answered."""
    live.pool(US_TARGET, ["+18005550123"])
    page.add_init_script(TRACK_BEATS)
    page.goto(pages.page("plain.html"))
    wait_responses(page)
    page.click("#next")
    page.wait_for_url("**/other.html")
    wait_responses(page)
    assert back_from_the_cache(page) == {"status": 200}
    assert page.text_content("#num") == "800-555-0123"


def test_restore_and_rescan_with_the_real_service(live, pages, page):
    """dni('restore') brings back the page's own numbers; dni('rescan') swaps again."""
    live.pool(US_TARGET, ["+18005550123"])
    page.goto(pages.page("plain.html"))
    wait_responses(page)
    assert page.text_content("#num") == "800-555-0123"
    page.evaluate("dni('restore')")
    assert page.text_content("#num") == "800-555-0100"
    assert page.get_attribute("#call", "href") == "tel:+18005550100"
    page.evaluate("dni('rescan')")
    assert page.text_content("#call") == "Call (800) 555-0123"


def test_demo_page_swaps_its_number(make_app, make_page):
    """/demo, on a service seeded with the demo site, shows a leased number in each format."""
    app = make_app(DNI_DEMO="true", DNI_REDIS_TIMEOUT_MS="5000")  # see live_service
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        tab = make_page()
        tab.goto(f"http://127.0.0.1:{server.server_port}/demo")
        tab.wait_for_function("document.getElementById('status').textContent.startsWith('Leased')")
        text = tab.text_content("main")
        assert "(650) 555-01" in text and "(800) 555-0100" not in text
        assert "Order #58123" in text and "$89" in text
        assert tab.get_attribute("a.call", "href").startswith("tel:+1650555")
    finally:
        server.shutdown()
        thread.join(5)
