"""Outgoing webhooks of web callbacks: requested, completed and failed reach a subscriber,
signed, in order, with the callback's own data."""

from __future__ import annotations

import datetime as dt

import pytest
from webhooks_out.conftest import deliverer, drain, subscribe
from webhooks_out.receiver import Receiver

from callbacks.fakes import FakeTwilio
from callbacks.helpers import post_callback, site_with_session
from callbacks.test_twilio_calls import ACCOUNT, OPEN, VISITOR, business_answers, place
from factories import ADMIN_TOKEN, TWILIO_TOKEN, AdminClient, record, twilio_post

EVENTS = ["callback.requested", "callback.completed", "callback.failed"]


@pytest.fixture
def flow(make_app, monkeypatch):
    fake, receiver = FakeTwilio(ACCOUNT, TWILIO_TOKEN), Receiver()
    app = make_app(DNI_PUBLIC_URL="http://localhost", DNI_TWILIO_AUTH_TOKEN=TWILIO_TOKEN,
                   DNI_TWILIO_ACCOUNT_SID=ACCOUNT, DNI_TWILIO_API_URL=fake.url,
                   DNI_CALLBACK_MAX_ATTEMPTS="1")
    monkeypatch.setattr("dni_server.api.callbacks.utcnow", lambda: OPEN)
    monkeypatch.setattr("dni_server.api.callback_legs.utcnow", lambda: OPEN)
    client, admin = app.test_client(), AdminClient(app.test_client(), ADMIN_TOKEN)
    site, session = site_with_session(admin, client, destination="+12125550199")
    subscribe(admin, site, receiver, events=EVENTS)
    record(app)
    yield app, client, site, session, fake, receiver
    fake.close()
    receiver.close()


def deliver(app):
    drain(deliverer(app), dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1), passes=4, step=1)


def test_a_connected_callback_is_announced_requested_then_completed(flow):
    app, client, site, session, fake, receiver = flow
    callback_id = post_callback(client, site["key"], session, VISITOR).get_json()["id"]
    place(app)
    sid = fake.requests[-1]["sid"]
    business_answers(client, callback_id, sid)
    twilio_post(client, f"/webhooks/callbacks/twilio/screen?cb={callback_id}",
                {"CallSid": "CAv1", "AccountSid": ACCOUNT, "AnsweredBy": "human"})
    twilio_post(client, f"/webhooks/callbacks/twilio/dialed?cb={callback_id}",
                {"CallSid": sid, "AccountSid": ACCOUNT, "DialCallStatus": "completed",
                 "DialCallSid": "CAv1", "DialCallDuration": "40"})
    deliver(app)
    assert receiver.bad_signatures == 0
    assert [e["type"] for e in receiver.accepted] == ["callback.requested",
                                                      "callback.completed"]
    requested, completed = (e["data"] for e in receiver.accepted)
    assert requested["id"] == completed["id"] == callback_id
    assert requested["status"] == "scheduled" and requested["phone"] == VISITOR
    assert requested["session_id"] == session and requested["at"] == "2026-12-07T17:00:00Z"
    assert completed["status"] == "completed" and completed["call_id"] is not None
    assert [a["outcome"] for a in completed["history"]] == ["connected"]
    assert "client_hash" not in completed


def test_a_callback_out_of_attempts_is_announced_failed(flow):
    app, client, site, session, fake, receiver = flow
    callback_id = post_callback(client, site["key"], session, VISITOR).get_json()["id"]
    place(app)
    business_answers(client, callback_id, fake.requests[-1]["sid"], digits="2")
    deliver(app)
    assert [e["type"] for e in receiver.accepted] == ["callback.requested", "callback.failed"]
    failed = receiver.accepted[-1]["data"]
    assert failed["status"] == "failed" and failed["last_outcome"] == "declined"
    assert failed["attempts"] == 1 and failed["at"] is None


def test_a_refused_request_announces_nothing(flow):
    app, client, site, session, _, receiver = flow
    for n in range(3):  # the third different number in an hour is refused
        post_callback(client, site["key"], session, f"+1650555017{n}")
    deliver(app)
    assert [e["type"] for e in receiver.accepted] == ["callback.requested"] * 2
