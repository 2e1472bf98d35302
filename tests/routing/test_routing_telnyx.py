"""Routed calls on Telnyx Call Control: the commands a plan with a ZIP step sends, driven
by signed events as Telnyx sends them; a redelivered event sends nothing again."""

from __future__ import annotations

import base64
import json
import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select

from dni_server.extensions import db
from factories import ADMIN_TOKEN, AdminClient, make_pool, make_site, numbers
from routing.models import CallRouting

SEED = bytes(range(32))
PUBLIC = "A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg="
CALLER = "+14155550100"


@pytest.fixture
def world(make_app):
    app = make_app(DNI_TELNYX_PUBLIC_KEY=PUBLIC, DNI_TELNYX_API_KEY="KEY_test")
    sent: list[tuple[str, dict]] = []

    def submit(command, _url, _key, path, body):  # the command queue, made synchronous
        sent.append((path, body))

    app.extensions["dni"].commands.submit = submit
    admin = AdminClient(app.test_client(), ADMIN_TOKEN)

    def buyer(name, number, **fields):
        return admin.post("/v1/buyers", json={
            "name": name, "timezone": "America/Los_Angeles", "targets": [{"number": number}],
            "conversion": {"min_duration": 0}, "revenue": "30.00"} | fields).get_json()["id"]

    a = buyer("A", "+12125550101", accept=True, whisper="Roofing lead.")
    b = buyer("B", "+12125550102")
    plan = admin.post("/v1/routing-plans", json={
        "name": "Roofing", "ivr": [{"type": "zip", "text": "Your ZIP code?"}],
        "tiers": [{"buyers": [a]}, {"buyers": [b]}], "fallback": {}}).get_json()["id"]
    make_pool(admin, make_site(admin), numbers=numbers(1), routing_plan=plan)
    return {"app": app, "client": app.test_client(), "sent": sent, "a": a, "b": b}


def event(world, kind: str, event_id: str, *, control="v3:caller", direction="incoming",
          state=None, **payload):
    body = {"data": {"record_type": "event", "event_type": kind, "id": event_id,
                     "occurred_at": "2026-05-01T10:00:00Z", "payload": {
                         "call_control_id": control, "call_session_id": "sess-1",
                         "connection_id": "conn-1", "from": CALLER, "to": numbers(1)[0],
                         "direction": direction, "client_state": state, **payload}}}
    raw = json.dumps(body).encode()
    stamp = str(int(time.time()))
    signature = Ed25519PrivateKey.from_private_bytes(SEED).sign(stamp.encode() + b"|" + raw)
    response = world["client"].post("/webhooks/telnyx", data=raw, headers={
        "Content-Type": "application/json", "telnyx-timestamp": stamp,
        "telnyx-signature-ed25519": base64.b64encode(signature).decode()})
    assert response.status_code == 204
    out, world["sent"][:] = list(world["sent"]), []
    return out


def meta(body: dict) -> dict:
    return json.loads(base64.b64decode(body["client_state"]))


