"""Issue 11, F18 and F2, in the snippet: it never sends the page's fragment (OAuth redirects put
tokens there), and ad ids the service did not record (a lapsed lease) go again."""

from __future__ import annotations

import pytest
from dni_helpers import set_visibility, wait_responses

pytestmark = pytest.mark.browser


def test_the_fragment_is_never_sent(fake, pages, page):
    page.goto(pages.page("spa.html") + "?x=1#access_token=SECRET1&state=s")
    wait_responses(page)
    [lease] = fake.posts("lease")
    assert lease.body["url"] == pages.page("spa.html") + "?x=1"
    page.evaluate("go('/contact#id_token=SECRET2')")
    [view] = fake.wait_for(1, "heartbeat")
    assert view.body["url"] == pages.url + "/contact"
    page.evaluate("history.replaceState({}, '', '/contact#other')")  # no page view
    page.evaluate("go('/contact?y=2#code=SECRET3')")
    views = fake.wait_for(2, "heartbeat")
    assert views[1].body["url"] == pages.url + "/contact?y=2"
    assert not any("SECRET" in str(call.body) for call in fake.posts())


def test_consent_withdrawn_while_the_lease_lapsed_goes_again_with_the_next_renewal(
        fake, pages, page):
    """The service records consent only on a live lease's renewal: a withdrawal that found the
    lease lapsed, and the lease that follows it, leave it unrecorded, so it is sent again."""
    pages.configure(fake.url, fake.site, attrs='data-consent="required"')
    page.goto(pages.page("plain.html"))
    wait_responses(page)
    page.evaluate("dni('consent', true)")
    fake.wait_for(1, "heartbeat")
    wait_responses(page, 2)

    fake.expire_on_heartbeat = True
    page.evaluate("dni('consent', false)")
    [_, lapsed] = fake.wait_for(2, "heartbeat")
    assert lapsed.body.get("consent") is False
    resumed = fake.wait_for(2, "lease")[1]  # leases again for the session
    assert resumed.body["session_id"] and resumed.body.get("consent") is False
    wait_responses(page, 4)

    fake.expire_on_heartbeat = False
    set_visibility(page, "hidden")  # the next renewal, of a live lease: says it again
    beats = fake.wait_for(3, "heartbeat")
    assert beats[2].body.get("consent") is False
    wait_responses(page, 5)
    set_visibility(page, "visible")  # recorded now: not sent again
    beats = fake.wait_for(4, "heartbeat")
    assert "consent" not in beats[3].body
