"""The dashboard's webhooks page: subscriptions, recent deliveries, one delivery's attempts,
each limited to what the logged-in token may see."""

from __future__ import annotations

import datetime as dt
import re

from factories import ADMIN_TOKEN, make_pool, make_site, numbers
from pools.models import utcnow
from webhooks_out.conftest import deliverer, drain, pool_number, post_call, rows, subscribe
from webhooks_out.receiver import Receiver


def log_in(app, token: str = ADMIN_TOKEN):
    """A test client logged in through the dashboard's form."""
    client = app.test_client()
    page = client.get("/dashboard/login")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    response = client.post("/dashboard/login", data={"token": token, "csrf_token": csrf})
    assert response.status_code == 302, response.text
    return client


def make_token(admin, scope: str, publisher: str) -> str:
    response = admin.post("/v1/tokens", json={"name": publisher, "scope": scope,
                                               "publisher": publisher})
    return response.get_json()["token"]


def test_the_page_shows_subscriptions_deliveries_and_attempts_within_scope(app, admin,
                                                                           receiver):
    site = make_site(admin)
    pool_a = make_pool(admin, site, numbers=numbers(2), publisher="A")
    make_pool(admin, site, numbers=numbers(2, start=150), publisher="B", name="B pool",
              target="+18005550111")
    other = Receiver()
    try:
        mine = subscribe(admin, site, receiver, events=["call.completed"], publisher="A")
        theirs = subscribe(admin, site, other, events=["pool.exhausted"], publisher="B")
        admin.patch(f"/v1/webhooks/{theirs['id']}", json={"enabled": False})
        post_call(admin, "a-1", pool_number(admin, pool_a))
        receiver.fail_next = 1
        drain(deliverer(app), utcnow() + dt.timedelta(seconds=1), passes=3, step=3600)
        (delivery,) = rows(app)
        page = log_in(app).get(f"/dashboard/webhooks?delivery={delivery.id}")
        assert page.status_code == 200
        html = page.text
        assert "call.completed" in html and "disabled through the API" in html
        assert "HTTP 503" in html and "DNI-Signature" not in html  # no headers in the page
        assert html.count("<td class=\"num\">503</td>") == 1
        a = log_in(app, make_token(admin, "publisher", "A"))
        html = a.get("/dashboard/webhooks").text
        assert receiver.url.split("//")[1] in html
        assert other.url.split("//")[1] not in html and "pool.exhausted" not in html
        b = log_in(app, make_token(admin, "publisher", "B"))
        assert b.get(f"/dashboard/webhooks?delivery={delivery.id}").status_code == 404
        assert mine["id"] != theirs["id"]
    finally:
        other.close()
