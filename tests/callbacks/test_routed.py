"""A web callback on a routed pool: the business leg is offered to the buyer the plan
picks (eligibility, tiers, caps reserved), not to the pool's destination, and the call it
makes carries the routing log and the buyer's revenue."""

from __future__ import annotations

import datetime as dt

import pytest

from attribution.callbacks.models import Callback
from callbacks.fakes import FakeTwilio
from callbacks.helpers import post_callback
from callbacks.test_twilio_calls import (
    ACCOUNT,
    OPEN,
    VISITOR,
    business_answers,
    callback_row,
    place,
)
from dni_server.extensions import db
from factories import (
    ADMIN_TOKEN,
    TWILIO_TOKEN,
    AdminClient,
    make_pool,
    make_site,
    post_session,
    record,
    twilio_post,
)
from routing.capacity import Capacity

DESTINATION = "+12125550199"  # the pool's own destination: never rung on a routed pool
BING_ONLY, CAPPED = "+12125550101", "+12125550102"


def buyer(admin, name: str, number: str, **fields) -> int:
    body = {"name": name, "timezone": "America/Los_Angeles",
            "targets": [{"number": number, "ring_seconds": 20}],
            "conversion": {"min_duration": 60}, "revenue": "30.00"} | fields
    response = admin.post("/v1/buyers", json=body)
    assert response.status_code == 201, response.get_json()
    return response.get_json()["id"]


@pytest.fixture
def routed(make_app, monkeypatch):
    fake = FakeTwilio(ACCOUNT, TWILIO_TOKEN)
    app = make_app(DNI_PUBLIC_URL="http://localhost", DNI_TWILIO_AUTH_TOKEN=TWILIO_TOKEN,
                   DNI_TWILIO_ACCOUNT_SID=ACCOUNT, DNI_TWILIO_API_URL=fake.url,
                   DNI_CALLBACK_MAX_ATTEMPTS="3")
    monkeypatch.setattr("dni_server.api.callbacks.utcnow", lambda: OPEN)
    monkeypatch.setattr("dni_server.api.callback_legs.utcnow", lambda: OPEN)
    client, admin = app.test_client(), AdminClient(app.test_client(), ADMIN_TOKEN)
    # The visit came from google: the first tier's buyer takes bing only, the second has
    # room for one call a day.
    bing = buyer(admin, "Bing only", BING_ONLY, filters=[{"source": "bing"}])
    capped = buyer(admin, "Capped", CAPPED, caps={"calls": {"day": 1}})
    plan = admin.post("/v1/routing-plans", json={
        "name": "Callbacks", "tiers": [{"buyers": [bing]}, {"buyers": [capped]}],
        "fallback": {"message": "Nobody is free."}})
    assert plan.status_code == 201, plan.get_json()
    site = make_site(admin)
    make_pool(admin, site, destination=DESTINATION, routing_plan=plan.get_json()["id"])
    sessions = []
    for ip in ("192.0.2.10", "192.0.2.11"):
        answer = post_session(client, site["key"], "https://shop.example/?utm_source=google",
                              ip=ip)
        assert answer.status_code == 200, answer.get_json()
        sessions.append((answer.get_json()["session_id"], ip))
    record(app)
    yield {"app": app, "client": client, "admin": admin, "site": site, "fake": fake,
           "sessions": sessions, "bing": bing, "capped": capped}
    fake.close()


def usage(app, buyer_id: int) -> dict:
    with app.app_context():
        spec = app.extensions["routing"].directory.current().buyers[buyer_id]
        return Capacity(app.extensions["dni"].redis_admin,
                        app.extensions["dni"].settings.redis_prefix).usage(buyer_id, spec, OPEN)


def test_the_plans_buyer_gets_the_callback_caps_counted_and_revenue_on_the_call(routed):
    app, client, fake = routed["app"], routed["client"], routed["fake"]
    session, ip = routed["sessions"][0]
    callback_id = post_callback(client, routed["site"]["key"], session, VISITOR,
                                ip=ip).get_json()["id"]
    assert place(app) == 1
    [created] = fake.requests
    assert created["form"]["To"] == CAPPED  # the plan's pick, not the destination
    assert usage(app, routed["capped"])["live"] == 1
    assert usage(app, routed["bing"])["counts"]["day"]["calls"] == 0

    business_answers(client, callback_id, created["sid"])
    twilio_post(client, f"/webhooks/callbacks/twilio/screen?cb={callback_id}",
                {"CallSid": "CAvisitor1", "AccountSid": ACCOUNT, "AnsweredBy": "human"})
    twilio_post(client, f"/webhooks/callbacks/twilio/dialed?cb={callback_id}",
                {"CallSid": created["sid"], "AccountSid": ACCOUNT,
                 "DialCallStatus": "completed", "DialCallSid": "CAvisitor1",
                 "DialCallDuration": "75"})
    row = callback_row(app, callback_id)
    assert row.status == "completed" and row.call_id is not None
    counted = usage(app, routed["capped"])
    assert counted["live"] == 0
    assert counted["counts"]["day"] == {"calls": 1, "connections": 1, "conversions": 1,
                                        "revenue": "30.00"}
    shown = routed["admin"].get(f"/v1/calls/{row.call_id}").get_json()
    routing = shown["routing"]
    assert routing["buyer"] == routed["capped"] and routing["target"] == CAPPED
    assert routing["converted"] is True and routing["revenue"] == "30.00"
    assert routing["outcome"] == "connected"
    assert {"buyer": routed["bing"], "reason": "filter:source"} in routing["skipped"]
    assert shown["attribution"]["method"] == "callback"


def test_a_full_plan_rings_nobody_and_the_callback_waits(routed):
    app, client, fake = routed["app"], routed["client"], routed["fake"]
    ids = [post_callback(client, routed["site"]["key"], session, phone, ip=ip).get_json()["id"]
           for (session, ip), phone in zip(routed["sessions"], (VISITOR, "+16505550188"),
                                           strict=True)]
    assert place(app) == 2
    # One slot a day: the first callback's business leg rings the buyer, the second none.
    assert [r["form"]["To"] for r in fake.requests] == [CAPPED]
    rings, waits = (callback_row(app, i) for i in ids)
    if rings.business_call_id is None:
        rings, waits = waits, rings
    assert rings.status == "calling"
    assert waits.status == "scheduled" and waits.last_outcome == "no_buyer"
    assert waits.next_attempt_at == OPEN + dt.timedelta(minutes=10)
    # The first business declines: its slot is freed (the call was counted, not connected).
    business_answers(client, rings.id, fake.requests[0]["sid"], digits="2")
    counted = usage(app, routed["capped"])
    assert counted["live"] == 0 and counted["counts"]["day"]["connections"] == 0
    assert callback_row(app, rings.id).last_outcome == "declined"
    with app.app_context():
        assert db.session.get(Callback, waits.id).attempts == 1
