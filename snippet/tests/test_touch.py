"""The touch add-on (dni-touch.js): dni.js loads it once it shows a leased number, and a tap on
a swapped tel: link or a copy of a swapped number reaches the real service as a beacon and is
stored; anything else sends nothing. Loading rules against the fake service."""

from __future__ import annotations

import json
import time

import pytest
from dni_helpers import US_TARGET, wait_responses

pytestmark = pytest.mark.browser

LEASED = "+18005550123"
PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Touch page</title>{{snippet}}</head>
<body>
<header><a id="call" href="tel:+18005550100">Call (800) 555-0100</a></header>
<p>Billing: <a id="billing" href="tel:+18005550199">(800) 555-0199</a></p>
<p id="body">Open 24/7. Speak to us on <strong id="num">800-555-0100</strong>.</p>
<p><a id="stopped" href="tel:+18005550100">Call us</a></p>
<script>
  // A headless browser has no dialler: keep tel: links from navigating (after the snippet's
  // listener on document has seen the click). A page's own handler that stops the click.
  addEventListener('click', function (e) { e.preventDefault(); });
  document.getElementById('stopped').addEventListener('click', function (e) {
    e.preventDefault();
    e.stopPropagation();
  });
</script>
</body>
</html>"""


def watch_requests(page):
    """page.beacons: (url, body) of each touch sent; page.urls: every URL asked for, in order."""
    page.beacons, page.urls = [], []
    page.on("request", lambda r: r.url.endswith("/touch")
            and page.beacons.append((r.url, json.loads(r.post_data))))
    page.on("request", lambda r: page.urls.append(r.url))


def add_on_ready(page):
    """Wait until the add-on has run (its listeners are on, its numbers learnt)."""
    page.wait_for_function(
        "performance.getEntriesByType('resource').some(e => e.name.endsWith('/dni-touch.js'))")
    page.wait_for_timeout(100)  # fetched is not yet run: let it run


@pytest.fixture
def touched(live_service, pages, page):
    """A page on the live service with one swapped number and the add-on loaded."""
    site = live_service.create_site("Touch site", domains=["127.0.0.1"])
    pool = live_service.create_pool(site, name="Touch pool", target=US_TARGET, numbers=[LEASED])
    pages.configure(live_service.url, site["key"])
    watch_requests(page)
    page.goto(pages.add("touch.html", PAGE))
    wait_responses(page)
    assert page.get_attribute("#call", "href") == f"tel:{LEASED}"
    add_on_ready(page)
    page.stored = lambda: live_service.app.extensions["dni"].pools.touches(pool["id"], LEASED, 0)
    page.site = site
    return page


def until(check, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while not (value := check()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return value


def session_id(page) -> str:
    return page.evaluate("JSON.parse(Object.values(localStorage)[0]).session_id")


def select(page, element_id: str) -> None:
    page.evaluate("""id => {
        const range = document.createRange();
        range.selectNodeContents(document.getElementById(id));
        getSelection().removeAllRanges();
        getSelection().addRange(range);
    }""", element_id)


def test_the_add_on_loads_once_after_the_answer_from_the_snippets_base(touched, live_service):
    page = touched
    loads = [u for u in page.urls if u.endswith("/dni-touch.js")]
    assert loads == [f"{live_service.url}/dni-touch.js"]
    lease = next(i for i, u in enumerate(page.urls) if u.endswith("/v1/sessions"))
    assert page.urls.index(loads[0]) > lease
    page.evaluate("history.pushState({}, '', '/touch.html?next')")  # a page view, a renewal
    page.evaluate("dni('rescan')")
    wait_responses(page, 2)
    assert [u for u in page.urls if u.endswith("/dni-touch.js")] == loads


def test_a_tap_on_a_swapped_tel_link_is_stored_and_other_clicks_send_nothing(touched):
    page = touched
    page.click("#billing")  # a tel: link the snippet did not swap
    page.click("#body")  # no link at all
    page.click("#call")
    stored = until(page.stored)
    assert [(s, kind) for s, kind, _ in stored] == [(session_id(page), "click")]
    [(url, body)] = page.beacons  # the first two clicks sent nothing
    assert url.endswith(f"/v1/sessions/{session_id(page)}/touch")
    assert body == {"site": page.site["key"], "number": LEASED, "kind": "click"}


def test_a_tap_the_page_stops_is_still_reported(touched):
    """The add-on listens in the capture phase: a page's stopPropagation() does not hide it."""
    page = touched
    page.click("#stopped")
    assert until(lambda: page.beacons) and page.beacons[0][1]["kind"] == "click"
    assert until(page.stored)


def test_a_copy_of_text_showing_the_swapped_number_is_stored(touched):
    page = touched
    select(page, "body")
    page.keyboard.press("Control+C")
    stored = until(page.stored)
    assert [(s, kind) for s, kind, _ in stored] == [(session_id(page), "copy")]
    [(_, body)] = page.beacons
    assert body == {"site": page.site["key"], "number": LEASED, "kind": "copy"}


def test_a_copy_without_a_swapped_number_sends_nothing(touched):
    page = touched
    select(page, "billing")
    page.keyboard.press("Control+C")
    page.click("#call")  # then a tap that does count: the copy went first, if at all
    until(page.stored)
    assert [body["kind"] for _, body in page.beacons] == ["click"]


# -- when the add-on loads (fake service) -------------------------------------------------


def test_nothing_swapped_loads_no_add_on(fake, pages, page):
    """A fallback answer (the page's own number) swaps nothing: dni-touch.js is not fetched."""
    fake.fallback = "pool_exhausted"
    page.goto(pages.page("plain.html"))
    wait_responses(page)
    page.wait_for_timeout(300)
    assert page.text_content("#num") == "800-555-0100"
    assert fake.scripts == ["/dni.js"]


NO_DIALLER = "addEventListener('click', function (e) { e.preventDefault(); });"


def tap_when_loaded(fake, page) -> None:
    """Wait for the add-on (fetched, then run), then tap the swapped tel: link."""
    assert until(lambda: fake.scripts == ["/dni.js", "/dni-touch.js"])
    page.wait_for_timeout(100)
    page.click("#call")


def test_a_browser_without_send_beacon_sends_nothing_and_throws_nothing(fake, pages, page):
    page.add_init_script(NO_DIALLER + "delete Navigator.prototype.sendBeacon;")
    page.goto(pages.page("plain.html"))
    wait_responses(page)
    assert page.text_content("#num") == "800-555-0123"
    tap_when_loaded(fake, page)
    page.wait_for_timeout(300)
    assert [c.path for c in fake.posts()] == ["/v1/sessions"]  # page fixture: no errors


def test_a_tap_names_the_session_its_answer_gave(fake, pages, page):
    """The fake's entries carry session_id as the real service's do: the beacon goes to that
    session, with the number as the service sent it."""
    page.add_init_script(NO_DIALLER)
    page.goto(pages.page("plain.html"))
    wait_responses(page)
    tap_when_loaded(fake, page)
    touch = until(lambda: [c for c in fake.posts() if c.path.endswith("/touch")])
    [sid] = fake.sessions
    assert [(c.path, c.body) for c in touch] == [
        (f"/v1/sessions/{sid}/touch", {"site": fake.site, "number": "+18005550123",
                                       "kind": "click"})]
