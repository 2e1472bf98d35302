"""The visit: leasing, resuming, campaigns, consent, renewals, faults. Against the fake service."""

from __future__ import annotations

import json
import socket
import time

import pytest
from dni_helpers import (
    STUB,
    TRACK_BEATS,
    US_TARGET,
    assert_bot_leaves_the_page,
    back_from_the_cache,
    set_visibility,
    stored,
    wait_responses,
)

pytestmark = pytest.mark.browser



def count_answers(page) -> None:
    """Count requests sent (a fetch wrapper) and answers applied (onNumber): with page.clock
    installed, performance marks are stubbed out, so wait_responses cannot see them."""
    page.add_init_script(STUB + """
        window.__answers = 0;
        window.__sent = 0;
        dni('onNumber', function () { __answers++; });
        const realFetch = window.fetch;
        window.fetch = function () { __sent++; return realFetch.apply(this, arguments); };
    """)


def wait_answers(page, count: int) -> None:
    page.wait_for_function(f"window.__answers >= {count}")


def settle(page) -> None:
    """Wait until every request sent has been answered. Fake time must not move while one is
    out: it would fire the request's 1.5 s timeout before the real answer lands."""
    page.wait_for_function("window.__answers === window.__sent")


def freeze_clock(page) -> None:
    """Fake the page's timers and stop time: it moves only when the test says (run_for)."""
    now = time.time()
    page.clock.install(time=now)
    page.clock.pause_at(now + 1)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- leasing and resuming ------------------------------------------------------------------


def test_next_page_shows_the_stored_number_at_once_and_resumes_the_session(fake, pages, page):
    """Page two swaps before the service answers, and resumes the session: no second lease."""
    page.goto(pages.page("plain.html"))
    wait_responses(page)
    first = fake.posts("lease")[0]
    answer_session = next(iter(fake.sessions))
    fake.delay = 0.6
    page.goto(pages.page("other.html"))
    # Swapped from storage while the service is still "thinking".
    how = page.wait_for_function("""() => {
        const swapped = document.getElementById('num').textContent.includes('0123');
        const answered = performance.getEntriesByName('dni:response').length > 0;
        return answered ? 'after the answer' : swapped && 'before the answer';
    }""").json_value()
    assert how == "before the answer"
    wait_responses(page)
    assert page.text_content("#num") == "Questions? Call 1-800-555-0123."
    second = fake.posts("lease")[-1]
    assert "session_id" not in first.body and "visitor_id" not in first.body
    assert second.body["session_id"] == answer_session
    assert second.body["visitor_id"].startswith("v_")
    assert fake.leases == 1


def test_new_campaign_parameters_start_a_new_session(fake, pages, page):
    """New utm/click ids start a new session for the same visitor; none resume it."""
    page.goto(pages.page("plain.html") + "?utm_source=news&utm_medium=email")
    wait_responses(page)
    page.goto(pages.page("other.html") + "?gclid=xyz")
    wait_responses(page)
    page.goto(pages.page("plain.html"))
    wait_responses(page)
    one, two, three = (c.body for c in fake.posts("lease"))
    assert "session_id" not in two and two["visitor_id"] == three["visitor_id"]
    assert three["session_id"] != one.get("session_id")
    assert fake.leases == 2
    # The same campaign again (say, a reload of the landing page) resumes.
    page.goto(pages.page("other.html") + "?gclid=xyz")
    wait_responses(page)
    assert fake.posts("lease")[-1].body["session_id"] == three["session_id"]


def test_a_stale_stored_visit_starts_a_new_session(fake, pages, page):
    """A visit idle for 30 minutes is over: a new session, the same visitor."""
    page.goto(pages.page("plain.html"))
    wait_responses(page)
    page.evaluate("""() => {
        const k = Object.keys(localStorage).find(k => k.startsWith('dni:'));
        const v = JSON.parse(localStorage.getItem(k));
        v.t -= 31 * 60 * 1000;
        localStorage.setItem(k, JSON.stringify(v));
    }""")
    page.reload()
    wait_responses(page)
    body = fake.posts("lease")[-1].body
    assert "session_id" not in body and body["visitor_id"].startswith("v_")


# -- consent -------------------------------------------------------------------------------


def test_consent_required_and_not_given_writes_nothing_and_leases_per_page(fake, pages, page):
    """data-consent=required: the page swaps, but no storage or cookie is written."""
    pages.configure(fake.url, fake.site, attrs='data-consent="required"')
    page.goto(pages.page("plain.html"))
    wait_responses(page)
    assert page.text_content("#num") == "800-555-0123"
    assert stored(page) == {"local": {}, "cookie": ""}
    page.goto(pages.page("other.html"))
    wait_responses(page)
    second = fake.posts("lease")[-1].body
    assert "session_id" not in second and "visitor_id" not in second
    assert stored(page) == {"local": {}, "cookie": ""}
    assert fake.leases == 2


