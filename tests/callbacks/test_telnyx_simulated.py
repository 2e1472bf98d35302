"""A web callback on Telnyx end to end, through the Telnyx simulator over real HTTP: the
worker dials the business, which accepts with 1; the visitor is dialled with answering-
machine detection and bridged, or, a machine answering, hung up on and retried."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from carriers.scripts import Line
from ports import free_port
from werkzeug.serving import make_server

from attribution.models import Call
from callbacks.helpers import post_callback, site_with_session
from callbacks.telnyx_callback_sim import CallbackTelnyx
from callbacks.test_twilio_calls import callback_row
from dni_server.callback_worker import CallbackStep
from dni_server.extensions import db
from factories import ADMIN_TOKEN, AdminClient, record

API_KEY = "KEY_callback_sim"
OPEN = dt.datetime(2026, 12, 7, 17, 0, tzinfo=dt.UTC)  # 09:00 in California
VISITOR = "+16505550177"
DESTINATION = "+12125550199"
BUYER = "+12125550142"  # a routing plan's buyer


def serve_world(make_app, monkeypatch, routed: bool = False):
    """The app over HTTP with the simulator as its Telnyx; a visit and its callback on a
    pool forwarding to DESTINATION, or (``routed``) whose plan offers it to one buyer."""
    sim = CallbackTelnyx(free_port(), api_key=API_KEY, start=OPEN, quiet=0.3,
                         lines={DESTINATION: Line.accepts(key="1"),
                                BUYER: Line.accepts(key="1")})
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    app = make_app(DNI_PUBLIC_URL=url, DNI_TELNYX_API_KEY=API_KEY, DNI_TELNYX_API_URL=sim.url,
                   DNI_TELNYX_PUBLIC_KEY=sim.public_key,
                   DNI_TELNYX_CONNECTION_ID=sim.connection_id, DNI_CALLBACK_CARRIER="telnyx",
                   DNI_CALLBACK_MAX_ATTEMPTS="2", DNI_REDIS_TIMEOUT_MS="2000")
    app.extensions["dni"].commands.delays = (0.05, 0.1, 0.2)
    monkeypatch.setattr("dni_server.api.callbacks.utcnow", lambda: OPEN)
    monkeypatch.setattr("dni_server.api.callback_legs.utcnow", lambda: OPEN)
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    sim.webhook_url = url + "/webhooks/callbacks/telnyx"
    client, admin = app.test_client(), AdminClient(app.test_client(), ADMIN_TOKEN)
    pool_fields: dict = {"destination": DESTINATION}
    if routed:
        buyer = admin.post("/v1/buyers", json={
            "name": "Buyer", "timezone": "America/Los_Angeles",
            "targets": [{"number": BUYER, "ring_seconds": 20}],
            "conversion": {"min_duration": 0}, "revenue": "25.00"})
        assert buyer.status_code == 201, buyer.get_json()
        plan = admin.post("/v1/routing-plans", json={
            "name": "Plan", "tiers": [{"buyers": [buyer.get_json()["id"]]}]})
        assert plan.status_code == 201, plan.get_json()
        pool_fields["routing_plan"] = plan.get_json()["id"]
    site, session = site_with_session(admin, client, **pool_fields)
    record(app)
    answer = post_callback(client, site["key"], session, VISITOR)
    assert answer.status_code == 202, answer.get_json()
    return app, sim, answer.get_json()["id"], session, admin, (server, thread)


@pytest.fixture
def world(make_app, monkeypatch):
    *found, admin, (server, thread) = serve_world(make_app, monkeypatch)
    try:
        yield tuple(found)
    finally:
        found[1].close()
        server.shutdown()
        thread.join(5)


@pytest.fixture
def routed_world(make_app, monkeypatch):
    *found, admin, (server, thread) = serve_world(make_app, monkeypatch, routed=True)
    try:
        yield (*found, admin)
    finally:
        found[1].close()
        server.shutdown()
        thread.join(5)


def place(app, now=OPEN) -> int:
    return CallbackStep(app).run_once(now)


def test_the_business_accepts_the_visitor_answers_and_they_are_bridged(world):
    app, sim, callback_id, session = world
    sim.lines[VISITOR] = Line.answers(after=4, talk=95)
    assert place(app) == 1
    [call] = sim.play()
    assert sim.errors == []
    business, visitor = call.legs
    assert (business.to, visitor.to) == (DESTINATION, VISITOR)
    assert business.party.pressed == ["1"]  # the business heard the prompt and took it
    assert visitor.frm == business.frm  # the tracking number is the visitor's caller id
    assert business.bridged_to is visitor or visitor.bridged_to is business
    assert [c["name"] for c in call.acted()] == ["dial", "gather_using_speak", "dial",
                                                 "bridge"]
    dial = call.acted("dial")[1]["body"]
    assert dial["answering_machine_detection"] == "detect"
    assert dial["link_to"] == business.control_id
    prompt = call.acted("gather_using_speak")[0]["body"]["payload"]
    assert prompt.startswith("Web callback request from google, page /pricing")
    row = callback_row(app, callback_id)
    assert row.status == "completed" and row.last_outcome == "connected"
    assert row.visitor_call_id == visitor.control_id
    with app.app_context():
        made = db.session.get(Call, row.call_id)
        assert made.method == "callback" and made.confidence == 1.0
        assert made.session_id == session and made.from_number == VISITOR


def test_a_machine_on_the_visitors_side_is_hung_up_on_and_retried(world):
    app, sim, callback_id, _ = world
    sim.lines[VISITOR] = Line.voicemail(talk=30)
    assert place(app) == 1
    [call] = sim.play()
    assert sim.errors == []
    business, visitor = call.legs
    assert "call.machine.detection.ended" in call.event_types()
    assert visitor.bridged_to is None and business.bridged_to is None
    hung = [c["leg"] for c in call.acted("hangup")]
    assert visitor.control_id in hung  # the app ended the machine's leg, then the business's
    row = callback_row(app, callback_id)
    assert row.status == "scheduled" and row.last_outcome == "machine"
    assert row.next_attempt_at == OPEN + dt.timedelta(minutes=10) and row.call_id is None

    # The retry: this time a person answers.
    sim.lines[VISITOR] = Line.answers(after=2, talk=40)
    assert place(app, OPEN + dt.timedelta(minutes=10)) == 1
    [again] = sim.play()
    assert sim.errors == []
    row = callback_row(app, callback_id)
    assert row.status == "completed" and row.attempts == 2
    assert [a["outcome"] for a in row.attempt_log] == ["machine", "connected"]
    assert again.legs[1].bridged_to is not None or again.legs[0].bridged_to is not None


def test_on_a_routed_pool_the_plans_buyer_takes_it_on_telnyx(routed_world):
    app, sim, callback_id, _, admin = routed_world
    sim.lines[VISITOR] = Line.answers(after=2, talk=30)
    assert place(app) == 1
    [call] = sim.play()
    assert sim.errors == []
    business, visitor = call.legs
    assert business.to == BUYER and business.party.pressed == ["1"]
    row = callback_row(app, callback_id)
    assert row.status == "completed"
    routing = admin.get(f"/v1/calls/{row.call_id}").get_json()["routing"]
    assert routing["target"] == BUYER and routing["outcome"] == "connected"
    assert routing["converted"] is True and routing["revenue"] == "25.00"
