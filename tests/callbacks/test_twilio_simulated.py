"""A web callback played through the Twilio simulator (tests/carriers/twilio_sim.py): the
app places the business's leg on the fake REST API, and the simulator runs that leg's TwiML
as Twilio would (the prompt, the key, the <Dial> to the visitor, the <Number url>, the Dial
action and the status callback), signed, over real HTTP."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from carriers.scripts import Caller, Keys, Line
from carriers.twilio_sim import TwilioSimulator
from ports import free_port
from werkzeug.serving import make_server

from attribution.callbacks.models import Callback
from attribution.models import Call
from callbacks.fakes import FakeTwilio
from callbacks.helpers import post_callback, site_with_session
from dni_server.callback_worker import CallbackStep
from dni_server.extensions import db
from factories import ADMIN_TOKEN, TWILIO_TOKEN, AdminClient, record

ACCOUNT = "AC" + "2" * 32
OPEN = dt.datetime(2026, 12, 7, 17, 0, tzinfo=dt.UTC)
VISITOR = "+16505550177"
DESTINATION = "+12125550199"


@pytest.fixture
def world(make_app, monkeypatch):
    api = FakeTwilio(ACCOUNT, TWILIO_TOKEN)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    app = make_app(DNI_PUBLIC_URL=url, DNI_TWILIO_AUTH_TOKEN=TWILIO_TOKEN,
                   DNI_TWILIO_ACCOUNT_SID=ACCOUNT, DNI_TWILIO_API_URL=api.url,
                   DNI_REDIS_TIMEOUT_MS="2000")
    monkeypatch.setattr("dni_server.api.callbacks.utcnow", lambda: OPEN)
    monkeypatch.setattr("dni_server.api.callback_legs.utcnow", lambda: OPEN)
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    client = app.test_client()
    site, session = site_with_session(AdminClient(app.test_client(), ADMIN_TOKEN), client,
                                      destination=DESTINATION)
    record(app)
    answer = post_callback(client, site["key"], session, VISITOR)
    assert answer.status_code == 202, answer.get_json()
    try:
        yield app, api, url, answer.get_json()["id"]
    finally:
        server.shutdown()
        thread.join(5)
        api.close()


def business_leg(url: str, callback_id: str, visitor: Line) -> TwilioSimulator:
    return TwilioSimulator(
        url, TWILIO_TOKEN, voice_path=f"/webhooks/callbacks/twilio/business?cb={callback_id}",
        status_path=f"/webhooks/callbacks/twilio/status?cb={callback_id}&leg=business",
        lines={VISITOR: visitor}, start=OPEN)


def callback_row(app, callback_id) -> Callback:
    with app.app_context():
        found = db.session.get(Callback, callback_id)
        db.session.expunge(found)
        return found


def test_the_business_presses_one_and_talks_to_the_visitor(world):
    app, api, url, callback_id = world
    assert CallbackStep(app).run_once(OPEN) == 1
    [created] = api.requests
    sim = business_leg(url, callback_id, Line.answers(after=4.0, talk=70.0))
    business = Caller(number=DESTINATION, keys=(Keys("1"),), talk=None)
    played = sim.call(created["form"]["From"], business, sid=created["sid"])
    assert played.errors == []
    assert played.said()[0].startswith("Web callback request from google, page /pricing")
    [bridge] = played.bridges
    assert bridge.target == VISITOR
    found = callback_row(app, callback_id)
    assert found.status == "completed" and found.attempts == 1
    with app.app_context():
        call = db.session.get(Call, found.call_id)
        assert call.method == "callback" and call.status == "completed"
        assert call.duration == 70 and call.from_number == VISITOR


def test_a_busy_visitor_is_scheduled_again(world):
    app, api, url, callback_id = world
    CallbackStep(app).run_once(OPEN)
    [created] = api.requests
    sim = business_leg(url, callback_id, Line.busy())
    played = sim.call(created["form"]["From"], Caller(number=DESTINATION, keys=(Keys("1"),)),
                      sid=created["sid"])
    assert played.errors == [] and played.bridges == []
    found = callback_row(app, callback_id)
    assert found.status == "scheduled" and found.last_outcome == "busy"
    assert found.next_attempt_at == OPEN + dt.timedelta(minutes=10)


def test_a_business_that_does_not_press_one_declines(world):
    app, api, url, callback_id = world
    CallbackStep(app).run_once(OPEN)
    [created] = api.requests
    sim = business_leg(url, callback_id, Line.answers())
    played = sim.call(created["form"]["From"], Caller(number=DESTINATION, keys=(Keys("9"),)),
                      sid=created["sid"])
    assert played.errors == [] and played.offers == []
    assert callback_row(app, callback_id).last_outcome == "declined"