def test_consent_given_through_the_queue_keeps_the_visit(fake, pages, page):
    """dni('consent', true) queued before load: the visit is stored and resumed."""
    pages.configure(fake.url, fake.site, attrs='data-consent="required"')
    page.add_init_script(STUB + "dni('consent', true);")
    page.goto(pages.page("plain.html"))
    wait_responses(page)
    [(key, value)] = stored(page)["local"].items()
    assert key == f"dni:{fake.site}" and json.loads(value)["session_id"]
    page.goto(pages.page("other.html"))
    wait_responses(page)
    assert fake.posts("lease")[-1].body["session_id"] == json.loads(value)["session_id"]


def test_consent_withdrawn_clears_storage(fake, pages, page):
    """dni('consent', false) removes what was stored and stores nothing more."""
    page.goto(pages.page("plain.html"))
    wait_responses(page)
    assert stored(page)["local"]
    page.evaluate("dni('consent', false)")
    assert stored(page)["local"] == {}
    set_visibility(page, "visible")  # a renewal: its answer must not be stored either
    wait_responses(page, 2)
    assert stored(page)["local"] == {}


def test_ga_client_id_is_sent_only_with_consent(fake, pages, page):
    """The _ga cookie is read only when storage is allowed."""
    pages.configure(fake.url, fake.site, attrs='data-consent="required"')
    page.context.add_cookies([{"name": "_ga", "value": "GA1.2.987.654", "url": pages.url}])
    page.goto(pages.page("plain.html"))
    wait_responses(page)
    assert "ga_client_id" not in fake.posts("lease")[0].body


# -- the service's answers and faults -----------------------------------------------------


def test_bot_answer_leaves_the_page_alone(fake, pages, make_page):
    """A crawler gets the fallback (here the target itself): the page is unchanged."""
    assert_bot_leaves_the_page(make_page, pages)


def test_fallback_number_is_shown_in_the_pages_format(fake, pages, page):
    """An exhausted pool answers its fallback number: shown, formatted like the page."""
    fake.fallback = "pool_exhausted"
    fake.fallback_numbers = {US_TARGET: "+18005550999"}
    page.goto(pages.page("plain.html"))
    wait_responses(page)
    assert page.text_content("#num") == "800-555-0999"
    assert page.get_attribute("#call", "href") == "tel:+18005550999"


def test_service_down_leaves_the_page_alone(fake, pages, page):
    """Nothing listens on the API port: the page keeps its numbers, no error escapes."""
    pages.configure(pages.url, fake.site, api=f"http://127.0.0.1:{closed_port()}")
    page.goto(pages.page("plain.html"))
    page.wait_for_timeout(300)
    assert page.text_content("#num") == "800-555-0100"
    assert page.get_attribute("#call", "href") == "tel:+18005550100"
    assert page.evaluate("typeof dni") == "function"
    page.evaluate("dni('restore'); dni('rescan')")


def test_data_api_sends_the_calls_to_another_origin(fake, pages, page):
    """Script served from one origin, data-api naming the service: the calls go there."""
    pages.configure(pages.url, fake.site, api=fake.url + "/")
    page.goto(pages.page("plain.html"))
    wait_responses(page)
    assert page.text_content("#num") == "800-555-0123"
    assert [c.path for c in fake.posts()] == ["/v1/sessions"]


def test_service_errors_leave_the_page_alone(fake, pages, page):
    """An unknown site key (404 JSON error): no swap, no retry loop."""
    pages.configure(fake.url, "no-such-site")
    page.goto(pages.page("plain.html"))
    fake.wait_for(1, "lease")
    page.wait_for_timeout(300)
    assert page.text_content("#num") == "800-555-0100"
    assert len(fake.posts()) == 1


def test_slow_service_is_abandoned_and_the_page_keeps_its_numbers(fake, pages, page):
    """No answer within 1.5 s: the request is aborted and a late answer is never applied."""
    fake.delay = 2.0
    page.goto(pages.page("plain.html"))
    fake.wait_for(1, "lease")
    time.sleep(2.3)  # past the fake's answer
    assert page.text_content("#num") == "800-555-0100"
    assert page.evaluate("performance.getEntriesByName('dni:response').length") == 0


