"""The pre-ring check on signed carrier webhooks: attestation values stored as signals,
listed callers rejected before ringing on both carriers (a reject, not a dial),
challenged callers who do and do not press 1, and the cost on the new-call path."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from carriers.conftest import carriers, telnyx_options  # noqa: F401  (fixtures)
from carriers.scripts import SILENCE, Caller, Keys
from sqlalchemy import event, select

from attribution.models import Call
from dni_server.extensions import db
from factories import (
    ADMIN_TOKEN,
    TWILIO_TOKEN,
    AdminClient,
    make_site,
    numbers,
    twilio_call,
    twilio_post,
)

HONEST = "+13105550142"
DESTINATION = "+12125550199"


@pytest.fixture
def world(make_app):
    app = make_app(DNI_TWILIO_AUTH_TOKEN=TWILIO_TOKEN)
    admin = AdminClient(app.test_client(), ADMIN_TOKEN)
    site = make_site(admin)
    # A static number: its calls are not weighed for a pool's lease (scraped, instant).
    static = admin.post("/v1/static-numbers", json={
        "site": site["key"], "number": numbers(1, start=171)[0], "destination": DESTINATION,
        "source": "radio", "medium": "offline"})
    assert static.status_code == 201, static.get_json()
    policy = admin.put(f"/v1/sites/{site['key']}/fraud-policy", json={"settings": {}})
    assert policy.status_code == 200 and policy.get_json()["effective"]["enforce"] is True
    return {"app": app, "admin": admin, "site": site, "to": numbers(1, start=171)[0]}


def voice(world, sid: str, caller: str = HONEST, **extra) -> ET.Element:
    response = twilio_post(world["app"].test_client(), "/webhooks/twilio/voice",
                           twilio_call(sid, world["to"], caller, **extra))
    assert response.status_code == 200, response.get_data(as_text=True)
    return ET.fromstring(response.get_data(as_text=True))


def fraud_of(world, sid: str) -> dict:
    response = world["admin"].get(f"/v1/calls/{sid}/fraud")
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def signal(state: dict, name: str) -> dict:
    return next(s for s in state["signals"] if s["name"] == name)


@pytest.mark.parametrize(("verstat", "held"), [
    ("TN-Validation-Passed-A", False), ("TN-Validation-Passed-B", False),
    ("TN-Validation-Passed-C", False), ("TN-Validation-Failed-A", True),
    ("TN-Validation-Failed-C", True), ("No-TN-Validation", False), (None, False),
])
def test_every_attestation_value_is_stored_and_weighed(world, verstat, held):
    extra = {"StirVerstat": verstat} if verstat else {}
    answer = voice(world, "CA-att", **extra)
    assert [e.tag for e in answer] == ["Dial"]  # never enough alone to refuse a caller
    state = fraud_of(world, "CA-att")
    found = signal(state, "stir_shaken")
    assert (found["value"] or {}).get("raw") == verstat
    assert found["fired"] is (verstat not in (None, "TN-Validation-Passed-A",
                                              "TN-Validation-Passed-B"))
    assert (state["review"] or {}).get("state") == ("pending" if held else None), state
    assert state["qualified"] is not held
    assert {c["signal"] for c in state["contributions"]} == (
        {"stir_shaken"} if found["fired"] else set())


def test_a_listed_prefix_is_rejected_before_ringing_and_stored(world):
    added = world["admin"].post("/v1/block-list", json={"value": "+1415555", "reason": "farm"})
    assert added.status_code == 201, added.get_json()
    answer = voice(world, "CA-listed", "+14155550177")
    assert [e.tag for e in answer] == ["Reject"]  # a reject, not a dial
    state = fraud_of(world, "CA-listed")
    assert (state["action"], state["risk_score"]) == ("block", 100)
    assert signal(state, "listed")["value"]["match"] == "+1415555"
    # Another caller still gets through.
    assert [e.tag for e in voice(world, "CA-ok", HONEST)] == ["Dial"]


def challenge_withheld_ids(world) -> None:
    """A site that challenges callers who withhold their id (45 points)."""
    response = world["admin"].put(f"/v1/sites/{world['site']['key']}/fraud-policy",
                                  json={"settings": {"flag": 45, "challenge": 45}})
    assert response.status_code == 200, response.get_json()


def test_a_withheld_caller_id_alone_is_recorded_not_held_by_default(world):
    assert [e.tag for e in voice(world, "CA-anon0", "anonymous")] == ["Dial"]
    state = fraud_of(world, "CA-anon0")
    assert (state["action"], state["risk_score"], state["review"]) == ("none", 45, None)
    assert signal(state, "caller_id_invalid") == {
        "name": "caller_id_invalid", "value": "anonymous", "fired": True}


def test_a_challenged_caller_who_presses_1_is_forwarded(world):
    challenge_withheld_ids(world)
    answer = voice(world, "CA-anon", "anonymous")
    gather = answer.find("Gather")
    assert gather is not None and gather.get("action").endswith("/webhooks/twilio/challenge/0")
    assert answer.find("Dial") is None
    client = world["app"].test_client()
    params = twilio_call("CA-anon", world["to"], "anonymous")
    passed = ET.fromstring(twilio_post(client, "/webhooks/twilio/challenge/0",
                                       params | {"Digits": "1"}).get_data(as_text=True))
    assert passed.find("Dial/Number").text == DESTINATION
    assert fraud_of(world, "CA-anon")["action"] == "challenge_passed"


def test_a_challenged_caller_who_does_not_press_1_is_asked_again_then_hung_up(world):
    challenge_withheld_ids(world)
    voice(world, "CA-anon2", "anonymous")
    client = world["app"].test_client()
    params = twilio_call("CA-anon2", world["to"], "anonymous")
    again = ET.fromstring(twilio_post(client, "/webhooks/twilio/challenge/0",
                                      params | {"Digits": "7"}).get_data(as_text=True))
    assert again.find("Gather").get("action").endswith("/challenge/1")
    gone = ET.fromstring(twilio_post(client, "/webhooks/twilio/challenge/1",
                                     params | {"Digits": ""}).get_data(as_text=True))
    assert [e.tag for e in gone] == ["Hangup"]
    assert fraud_of(world, "CA-anon2")["action"] == "challenge_failed"


def test_an_unsigned_challenge_answer_is_refused(world):
    response = twilio_post(world["app"].test_client(), "/webhooks/twilio/challenge/0",
                           twilio_call("CA-x", world["to"]) | {"Digits": "1"},
                           signature="forged")
    assert response.status_code == 403


def test_the_pre_ring_check_adds_no_sql_and_one_redis_round_trip(world, monkeypatch):
    """Counted like tests/routing/test_routing_twilio.py: the same call with the check on
    and off (the check's map warm, as in a running service)."""
    from dni_server.api import fraud

    app = world["app"]
    with app.test_request_context():
        app.extensions["dni"].routes.routes()
        fraud.screen().directory.current()

    def cost(sid: str, caller: str, on: bool) -> tuple[int, int]:
        if not on:
            monkeypatch.setattr(fraud, "twilio_pre_ring", lambda _event: None)
        redis = app.extensions["dni"].redis_admin
        sent, statements = [0], [0]
        send = redis.execute_command

        def counted(*args, **kwargs):
            sent[0] += 1
            return send(*args, **kwargs)

        def before(*_args):
            statements[0] += 1

        monkeypatch.setattr(redis, "execute_command", counted)
        with app.app_context():
            engine = db.engine
        event.listen(engine, "before_cursor_execute", before)
        try:
            voice(world, sid, caller)
        finally:
            event.remove(engine, "before_cursor_execute", before)
            monkeypatch.undo()
        return sent[0], statements[0]

    off_redis, off_sql = cost("CA-off", "+14155550161", on=False)
    on_redis, on_sql = cost("CA-on", "+14155550162", on=True)
    assert on_redis == off_redis + 1
    assert on_sql == off_sql


def test_blocked_on_both_carriers_over_http(carriers):  # noqa: F811
    carriers.make_pool()
    added = carriers.admin.post("/v1/block-list", json={"value": "+1415867", "reason": "bots"})
    assert added.status_code == 201
    number = numbers(3)[0]  # the pool's first number (Carriers.make_pool)

    twilio = carriers.twilio.call(number, Caller(number="+14158675309"))
    assert twilio.errors == []
    assert [v["verb"] for v in twilio.verbs()] == ["Reject"]
    assert twilio.offers == []

    telnyx = carriers.telnyx.call(number, Caller(number="+14158675309"))
    assert carriers.telnyx.errors == []
    assert [c["name"] for c in telnyx.acted()] == ["reject"]
    with carriers.app.app_context():
        rows = db.session.scalars(select(Call).order_by(Call.id)).all()
        assert [(c.provider, c.fraud_action, c.risk_score) for c in rows] == [
            ("twilio", "block", 100), ("telnyx", "block", 100)]


def test_a_challenge_on_the_twilio_simulator(carriers):  # noqa: F811
    pool = carriers.make_pool()
    number = numbers(3)[0]  # the pool's first number (Carriers.make_pool)
    carriers.admin.put(f"/v1/sites/{pool['site_key']}/fraud-policy",
                       json={"settings": {"flag": 5, "challenge": 10, "block": 90,
                                          "expected_countries": ["GB"]}})
    presses = carriers.twilio.call(number, Caller(number="+14158675309", keys=(Keys("1"),)))
    assert presses.errors == []
    silent = carriers.twilio.call(number, Caller(number="+14158675310", keys=(SILENCE, SILENCE)))
    assert silent.errors == []
    assert presses.offers and not silent.offers
    def verbs(call):
        return [v["verb"] for v in call.verbs() if v["verb"] != "Say"]

    assert verbs(silent) == ["Gather", "Gather", "Hangup"]  # asked twice, then hung up
    assert verbs(presses)[:2] == ["Gather", "Dial"]


def test_a_site_without_a_policy_records_scores_and_only_blocks_listed_callers(make_app):
    app = make_app(DNI_TWILIO_AUTH_TOKEN=TWILIO_TOKEN)
    admin = AdminClient(app.test_client(), ADMIN_TOKEN)
    site = make_site(admin)
    admin.post("/v1/static-numbers", json={"site": site["key"], "number": numbers(1)[0],
                                           "destination": DESTINATION, "source": "tv",
                                           "medium": "offline"})
    world = {"app": app, "admin": admin, "to": numbers(1)[0]}
    answer = voice(world, "CA-obs", HONEST, StirVerstat="TN-Validation-Failed-A")
    assert [e.tag for e in answer] == ["Dial"]
    state = fraud_of(world, "CA-obs")
    assert (state["risk_score"], state["action"], state["review"], state["qualified"]) == (
        50, "none", None, True)
    admin.post("/v1/block-list", json={"value": HONEST})
    assert [e.tag for e in voice(world, "CA-obs2", HONEST)] == ["Reject"]


# -- Telnyx, signed ----------------------------------------------------------------------------

TELNYX_SEED = b"h4-fraud-telnyx-test-seed-32byte"


def telnyx_post(client, body: dict):
    import base64
    import json
    import time

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    raw = json.dumps(body).encode()
    stamp = str(int(time.time()))
    signature = Ed25519PrivateKey.from_private_bytes(TELNYX_SEED).sign(
        stamp.encode() + b"|" + raw)
    return client.post("/webhooks/telnyx", data=raw, headers={
        "Content-Type": "application/json", "telnyx-timestamp": stamp,
        "telnyx-signature-ed25519": base64.b64encode(signature).decode()})


@pytest.mark.parametrize(("level", "validated", "fired"), [
    ("A", True, False), ("B", True, False), ("C", True, True), ("A", False, True),
    (None, None, False),
])
def test_telnyx_attestation_is_stored(make_app, level, validated, fired):
    import base64

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    public = base64.b64encode(Ed25519PrivateKey.from_private_bytes(TELNYX_SEED).public_key()
                              .public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()
    app = make_app(DNI_TELNYX_PUBLIC_KEY=public)
    admin = AdminClient(app.test_client(), ADMIN_TOKEN)
    site = make_site(admin)
    admin.post("/v1/static-numbers", json={"site": site["key"], "number": numbers(1)[0],
                                           "destination": DESTINATION, "source": "tv",
                                           "medium": "offline"})
    shaken = {} if level is None else {"shaken_stir_attestation": level,
                                       "shaken_stir_validated": validated}
    body = {"data": {"record_type": "event", "event_type": "call.initiated", "id": "ev-1",
                     "occurred_at": "2026-12-06T10:00:00Z", "payload": {
                         "call_control_id": "v3:cc-1", "call_session_id": "sess-1",
                         "from": HONEST, "to": numbers(1)[0], "direction": "incoming",
                         "state": "parked", **shaken}}}
    assert telnyx_post(app.test_client(), body).status_code == 204
    state = fraud_of({"admin": admin}, "sess-1")
    found = signal(state, "stir_shaken")
    assert found["fired"] is fired
    assert (found["value"] or {}).get("level") == level
    assert (found["value"] or {}).get("verified") == validated
