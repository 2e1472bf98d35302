"""Redis had a bad moment: a renewal answered ``unavailable`` must not cost the visit its number,
and a new visit answered ``unavailable`` gets a second chance. Against the fake service."""

from __future__ import annotations

import time

import pytest
from dni_helpers import STUB, set_visibility, wait_responses

pytestmark = pytest.mark.browser

LEASED = "800-555-0123"
PAGES_OWN = "800-555-0100"

# Every text #num showed, in order (window.__shown), and a count of the service's answers the
# snippet has finished with (window.__handled): read after the answer's own handling, since a
# timer callback runs only once every promise reaction queued before it has run.
WATCH = STUB + """
    window.__shown = [];
    window.__handled = 0;
    document.addEventListener('DOMContentLoaded', () => {
        const num = document.getElementById('num');
        new MutationObserver(() => __shown.push(num.textContent))
            .observe(num, {childList: true, subtree: true, characterData: true});
    });
    const realJson = Response.prototype.json;
    Response.prototype.json = function () {
        return realJson.call(this).then(body => {
            setTimeout(() => { __handled++; }, 0);
            return body;
        });
    };
"""


def test_a_renewal_answered_unavailable_keeps_the_leased_number(fake, pages, page):
    """The lease still has time: the number stays, and the renewal 5 s later confirms it."""
    page.add_init_script(WATCH)
    page.goto(pages.page("plain.html"))
    wait_responses(page)
    assert page.text_content("#num") == LEASED
    fake.fallback, fake.renew_in = "unavailable", 5  # as the service answers it

    started = time.monotonic()
    set_visibility(page, "visible")  # renew now rather than in 100 s
    fake.wait_for(1, "heartbeat")
    page.wait_for_function("window.__handled >= 2")  # the lease's answer, then the renewal's
    assert page.text_content("#num") == LEASED
    assert page.get_attribute("#call", "href") == "tel:+18005550123"

    fake.fallback, fake.renew_in = None, 100  # Redis is back
    fake.wait_for(2, "heartbeat", timeout=15)
    wait_responses(page, 2)
    # The retry waited for the service's hint (5 s) instead of hammering it.
    assert time.monotonic() - started >= 5
    assert page.text_content("#num") == LEASED
    assert PAGES_OWN not in page.evaluate("window.__shown")  # never flickered back
    assert len(fake.posts("lease")) == 1  # the same session all along


def test_a_renewal_answered_unavailable_again_backs_off(fake, pages, page):
    """Each renewal answered unavailable waits longer before the next (5 s, then 10 s)."""
    page.add_init_script(WATCH)
    page.goto(pages.page("plain.html"))
    wait_responses(page)
    fake.fallback, fake.renew_in = "unavailable", 5
    set_visibility(page, "visible")
    fake.wait_for(1, "heartbeat")
    second = fake.wait_for(2, "heartbeat", timeout=15)[1]
    third = fake.wait_for(3, "heartbeat", timeout=25)[2]
    assert third.at - second.at >= 10 - 0.5  # timers may fire a little early
    assert page.text_content("#num") == LEASED


def test_a_new_visit_answered_unavailable_asks_again_after_renew_in(fake, pages, page):
    """No lease yet: the page keeps its own number, and the snippet asks again after renew_in."""
    fake.fallback, fake.renew_in = "unavailable", 5
    page.add_init_script(WATCH)
    page.goto(pages.page("plain.html"))
    wait_responses(page)
    assert page.text_content("#num") == PAGES_OWN
    fake.fallback, fake.renew_in = None, 100
    fake.wait_for(1, "heartbeat", timeout=15)
    wait_responses(page, 2)
    assert page.text_content("#num") == LEASED
