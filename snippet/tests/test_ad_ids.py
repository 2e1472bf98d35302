"""Ad ids (_ga, _ga_<id>, _fbp) and the ad consent the snippet sends. Against the fake service."""

from __future__ import annotations

import pytest
from dni_helpers import STUB, set_visibility, stored, wait_responses

pytestmark = pytest.mark.browser

GA = "GA1.1.1234567890.1700000000"
GS1 = "GS1.1.1700000123.4.1.1700000456.0.0.0"
GS2 = "GS2.1.s1700000123$o4$g1$t1700000456$j60$l0$h0"
FBP = "fb.1.1700000000000.1234567890"
AD_KEYS = {"ga_client_id", "ga_session_id", "fbp", "consent"}

# Counts the page's reads of document.cookie (window.__cookieReads).
COUNT_COOKIE_READS = """
    window.__cookieReads = 0;
    const real = Object.getOwnPropertyDescriptor(Document.prototype, 'cookie');
    Object.defineProperty(document, 'cookie', {configurable: true,
        get() { window.__cookieReads++; return real.get.call(document); },
        set(v) { real.set.call(document, v); }});
"""


def set_cookies(page, url: str, **cookies) -> None:
    page.context.add_cookies([{"name": name, "value": value, "url": url}
                              for name, value in cookies.items()])


def ad_part(body: dict) -> dict:
    return {k: v for k, v in body.items() if k in AD_KEYS}


@pytest.mark.parametrize("ga4", [GS1, GS2])
def test_cookies_go_with_the_lease_raw_and_consent_unknown(fake, pages, page, ga4):
    """No data-consent: the cookies are sent as they are; the service hears no consent."""
    set_cookies(page, pages.url, _ga=GA, _ga_ABC123=ga4, _fbp=FBP, other="x")
    page.goto(pages.page("plain.html"))
    wait_responses(page)
    body = fake.posts("lease")[0].body
    assert ad_part(body) == {"ga_client_id": GA, "ga_session_id": ga4, "fbp": FBP}


def test_missing_cookies_are_left_out_never_made_up(fake, pages, page):
    set_cookies(page, pages.url, _ga=GA, x_fbp=FBP)
    page.goto(pages.page("plain.html"))
    wait_responses(page)
    assert ad_part(fake.posts("lease")[0].body) == {"ga_client_id": GA}
    names = {c.split("=")[0] for c in stored(page)["cookie"].split("; ")}
    assert names == {"_ga", "x_fbp"}  # the snippet sets no cookie of its own


def test_consent_required_reads_no_cookie_until_given_then_tells_the_service(fake, pages,
                                                                               page):
    pages.configure(fake.url, fake.site, attrs='data-consent="required"')
    set_cookies(page, pages.url, _ga=GA, _ga_ABC123=GS2, _fbp=FBP)
    page.add_init_script(COUNT_COOKIE_READS)
    page.goto(pages.page("plain.html"))
    wait_responses(page)
    assert ad_part(fake.posts("lease")[0].body) == {"consent": False}
    assert page.evaluate("window.__cookieReads") == 0

    page.evaluate("dni('consent', true)")  # the visitor accepts: the service hears it at once
    [beat] = fake.wait_for(1, "heartbeat")
    assert ad_part(beat.body) == {"consent": True, "ga_client_id": GA, "ga_session_id": GS2,
                                  "fbp": FBP}
    wait_responses(page, 2)

    set_visibility(page, "hidden")  # the next renewal: nothing new to tell
    beats = fake.wait_for(2, "heartbeat")
    assert ad_part(beats[1].body) == {}
    wait_responses(page, 3)

    page.evaluate("dni('consent', false)")  # withdrawn: said once, and no cookie is sent
    beats = fake.wait_for(3, "heartbeat")
    assert ad_part(beats[2].body) == {"consent": False}


def test_consent_given_before_the_script_loads_goes_with_the_lease(fake, pages, page):
    pages.configure(fake.url, fake.site, attrs='data-consent="required"')
    set_cookies(page, pages.url, _fbp=FBP)
    page.add_init_script(STUB + "dni('consent', true);")
    page.goto(pages.page("plain.html"))
    wait_responses(page)
    assert ad_part(fake.posts("lease")[0].body) == {"consent": True, "fbp": FBP}
    assert fake.posts("heartbeat") == []  # nothing more to tell


def test_a_cookie_set_after_the_lease_goes_with_the_next_renewal(fake, pages, page):
    """The Meta pixel or GA tag often sets its cookie after the snippet's first request."""
    page.goto(pages.page("plain.html"))
    wait_responses(page)
    assert ad_part(fake.posts("lease")[0].body) == {}
    page.evaluate(f"document.cookie = '_fbp={FBP}; path=/'")
    set_visibility(page, "hidden")
    [beat] = fake.wait_for(1, "heartbeat")
    assert ad_part(beat.body) == {"fbp": FBP}


def test_the_next_page_resumes_without_sending_what_the_service_knows(fake, pages, page):
    set_cookies(page, pages.url, _ga=GA, _fbp=FBP)
    page.goto(pages.page("plain.html"))
    wait_responses(page)
    first = fake.posts("lease")[0].body
    page.goto(pages.page("other.html"))
    wait_responses(page)
    resumed = fake.posts("lease")[-1].body
    assert resumed["session_id"] and ad_part(first) == {"ga_client_id": GA, "fbp": FBP}
    assert ad_part(resumed) == {}
    sent = len(fake.posts())
    set_cookies(page, pages.url, _ga_ABC123=GS1)  # a GA4 session started meanwhile
    page.goto(pages.page("plain.html"))
    wait_responses(page)
    # The service hears of the new id from the renewal other.html sends as it hides, when
    # that answer lands before the page goes, or else (or also) with the next page's lease:
    # whichever carries it carries all three.
    told = [ad_part(c.body) for c in fake.posts()[sent:] if ad_part(c.body)]
    assert told and all(t == {"ga_client_id": GA, "ga_session_id": GS1, "fbp": FBP}
                        for t in told)
