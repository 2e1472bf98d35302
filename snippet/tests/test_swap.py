"""The swap: every format of the target, tel: links, split spans, later content, restore."""

from __future__ import annotations

import pytest
from dni_helpers import STUB, UK_TARGET, mismatches, wait_responses

pytestmark = pytest.mark.browser


@pytest.fixture
def two_targets(fake):
    fake.pools[UK_TARGET] = ["+442079460123"]
    return fake


def test_every_format_is_swapped_in_the_pages_own_layout(two_targets, pages, page):
    """Each layout of both targets is swapped, keeping separators; nothing else changes."""
    page.goto(pages.page("formats.html"))
    wait_responses(page)
    assert mismatches(page) == []


def test_swap_keeps_the_markup_around_split_digits(two_targets, pages, page):
    """A number split across inline elements keeps each element's own digits."""
    page.goto(pages.page("formats.html"))
    wait_responses(page)
    assert page.inner_html("#s1") == "<span>(800)</span> 555-0123"
    assert page.inner_html("#s2") == ('<strong>Call <span class="a">800</span>-'
                                      '<span class="b">555</span>-<em>0123</em></strong> now')
    assert page.inner_html("#t7") == "<span>Call</span> <b>800</b>-555-0123"


def test_the_lease_request_is_cors_simple_json_with_the_visit(fake, pages, page):
    """One text/plain JSON POST (no preflight) with site, url, referrer; keepalive fetch."""
    page.add_init_script("""
        const real = window.fetch;
        window.__fetches = [];
        window.fetch = function (url, opts) {
            window.__fetches.push(opts);
            return real.apply(this, arguments);
        };
    """)
    page.context.add_cookies([{"name": "_ga", "value": "GA1.1.123.456", "url": pages.url}])
    url = pages.page("formats.html") + "?utm_source=news&gclid=abc"
    page.goto(url, referer="https://search.example/?q=plumber")
    wait_responses(page)
    [call] = fake.posts("lease")
    assert call.headers["Content-Type"].startswith("text/plain")
    assert call.body == {"site": fake.site, "url": url,
                         "referrer": "https://search.example/?q=plumber",
                         "ga_client_id": "GA1.1.123.456"}  # raw: the service parses it
    assert fake.preflights() == []
    opts = page.evaluate("window.__fetches[0]")
    assert opts["keepalive"] is True and opts["method"] == "POST"


def test_content_added_later_is_swapped(fake, pages, page):
    """Popups, lazy sections, text rewritten in place and tel: links set later all swap."""
    page.goto(pages.page("formats.html"))
    wait_responses(page)
    page.evaluate("""() => {
        document.body.insertAdjacentHTML('beforeend',
            '<div id="popup"><p>Questions? <span>(800)</span> 555-0100</p>'
            + '<a id="late" href="tel:+18005550100">Tap to call</a></div>');
        document.getElementById('n1').firstChild.data = 'Now 800.555.0100';
        document.getElementById('t5').setAttribute('href', 'tel:8005550100');
        const span = document.createElement('span');
        span.id = 'inline';
        span.textContent = ' or 800-555-0100';
        document.getElementById('n3').appendChild(span);
    }""")
    page.wait_for_function("document.getElementById('popup').textContent.includes('0123')")
    assert page.text_content("#popup p") == "Questions? (800) 555-0123"
    assert page.get_attribute("#late", "href") == "tel:+18005550123"
    page.wait_for_function("document.getElementById('n1').textContent === 'Now 800.555.0123'")
    page.wait_for_function("document.getElementById('t5').getAttribute('href') === 'tel:8005550123'")
    page.wait_for_function("document.getElementById('n3').textContent.endsWith('0123')")
    assert page.text_content("#n3") == "555-0100 or 800-555-0123"


def test_restore_puts_the_page_back_exactly_and_rescan_swaps_again(two_targets, pages, page):
    """dni('restore') undoes every change, text and href; dni('rescan') swaps again."""
    page.goto(pages.page("formats.html"))
    wait_responses(page)
    original = page.evaluate("""async () => {
        const html = await (await fetch(location.href)).text();
        return new DOMParser().parseFromString(html, 'text/html').body.innerHTML;
    }""")
    assert page.evaluate("document.body.innerHTML") != original
    page.evaluate("dni('restore')")
    assert page.evaluate("document.body.innerHTML") == original
    # Content added while restored stays as the page wrote it.
    page.evaluate("document.body.insertAdjacentHTML('beforeend', '<p id=\"x\">800-555-0100</p>')")
    page.wait_for_timeout(100)
    assert page.text_content("#x") == "800-555-0100"
    page.evaluate("dni('rescan')")
    assert page.text_content("#x") == "800-555-0123"
    assert mismatches(page) == []


def test_restore_leaves_a_node_the_page_rewrote_alone(fake, pages, page):
    """Restoring never undoes a change the page made after the swap."""
    page.goto(pages.page("formats.html"))
    wait_responses(page)
    page.evaluate("document.getElementById('f2').firstChild.data = 'Closed today'")
    page.wait_for_timeout(50)
    page.evaluate("dni('restore')")
    assert page.text_content("#f2") == "Closed today"
    assert page.text_content("#f1") == "(800) 555-0100"


def test_on_number_is_called_with_the_entries_queued_or_late(fake, pages, page):
    """A callback queued through the stub before load, and one added after, both get entries."""
    page.add_init_script(STUB + "window.__got = []; dni('onNumber', function (n) { __got.push(n); });")
    page.goto(pages.page("formats.html"))
    wait_responses(page)
    early = page.evaluate("window.__got")
    assert len(early) == 1 and early[0][0]["number"] == "+18005550123"
    late = page.evaluate("new Promise(r => dni('onNumber', r))")
    assert late[0]["target"] == "+18005550100"


def test_a_second_copy_of_the_tag_does_nothing(fake, pages, page):
    """Two tags (say, one from a tag manager): one lease, one swap."""
    pages.add("twice.html", "<p id=p>800-555-0100</p>{{snippet}}{{snippet}}")
    page.goto(pages.page("twice.html"))
    wait_responses(page)
    page.wait_for_timeout(200)
    assert len(fake.posts("lease")) == 1
    assert page.text_content("#p") == "800-555-0123"


CLS_PAGE = """<!doctype html><meta charset=utf-8>{{snippet}}
<p style="font: 16px sans-serif">Call <span id="num">800-555-0100</span>
<button id="book">Book now</button> or visit us.</p>
<p>Opening hours: 8am to 8pm.</p>"""
MEASURE_CLS = """
    window.__cls = 0;
    new PerformanceObserver(l => l.getEntries().forEach(e => { window.__cls += e.value; }))
        .observe({type: 'layout-shift', buffered: true});
"""


@pytest.mark.parametrize("number, shifts", [
    ("+18005550123", False),
    # A longer number is the check that the measurement can see a shift at all.
    ("+180055501234567", True),
])
def test_the_swap_shifts_no_layout(fake, pages, page, number, shifts):
    """Swapping after first paint moves nothing (CLS 0) when the number keeps its length."""
    fake.delay = 0.3  # answer after the page has painted, so a shift would count
    fake.fallback = "pool_exhausted"
    fake.fallback_numbers = {"+18005550100": number}
    page.add_init_script(MEASURE_CLS)
    page.goto(pages.add("cls.html", CLS_PAGE))
    wait_responses(page)
    assert page.text_content("#num") != "800-555-0100"
    page.wait_for_timeout(200)  # layout-shift entries arrive after the next frame
    assert (page.evaluate("window.__cls") > 0) is shifts