def test_without_fetch_and_abort_controller_xhr_does_the_same(fake, pages, page):
    """Older browsers (no AbortController): XMLHttpRequest leases, renews and swaps."""
    page.add_init_script("delete window.AbortController; window.fetch = undefined;")
    page.goto(pages.page("plain.html"))
    wait_responses(page)
    assert page.text_content("#num") == "800-555-0123"
    fake.swap_on_heartbeat = {US_TARGET: "+18005550177"}
    set_visibility(page, "visible")
    wait_responses(page, 2)
    assert page.text_content("#num") == "800-555-0177"
    [lease, beat] = fake.posts()
    assert lease.headers["Content-Type"].startswith("text/plain") and beat.body == {"site": fake.site}
    assert fake.preflights() == []


def test_xhr_gives_up_on_a_slow_service_too(fake, pages, page):
    """The XMLHttpRequest path is aborted after 1.5 s like fetch."""
    page.add_init_script("delete window.AbortController;")
    fake.delay = 2.0
    page.goto(pages.page("plain.html"))
    fake.wait_for(1, "lease")
    time.sleep(2.3)
    assert page.text_content("#num") == "800-555-0100"
    assert page.evaluate("performance.getEntriesByName('dni:response').length") == 0


# -- renewals ------------------------------------------------------------------------------


def test_renewal_with_a_new_number_swaps_to_it(fake, pages, page):
    """A renewal answering another number swaps the page to the new one."""
    page.goto(pages.page("plain.html"))
    wait_responses(page)
    fake.swap_on_heartbeat = {US_TARGET: "+18005550177"}
    set_visibility(page, "visible")
    wait_responses(page, 2)
    assert page.text_content("#num") == "800-555-0177"
    assert page.get_attribute("#call", "href") == "tel:+18005550177"


def test_tab_shown_again_renews_at_once_and_hiding_renews_once(fake, pages, page):
    """Hiding sends one renewal; showing the tab again sends another at once."""
    page.goto(pages.page("plain.html"))
    wait_responses(page)
    set_visibility(page, "hidden")
    fake.wait_for(1, "heartbeat")
    wait_responses(page, 2)
    set_visibility(page, "visible")
    beats = fake.wait_for(2, "heartbeat")
    session = next(iter(fake.sessions))
    assert [b.path for b in beats] == [f"/v1/sessions/{session}/heartbeat"] * 2
    assert all(b.body == {"site": fake.site} for b in beats)  # no page view


def test_lease_lapsing_unconfirmed_restores_the_page(fake, pages, page):
    """When a lease expires before any renewal confirms it, the page's numbers come back."""
    fake.lease_seconds = 2.0
    page.goto(pages.page("plain.html"))
    wait_responses(page)
    assert page.text_content("#num") == "800-555-0123"
    fake.delay = 5  # renewals (if any) can no longer confirm it
    page.wait_for_function("document.getElementById('num').textContent === '800-555-0100'")
    assert page.get_attribute("#call", "href") == "tel:+18005550100"


def test_unknown_session_on_renewal_leases_a_new_one(fake, pages, page):
    """A renewal refused with 404 (the service lost the session) starts a fresh session."""
    page.goto(pages.page("plain.html"))
    wait_responses(page)
    fake.heartbeat_status = 404
    set_visibility(page, "visible")
    wait_responses(page, 2)
    second = fake.posts("lease")[1].body
    assert "session_id" not in second and second["visitor_id"].startswith("v_")
    assert page.text_content("#num") == "800-555-0124"


def test_renewal_finding_the_lease_lapsed_leases_again_for_the_session(fake, pages, page):
    """A tab back after a long sleep: the renewal says 'expired', so the session leases again."""
    page.goto(pages.page("plain.html"))
    wait_responses(page)
    session = next(iter(fake.sessions))
    fake.expire_on_heartbeat = True
    set_visibility(page, "visible")
    wait_responses(page, 3)
    assert [c.path.rsplit("/", 1)[-1] for c in fake.posts()] == ["sessions", "heartbeat",
                                                                  "sessions"]
    assert fake.posts("lease")[1].body["session_id"] == session
    assert page.text_content("#num") == "800-555-0123"
    page.wait_for_timeout(200)
    assert len(fake.posts()) == 3  # and no loop


