"""A web callback placed through Telnyx Call Control: dial, gather, a second dial with
answering-machine detection, bridge; against a local fake of Telnyx's API, with the legs'
events signed with Ed25519 as Telnyx signs them."""

from __future__ import annotations

import base64
import datetime as dt
import json
import time
import uuid

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from attribution.callbacks.models import Callback
from attribution.models import Call
from callbacks.fakes import FakeTelnyx
from callbacks.helpers import post_callback, site_with_session
from dni_server.callback_worker import CallbackStep
from dni_server.extensions import db
from factories import ADMIN_TOKEN, AdminClient, record
from pools.models import Lease

API_KEY = "KEY_callbacks"
CONNECTION = "1684641123236054244"
OPEN = dt.datetime(2026, 12, 7, 17, 0, tzinfo=dt.UTC)
VISITOR = "+16505550177"
DESTINATION = "+12125550199"
SIGNER = Ed25519PrivateKey.generate()
PUBLIC_KEY = base64.b64encode(SIGNER.public_key().public_bytes(
    Encoding.Raw, PublicFormat.Raw)).decode()
CLOCK = [OPEN]


@pytest.fixture
def telnyx_api():
    fake = FakeTelnyx(API_KEY)
    yield fake
    fake.close()


@pytest.fixture
def setup(make_app, telnyx_api, monkeypatch):
    app = make_app(DNI_PUBLIC_URL="http://localhost", DNI_TELNYX_API_KEY=API_KEY,
                   DNI_TELNYX_API_URL=telnyx_api.url + "/v2", DNI_TELNYX_PUBLIC_KEY=PUBLIC_KEY,
                   DNI_TELNYX_CONNECTION_ID=CONNECTION, DNI_CALLBACK_CARRIER="telnyx")
    monkeypatch.setattr("dni_server.api.callbacks.utcnow", lambda: OPEN)
    monkeypatch.setattr("dni_server.api.callback_legs.utcnow", lambda: CLOCK[0])
    CLOCK[0] = OPEN
    client = app.test_client()
    admin = AdminClient(app.test_client(), ADMIN_TOKEN)
    site, session = site_with_session(admin, client, destination=DESTINATION)
    record(app)
    answer = post_callback(client, site["key"], session, VISITOR)
    assert answer.status_code == 202, answer.get_json()
    with app.app_context():
        tracking = db.session.scalar(db.select(Lease.number).where(Lease.session_id == session))
    return app, client, answer.get_json()["id"], session, tracking


def state(callback_id: str, leg: str) -> str:
    return base64.b64encode(f"cb:{callback_id}:{leg}".encode()).decode()


def send_event(client, kind: str, control_id: str, client_state: str, event_id=None,
               **payload):
    body = json.dumps({"data": {
        "event_type": kind, "id": event_id or str(uuid.uuid4()), "record_type": "event",
        "occurred_at": CLOCK[0].isoformat(),
        "payload": {"call_control_id": control_id, "client_state": client_state,
                    "connection_id": CONNECTION, **payload}}, "meta": {"attempt": 1}}).encode()
    stamp = str(int(time.time()))
    signature = base64.b64encode(SIGNER.sign(stamp.encode() + b"|" + body)).decode()
    response = client.post("/webhooks/callbacks/telnyx", data=body, headers={
        "Content-Type": "application/json", "telnyx-signature-ed25519": signature,
        "telnyx-timestamp": stamp})
    assert response.status_code == 204, response.data
    return response


def row(app, callback_id) -> Callback:
    with app.app_context():
        found = db.session.get(Callback, callback_id)
        db.session.expunge(found)
        return found


def until_accepted(app, client, telnyx_api, callback_id, tracking):
    """Place the callback, the business answers and presses 1: the visitor is dialled."""
    assert CallbackStep(app).run_once(OPEN) == 1
    [dial] = telnyx_api.wait_for(1)
    business = dial["call_control_id"]
    send_event(client, "call.answered", business, state(callback_id, "business"))
    gather = telnyx_api.wait_for(2)[1]
    send_event(client, "call.gather.ended", business, state(callback_id, "business"),
               event_id=f"gather-{callback_id}", digits="1", status="valid")
    visitor = telnyx_api.wait_for(3)[2]
    return dial, gather, visitor


