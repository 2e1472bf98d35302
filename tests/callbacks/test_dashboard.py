"""The dashboard's callbacks page: status and attempts, a publisher sees only its own."""

from __future__ import annotations

import datetime as dt

from dashboard.dashboard_data import log_in, make_token, with_dashboard

from attribution.callbacks.models import Callback
from callbacks.helpers import post_callback, site_with_session
from dni_server.extensions import db
from factories import numbers

OPEN = dt.datetime(2026, 12, 7, 17, 0, tzinfo=dt.UTC)


def test_the_page_lists_callbacks_with_status_and_attempts(app, admin, client, monkeypatch):
    dash = with_dashboard(app)
    monkeypatch.setattr("dni_server.api.callbacks.utcnow", lambda: OPEN)
    site, session = site_with_session(admin, client, publisher="Acme")
    mine = post_callback(client, site["key"], session, "+16505550177").get_json()["id"]
    other_site, other_session = site_with_session(admin, client, ip="192.0.2.50",
                                                  numbers=numbers(3, start=150))
    theirs = post_callback(client, other_site["key"], other_session, "+16505550188",
                           ip="192.0.2.50").get_json()["id"]
    with app.app_context():
        row = db.session.get(Callback, mine)
        row.status, row.attempts, row.last_outcome = "scheduled", 2, "no-answer"
        db.session.commit()
    page = log_in(dash.test_client()).get("/dashboard/callbacks")
    assert page.status_code == 200
    assert f'data-callback="{mine}"' in page.text and f'data-callback="{theirs}"' in page.text
    assert "no-answer" in page.text and ">2</td>" in page.text
    publisher = log_in(dash.test_client(), make_token(admin, "publisher", "Acme"))
    scoped = publisher.get("/dashboard/callbacks")
    assert f'data-callback="{mine}"' in scoped.text
    assert f'data-callback="{theirs}"' not in scoped.text
    assert publisher.get("/dashboard/callbacks?status=failed").text.count("data-callback=") == 0