def test_renews_every_renew_in_seconds_while_visible(fake, pages, page):
    """Renewals follow renew_in, floored at 5 s (the fake asks for 1)."""
    fake.renew_in = 1
    count_answers(page)
    freeze_clock(page)
    page.goto(pages.page("plain.html"))
    wait_answers(page, 1)
    page.clock.run_for(4900)
    page.wait_for_timeout(100)
    assert fake.posts("heartbeat") == []
    page.clock.run_for(100)
    for i in range(1, 4):
        fake.wait_for(i, "heartbeat")
        settle(page)
        page.clock.run_for(5000)
    fake.wait_for(4, "heartbeat")
    assert len(fake.posts("heartbeat")) == 4


def test_nothing_leased_means_no_renewals(fake, pages, page):
    """renew_in 0 (only fallbacks, nothing leased): no renewal timer at all."""
    fake.fallback = "no_pool"
    fake.renew_in = 0
    count_answers(page)
    freeze_clock(page)
    page.goto(pages.page("plain.html"))
    wait_answers(page, 1)
    page.clock.run_for(15 * 60_000)
    page.wait_for_timeout(100)
    assert len(fake.posts()) == 1


def test_hidden_tab_stops_renewing_after_ten_minutes(fake, pages, page):
    """A hidden tab renews at the normal pace for ten minutes, then not at all."""
    fake.renew_in = 60
    count_answers(page)
    freeze_clock(page)
    page.goto(pages.page("plain.html"))
    wait_answers(page, 1)
    set_visibility(page, "hidden")
    counts = []
    for _ in range(14):
        settle(page)
        page.clock.run_for(60_000)
        settle(page)
        counts.append(len(fake.posts("heartbeat")))
    assert counts[-1] == counts[-4] and 9 <= counts[-1] <= 11
    set_visibility(page, "visible")
    fake.wait_for(counts[-1] + 1, "heartbeat")


# -- the back/forward cache, prerendering --------------------------------------------------


def test_page_restored_from_the_back_forward_cache_renews_at_once(fake, pages, page):
    """pageshow with persisted: the restored page sends a renewal straight away."""
    page.add_init_script(TRACK_BEATS)
    page.goto(pages.page("plain.html"))
    wait_responses(page)
    page.click("#next")
    page.wait_for_url("**/other.html")
    wait_responses(page)
    assert back_from_the_cache(page) == {"status": 200}
    assert page.text_content("#num") == "800-555-0123"


def test_no_lease_while_prerendering(fake, pages, page):
    """visibilityState 'prerender': nothing is sent until the page is shown."""
    page.add_init_script("""
        window.__vis = 'prerender';
        Object.defineProperty(document, 'visibilityState', {configurable: true, get: () => window.__vis});
    """)
    page.goto(pages.page("plain.html"))
    page.wait_for_timeout(300)
    assert fake.posts() == []
    page.evaluate("window.__vis = 'visible'; document.dispatchEvent(new Event('visibilitychange'))")
    wait_responses(page)
    assert page.text_content("#num") == "800-555-0123"
    assert len(fake.posts("lease")) == 1


# -- single-page apps ----------------------------------------------------------------------


def test_spa_route_change_swaps_new_content_and_reports_the_page_view(fake, pages, page):
    """pushState renders new content (swapped) and sends a renewal with the new URL."""
    page.goto(pages.page("spa.html"))
    wait_responses(page)
    page.evaluate("go('/contact')")
    page.wait_for_function("document.getElementById('contact').textContent.includes('0123')")
    assert page.inner_html("#contact") == "Phone: <span>(800)</span> 555-0123"
    assert page.get_attribute("#tel", "href") == "tel:+18005550123"
    [view] = fake.wait_for(1, "heartbeat")
    assert view.body == {"site": fake.site, "url": pages.url + "/contact"}
    # replaceState to the same path (a state update, not a page view): nothing sent.
    page.evaluate("history.replaceState({x: 1}, '', '/contact#faq')")
    page.wait_for_timeout(200)
    assert len(fake.posts("heartbeat")) == 1
    page.go_back()
    page.wait_for_function("document.getElementById('home').textContent.includes('0123')")
    back = fake.wait_for(2, "heartbeat")[-1]
    assert back.body == {"site": fake.site, "url": pages.page("spa.html")}
    assert len(fake.posts("lease")) == 1
    assert fake.preflights() == []


def test_spa_route_with_a_new_campaign_starts_a_new_session(fake, pages, page):
    """A client-side route carrying new utm parameters leases for a new session."""
    page.goto(pages.page("spa.html"))
    wait_responses(page)
    page.evaluate("go('/contact?utm_source=chat')")
    wait_responses(page, 2)
    second = fake.posts("lease")[1].body
    assert "session_id" not in second and second["url"].endswith("/contact?utm_source=chat")
    assert page.text_content("#contact") == "Phone: (800) 555-0124"