def test_a_zip_step_an_accepting_buyer_and_a_redelivery(world):
    [(path, body)] = event(world, "call.initiated", "e1")
    assert path == "/calls/v3:caller/actions/answer" and body["command_id"]
    [(path, gather)] = event(world, "call.answered", "e2", state=body["client_state"])
    assert path == "/calls/v3:caller/actions/gather_using_speak"
    assert gather["payload"] == "Your ZIP code?" and gather["maximum_digits"] == 5
    [(path, dial)] = event(world, "call.gather.ended", "e3", state=gather["client_state"],
                           digits="94105", status="valid")
    assert path == "/calls" and dial["to"] == "+12125550101"
    assert dial["link_to"] == "v3:caller" and dial["connection_id"] == "conn-1"
    # Redelivered: nothing is sent twice.
    assert event(world, "call.gather.ended", "e3", state=gather["client_state"],
                 digits="94105", status="valid") == []

    leg = dict(control="v3:leg-a", direction="outgoing", state=dial["client_state"])
    assert event(world, "call.initiated", "e4", **leg) == []
    [(path, ask)] = event(world, "call.answered", "e5", **leg)
    assert path == "/calls/v3:leg-a/actions/gather_using_speak"
    assert ask["payload"] == "Roofing lead. Press 1 to accept." and ask["maximum_digits"] == 1
    [(path, bridge)] = event(world, "call.gather.ended", "e6", control="v3:leg-a",
                             direction="outgoing", state=ask["client_state"], digits="1",
                             status="valid")
    assert path == "/calls/v3:caller/actions/bridge"
    assert bridge["call_control_id"] == "v3:leg-a"
    # The buyer hangs up: settled, and the caller's leg is hung up (no recovery set).
    [(path, _)] = event(world, "call.hangup", "e7", control="v3:leg-a", direction="outgoing",
                        state=ask["client_state"], hangup_cause="normal_clearing",
                        hangup_source="callee")
    assert path == "/calls/v3:caller/actions/hangup"
    with world["app"].app_context():
        log = db.session.scalar(select(CallRouting))
        assert (log.provider, log.buyer_id, log.converted) == ("telnyx", world["a"], True)
        assert [(o["buyer"], o["outcome"]) for o in log.offers] == [(world["a"], "accepted")]


def test_a_declining_buyer_fails_over_to_the_next_tier(world):
    [(_, body)] = event(world, "call.initiated", "f1")
    [(_, gather)] = event(world, "call.answered", "f2", state=body["client_state"])
    [(_, dial)] = event(world, "call.gather.ended", "f3", state=gather["client_state"],
                        digits="94105", status="valid")
    leg = dict(control="v3:leg-a", direction="outgoing", state=dial["client_state"])
    [(_, ask)] = event(world, "call.answered", "f4", **leg)
    [(path, _)] = event(world, "call.gather.ended", "f5", control="v3:leg-a",
                        direction="outgoing", state=ask["client_state"], status="timeout")
    assert path == "/calls/v3:leg-a/actions/hangup"  # a voicemail never presses 1
    [(path, second)] = event(world, "call.hangup", "f6", control="v3:leg-a",
                             direction="outgoing", state=ask["client_state"],
                             hangup_cause="normal_clearing", hangup_source="caller")
    assert path == "/calls" and second["to"] == "+12125550102"
    assert meta(second)["b"] == world["b"]


def test_a_simultaneous_offer_bridges_the_first_to_answer_and_hangs_up_the_rest(world):
    admin = AdminClient(world["app"].test_client(), ADMIN_TOKEN)
    c = admin.post("/v1/buyers", json={
        "name": "C", "timezone": "UTC", "targets": [{"number": "+12125550103"}],
        "conversion": {"min_duration": 0}, "revenue": "10.00"}).get_json()["id"]
    plan = admin.post("/v1/routing-plans", json={
        "name": "Both", "tiers": [{"buyers": [world["b"], c], "mode": "simultaneous"}],
        "fallback": {}}).get_json()["id"]
    pool = admin.get("/v1/pools").get_json()["pools"][0]
    assert admin.patch(f"/v1/pools/{pool['id']}", json={"routing_plan": plan}).status_code == 200
    [(_, body)] = event(world, "call.initiated", "g1")
    dials = event(world, "call.answered", "g2", state=body["client_state"])
    assert sorted(d["to"] for _, d in dials) == ["+12125550102", "+12125550103"]
    by_buyer = {meta(d)["b"]: d for _, d in dials}
    for buyer, control in ((world["b"], "v3:leg-b"), (c, "v3:leg-c")):
        event(world, "call.initiated", f"g-{control}", control=control, direction="outgoing",
              state=by_buyer[buyer]["client_state"])
    sent = event(world, "call.answered", "g3", control="v3:leg-c", direction="outgoing",
                 state=by_buyer[c]["client_state"])
    assert sent == [("/calls/v3:caller/actions/bridge",
                     {"call_control_id": "v3:leg-c", "park_after_unbridge": "self",
                      "command_id": sent[0][1]["command_id"]}),
                    ("/calls/v3:leg-b/actions/hangup", {"command_id": sent[1][1]["command_id"]})]