def test_the_business_then_the_visitor_are_dialled_and_bridged(setup, telnyx_api):
    app, client, callback_id, session, tracking = setup
    dial, gather, visitor = until_accepted(app, client, telnyx_api, callback_id, tracking)
    assert dial["body"] == {
        "connection_id": CONNECTION, "to": DESTINATION, "from": tracking,
        "webhook_url": "http://localhost/webhooks/callbacks/telnyx",
        "webhook_url_method": "POST", "client_state": state(callback_id, "business"),
        "timeout_secs": 25, "command_id": f"{callback_id}-business"}
    business = dial["call_control_id"]
    assert gather["command"] == "gather_using_speak" and gather["call_control_id"] == business
    assert gather["body"]["payload"].startswith("Web callback request from google")
    assert gather["body"]["maximum_digits"] == 1
    assert visitor["command"] == "dial" and visitor["body"] | {"command_id": None} == {
        "connection_id": CONNECTION, "to": VISITOR, "from": tracking,
        "webhook_url": "http://localhost/webhooks/callbacks/telnyx",
        "webhook_url_method": "POST", "client_state": state(callback_id, "visitor"),
        "timeout_secs": 25, "answering_machine_detection": "detect", "link_to": business,
        "command_id": None}
    leg = visitor["call_control_id"]
    send_event(client, "call.answered", leg, state(callback_id, "visitor"))
    send_event(client, "call.machine.detection.ended", leg, state(callback_id, "visitor"),
               result="human")
    bridge = telnyx_api.wait_for(4)[3]
    assert bridge["command"] == "bridge" and bridge["call_control_id"] == leg
    assert bridge["body"] == {"call_control_id": business}
    CLOCK[0] = OPEN + dt.timedelta(seconds=80)
    send_event(client, "call.hangup", leg, state(callback_id, "visitor"),
               hangup_cause="normal_clearing")
    found = row(app, callback_id)
    assert found.status == "completed" and found.attempts == 1
    with app.app_context():
        call = db.session.get(Call, found.call_id)
        assert call.method == "callback" and call.confidence == 1.0 and call.provider == "telnyx"
        assert call.session_id == session and call.status == "completed"
        assert call.duration == 80
    assert telnyx_api.refusals == []


def test_a_machine_is_hung_up_on_and_the_attempt_retried(setup, telnyx_api):
    app, client, callback_id, _, tracking = setup
    _, _, visitor = until_accepted(app, client, telnyx_api, callback_id, tracking)
    leg = visitor["call_control_id"]
    send_event(client, "call.machine.detection.ended", leg, state(callback_id, "visitor"),
               result="machine")
    hangup = telnyx_api.wait_for(4)[3]
    assert hangup["command"] == "hangup" and hangup["call_control_id"] == leg
    send_event(client, "call.hangup", leg, state(callback_id, "visitor"),
               hangup_cause="normal_clearing")
    business_hangup = telnyx_api.wait_for(5)[4]
    assert business_hangup["command"] == "hangup"
    assert business_hangup["call_control_id"] == telnyx_api.requests[0]["call_control_id"]
    found = row(app, callback_id)
    assert found.status == "scheduled" and found.last_outcome == "machine"
    assert found.next_attempt_at == OPEN + dt.timedelta(minutes=10) and found.call_id is None


def test_a_busy_visitor_is_retried_and_a_redelivered_event_acts_once(setup, telnyx_api):
    app, client, callback_id, _, tracking = setup
    dial, _, visitor = until_accepted(app, client, telnyx_api, callback_id, tracking)
    # Telnyx delivers the gather's end again: the visitor is not dialled twice.
    send_event(client, "call.gather.ended", dial["call_control_id"],
               state(callback_id, "business"), event_id=f"gather-{callback_id}", digits="1")
    send_event(client, "call.hangup", visitor["call_control_id"], state(callback_id, "visitor"),
               hangup_cause="user_busy")
    requests = telnyx_api.wait_for(4)
    assert [r["command"] for r in requests] == ["dial", "gather_using_speak", "dial", "hangup"]
    found = row(app, callback_id)
    assert found.last_outcome == "busy" and found.status == "scheduled"


def test_forged_or_foreign_events_are_refused_or_ignored(setup, telnyx_api):
    app, client, callback_id, _, _ = setup
    CallbackStep(app).run_once(OPEN)
    business = telnyx_api.wait_for(1)[0]["call_control_id"]
    forged = client.post("/webhooks/callbacks/telnyx", data=b"{}", headers={
        "telnyx-signature-ed25519": base64.b64encode(b"x" * 64).decode(),
        "telnyx-timestamp": str(int(time.time()))})
    assert forged.status_code == 403
    # Signed, but naming the callback with a leg id that is not its own: nothing happens.
    send_event(client, "call.gather.ended", "v3:someone-else", state(callback_id, "business"),
               digits="1")
    time.sleep(0.3)
    assert len(telnyx_api.requests) == 1 and business
    assert row(app, callback_id).status == "calling"
