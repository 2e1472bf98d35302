"""Carrier webhooks: signatures (vendor test vectors), forwarding TwiML, idempotency, order."""

from __future__ import annotations

import base64
import itertools
import json
import time
import xml.etree.ElementTree as ET

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, select

from attribution.carriers import (
    SignatureError,
    check_telnyx_signature,
    check_twilio_signature,
    telnyx_recording_url,
)
from attribution.models import Call, CallEvent
from dni_server.extensions import db
from factories import (
    ADMIN_TOKEN,
    TWILIO_TOKEN,
    AdminClient,
    make_pool,
    make_site,
    numbers,
    post_session,
    twilio_call,
    twilio_post,
)

VECTOR_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
VECTOR_PARAMS = {"CallSid": "CA1234567890ABCDE", "Digits": "1234", "From": "+14158675309",
                 "To": "+18005551212", "Caller": "+14158675309"}
TELNYX_SEED = bytes(range(32))
TELNYX_PUBLIC = "A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg="


# -- signature test vectors (from Twilio's and Telnyx's documentation) ---------------------------------


@pytest.mark.parametrize("url, signature", [
    (VECTOR_URL, "RSOYDt4T1cUTdK1PDd93/VVr8B8="),
    ("https://mycompany.com:443/myapp.php?foo=1&bar=2", "kvajT1Ptam85bY51eRf/AJRuM3w="),
    ("http://mycompany.com:80/myapp.php?foo=1&bar=2", "0ZXoZLH/DfblKGATFgpif+LLRf4="),
    ("http://mycompany.com:1234/myapp.php?foo=1&bar=2", "Zmvh+3yNM1Phv2jhDCwEM3q5ebU="),
])
def test_twilio_vectors(url, signature):
    check_twilio_signature("12345", url, VECTOR_PARAMS, signature)


def test_twilio_vector_port_tolerance_and_forgery():
    # Twilio may sign with or without the default port: both are accepted.
    check_twilio_signature("12345", "https://mycompany.com:443/myapp.php?foo=1&bar=2",
                           VECTOR_PARAMS, "RSOYDt4T1cUTdK1PDd93/VVr8B8=")
    with pytest.raises(SignatureError):
        check_twilio_signature("12345", VECTOR_URL, dict(VECTOR_PARAMS, Digits="9"),
                               "RSOYDt4T1cUTdK1PDd93/VVr8B8=")
    with pytest.raises(SignatureError):
        check_twilio_signature("wrong", VECTOR_URL, VECTOR_PARAMS, "RSOYDt4T1cUTdK1PDd93/VVr8B8=")


def test_twilio_vector_multi_valued_params():
    from werkzeug.datastructures import MultiDict

    params = MultiDict([("Sid", "CA123"), ("SidAccount", "AC123"), ("Digits", "5678"),
                        ("Digits", "1234"), ("Digits", "1234")])
    check_twilio_signature("12345", VECTOR_URL, params, "IK+Dwps556ElfBT0I3Rgjkr1wJU=")


def test_caller_identity_fields_added_after_signing_are_tolerated():
    """Twilio is reported to add StirVerstat (and CallToken) after signing: a request
    signed without them still passes with them, and nothing else may be added."""
    from twilio.request_validator import RequestValidator
    from werkzeug.datastructures import MultiDict

    signed = [("CallSid", "CA1"), ("From", "+14158675309"), ("Digits", "1"), ("Digits", "2")]
    signature = RequestValidator("12345").compute_signature(VECTOR_URL, MultiDict(signed))
    check_twilio_signature("12345", VECTOR_URL, MultiDict(
        signed + [("StirVerstat", "TN-Validation-Passed-A"), ("CallToken", "%7B%7D")]),
        signature)
    with pytest.raises(SignatureError):  # any other field still breaks the signature
        check_twilio_signature("12345", VECTOR_URL, MultiDict(
            signed + [("StirVerstat", "TN-Validation-Passed-A"), ("To", "+19005550100")]),
            signature)
    with pytest.raises(SignatureError):  # and so does a changed repeated value
        check_twilio_signature("12345", VECTOR_URL, MultiDict(
            signed[:3] + [("Digits", "9"), ("StirVerstat", "TN-Validation-Passed-A")]),
            signature)


def test_twilio_vector_json_body_hash():
    url = VECTOR_URL + ("&bodySHA256=0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e"
                        "6620")
    check_twilio_signature("12345", url, '{"property": "value", "boolean": true}',
                           "a9nBmqA0ju/hNViExpshrM61xv4=")


def test_telnyx_vector():
    body = (b'{"data":{"event_type":"call.hangup","id":"0ccc7b54-4df3-4bca-a65a-3da1ecc777f0",'
            b'"occurred_at":"2026-01-01T00:00:00.000000Z","payload":{"call_control_id":"v3:abc",'
            b'"hangup_cause":"normal_clearing"},"record_type":"event"}}')
    signature = ("QkWDL4ksfK4Q4hF3UIIXHxRAjqddLLv5Z+95CbLrxmZ3l48qaedw/BjvuP+gsmI9OudgkduUBI1L/"
                 "Hq7WnPBCg==")
    check_telnyx_signature(TELNYX_PUBLIC, body, signature, "1767225600", now=1767225600 + 299)
    with pytest.raises(SignatureError, match="too far"):
        check_telnyx_signature(TELNYX_PUBLIC, body, signature, "1767225600", now=1767225600 + 301)
    with pytest.raises(SignatureError):
        check_telnyx_signature(TELNYX_PUBLIC, body + b" ", signature, "1767225600",
                               now=1767225600)


# -- Twilio webhooks ---------------------------------------------------------------------


@pytest.fixture
def twilio_app(make_app):
    return make_app(DNI_TWILIO_AUTH_TOKEN=TWILIO_TOKEN)


@pytest.fixture
def tclient(twilio_app):
    return twilio_app.test_client()


@pytest.fixture
def pool(twilio_app):
    admin = AdminClient(twilio_app.test_client(), ADMIN_TOKEN)
    site = make_site(admin)
    return make_pool(admin, site, numbers=numbers(2), record_calls=True) | {"site_key": site["key"]}


def calls_in(app) -> list[Call]:
    with app.app_context():
        return list(db.session.scalars(select(Call)))


def events_in(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(CallEvent))


def test_voice_webhook_forwards_with_twiml_and_records(twilio_app, tclient, pool):
    response = twilio_post(tclient, "/webhooks/twilio/voice",
                           twilio_call("CA" + "1" * 32, numbers(1)[0]))
    assert response.status_code == 200 and response.mimetype == "text/xml"
    dial = ET.fromstring(response.data).find("Dial")
    assert dial.get("answerOnBridge") == "true"
    assert dial.get("callerId") == "+14158675309"
    assert dial.get("action") == "http://localhost/webhooks/twilio/dial"
    assert dial.get("record") == "record-from-answer-dual"
    assert dial.get("recordingStatusCallback") == "http://localhost/webhooks/twilio/recording"
    number = dial.find("Number")
    assert number.text == "+12125550199"
    assert number.get("statusCallback") == "http://localhost/webhooks/twilio/status"
    assert number.get("statusCallbackEvent") == "initiated ringing answered completed"
    [call] = calls_in(twilio_app)
    assert (call.provider_call_id, call.to_number, call.status) == ("CA" + "1" * 32,
                                                                    numbers(1)[0], "ringing")


def test_invalid_caller_id_is_replaced_by_the_tracking_number(tclient, pool):
    response = twilio_post(tclient, "/webhooks/twilio/voice",
                           twilio_call("CA" + "2" * 32, numbers(1)[0], caller="anonymous"))
    assert ET.fromstring(response.data).find("Dial").get("callerId") == numbers(1)[0]


def test_unknown_number_is_kept_and_answered_politely(twilio_app, tclient, pool):
    response = twilio_post(tclient, "/webhooks/twilio/voice",
                           twilio_call("CA" + "3" * 32, "+12125550123"))
    root = ET.fromstring(response.data)
    assert root.find("Say") is not None and root.find("Hangup") is not None
    [call] = calls_in(twilio_app)
    assert call.method == "unattributed"


@pytest.mark.parametrize("headers", [{}, {"X-Twilio-Signature": "bm9wZQ=="}])
def test_forged_or_missing_signature_is_403_and_stores_nothing(twilio_app, tclient, pool,
                                                              headers):
    params = twilio_call("CA" + "4" * 32, numbers(1)[0])
    response = tclient.post("/webhooks/twilio/voice", data=params, headers=headers)
    assert response.status_code == 403
    assert response.json["error"]["code"] == "forbidden"
    signed_other = twilio_post(tclient, "/webhooks/twilio/voice", params, token="other-token")
    assert signed_other.status_code == 403
    assert calls_in(twilio_app) == [] and events_in(twilio_app) == 0


def test_signature_is_checked_against_the_public_url_behind_a_proxy(make_app):
    app = make_app(DNI_TWILIO_AUTH_TOKEN=TWILIO_TOKEN, DNI_PUBLIC_URL="https://dni.example.com")
    client = app.test_client()
    params = twilio_call("CA" + "5" * 32, "+12125550123")
    # Signed for the public URL Twilio called, received on an internal address.
    from twilio.request_validator import RequestValidator

    signature = RequestValidator(TWILIO_TOKEN).compute_signature(
        "https://dni.example.com/webhooks/twilio/voice?x=%20y", params)
    ok = client.post("/webhooks/twilio/voice?x=%20y", data=params,
                     headers={"X-Twilio-Signature": signature}, base_url="http://10.0.0.5:8000")
    assert ok.status_code == 200
    # A signature over the internal address is not what Twilio sends: refused.
    internal = RequestValidator(TWILIO_TOKEN).compute_signature(
        "http://10.0.0.5:8000/webhooks/twilio/voice?x=%20y", params)
    refused = client.post("/webhooks/twilio/voice?x=%20y", data=params,
                          headers={"X-Twilio-Signature": internal},
                          base_url="http://10.0.0.5:8000")
    assert refused.status_code == 403


def test_twilio_webhooks_are_off_without_a_token(client):
    assert client.post("/webhooks/twilio/voice", data={"CallSid": "CA1"}).status_code == 403


def test_the_same_webhook_delivered_many_times_is_one_call(twilio_app, tclient, pool):
    params = twilio_call("CA" + "6" * 32, numbers(1)[0])
    answers = {twilio_post(tclient, "/webhooks/twilio/voice", params).get_data() for _ in range(20)}
    assert len(answers) == 1
    status = twilio_call("CA" + "6" * 32, numbers(1)[0], CallStatus="completed",
                         CallDuration="80", SequenceNumber="3", CallbackSource="call-progress-events")
    for _ in range(5):
        twilio_post(tclient, "/webhooks/twilio/status", status)
    [call] = calls_in(twilio_app)
    assert call.duration == 80 and events_in(twilio_app) == 2


def test_status_callbacks_out_of_order_never_regress(twilio_app, tclient, pool):
    sid = "CA" + "7" * 32
    twilio_post(tclient, "/webhooks/twilio/voice", twilio_call(sid, numbers(1)[0]))

    def status(state, seq, **extra):
        return twilio_post(tclient, "/webhooks/twilio/status", twilio_call(
            sid, numbers(1)[0], CallStatus=state, SequenceNumber=str(seq),
            Timestamp="Sun, 25 Mar 2018 09:53:19 +0000", **extra))

    assert status("completed", 3, CallDuration="49", Duration="1").status_code == 204
    status("in-progress", 2)
    status("ringing", 1)
    [call] = calls_in(twilio_app)
    assert call.status == "completed"
    assert call.duration == 49  # CallDuration, not the billed minutes in Duration
    assert call.ended_at.isoformat() == "2018-03-25T09:53:19+00:00"


def test_the_forwarded_leg_gives_talk_time_and_answer(twilio_app, tclient, pool):
    sid = "CA" + "8" * 32
    twilio_post(tclient, "/webhooks/twilio/voice", twilio_call(sid, numbers(1)[0]))
    child = "CA" + "9" * 32
    for seq, state, extra in [(0, "initiated", {}), (1, "ringing", {}), (2, "in-progress", {}),
                              (3, "completed", {"CallDuration": "61"})]:
        twilio_post(tclient, "/webhooks/twilio/status", twilio_call(
            child, "+12125550199", ParentCallSid=sid, CallStatus=state,
            SequenceNumber=str(seq), **extra))
    # The caller's own leg ends later and is longer (it includes the ringing).
    twilio_post(tclient, "/webhooks/twilio/status", twilio_call(
        sid, numbers(1)[0], CallStatus="completed", CallDuration="75", SequenceNumber="1"))
    dial = twilio_post(tclient, "/webhooks/twilio/dial", twilio_call(
        sid, numbers(1)[0], DialCallStatus="completed", DialCallSid=child,
        DialCallDuration="61", DialBridged="true"))
    assert ET.fromstring(dial.data).find("Hangup") is not None
    recording = twilio_post(tclient, "/webhooks/twilio/recording", {
        "CallSid": sid, "RecordingSid": "RE1", "RecordingUrl": "https://api.twilio.com/rec/RE1",
        "RecordingStatus": "completed"})
    assert recording.status_code == 204
    [call] = calls_in(twilio_app)
    assert (call.status, call.dial_status, call.duration) == ("completed", "completed", 61)
    assert call.answered_at is not None
    assert call.recording_url == "https://api.twilio.com/rec/RE1"


# -- Telnyx ------------------------------------------------------------------------------


@pytest.fixture
def telnyx_app(make_app):
    return make_app(DNI_TELNYX_PUBLIC_KEY=TELNYX_PUBLIC)


def telnyx_post(client, body: dict, *, key: bytes = TELNYX_SEED, at: int | None = None):
    raw = json.dumps(body).encode()
    stamp = str(int(time.time()) if at is None else at)
    signature = Ed25519PrivateKey.from_private_bytes(key).sign(stamp.encode() + b"|" + raw)
    return client.post("/webhooks/telnyx", data=raw, headers={
        "Content-Type": "application/json", "telnyx-timestamp": stamp,
        "telnyx-signature-ed25519": base64.b64encode(signature).decode()})


def telnyx_event(kind: str, event_id: str, at: str, **payload) -> dict:
    return {"data": {"record_type": "event", "event_type": kind, "id": event_id,
                     "occurred_at": at, "payload": {
                         "call_control_id": "v3:ctl", "call_leg_id": "leg-1",
                         "call_session_id": "sess-1", "from": "+14158675309",
                         "to": numbers(1)[0], "direction": "incoming", **payload}},
            "meta": {"attempt": 1}}


def test_telnyx_events_in_any_order_give_the_duration(telnyx_app):
    admin = AdminClient(telnyx_app.test_client(), ADMIN_TOKEN)
    make_pool(admin, make_site(admin), numbers=numbers(1))
    client = telnyx_app.test_client()
    hangup = telnyx_event("call.hangup", "e3", "2026-05-01T10:02:05.000000Z",
                          hangup_cause="normal_clearing", hangup_source="caller")
    answered = telnyx_event("call.answered", "e2", "2026-05-01T10:00:55.500000Z")
    initiated = telnyx_event("call.initiated", "e1", "2026-05-01T10:00:50Z", state="parked")
    for body in (hangup, answered, hangup, initiated, answered):
        assert telnyx_post(client, body).status_code == 204
    [call] = calls_in(telnyx_app)
    assert call.provider == "telnyx" and call.provider_call_id == "sess-1"
    assert (call.status, call.duration) == ("completed", 69)
    assert events_in(telnyx_app) == 3


def test_telnyx_forged_or_stale_is_403(telnyx_app):
    client = telnyx_app.test_client()
    body = telnyx_event("call.initiated", "x1", "2026-05-01T10:00:50Z")
    assert telnyx_post(client, body, key=bytes(32)).status_code == 403
    assert telnyx_post(client, body, at=int(time.time()) - 301).status_code == 403
    assert client.post("/webhooks/telnyx", json=body).status_code == 403
    assert calls_in(telnyx_app) == []


def test_telnyx_non_call_events_are_acknowledged(telnyx_app):
    client = telnyx_app.test_client()
    assert telnyx_post(client, {"data": {"event_type": "message.sent", "payload": {}}}) \
        .status_code == 204
    assert telnyx_post(client, {"unexpected": True}).status_code == 204
    assert calls_in(telnyx_app) == []


def test_session_numbers_can_be_called_through_telnyx(telnyx_app):
    admin = AdminClient(telnyx_app.test_client(), ADMIN_TOKEN)
    site = make_site(admin)
    make_pool(admin, site, numbers=numbers(1))
    session = post_session(telnyx_app.test_client(), site["key"],
                           "https://x.example/?utm_source=bing&msclkid=M1").get_json()
    from datetime import UTC, datetime

    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    telnyx_post(telnyx_app.test_client(), telnyx_event("call.initiated", "s1", now))
    [call] = calls_in(telnyx_app)
    assert call.session_id == session["session_id"] and call.msclkid == "M1"


class TransferReceiver:
    """A local stand-in for Telnyx's call-command API that checks each request strictly."""

    def __init__(self, busy_first: int = 0):
        import http.server
        import threading

        received = self.received = []
        busy = [busy_first]

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                received.append((self.path, self.headers["Authorization"], body))
                ok = (self.path.endswith("/actions/transfer")
                      and self.headers["Authorization"] == "Bearer KEY_test"
                      and body["to"].startswith("+") and "command_id" in body)
                if busy[0] > 0:  # Telnyx having a bad moment
                    busy[0] -= 1
                    self.send_response(503)
                    self.end_headers()
                    return
                self.send_response(200 if ok else 422)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"data": {"result": "ok"}}' if ok else b'{"errors": []}')

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/v2"


def wait_until(condition, seconds: float = 10.0):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_telnyx_calls_are_transferred_to_the_destination(make_app):
    receiver = TransferReceiver()
    try:
        app = make_app(DNI_TELNYX_PUBLIC_KEY=TELNYX_PUBLIC, DNI_TELNYX_API_KEY="KEY_test",
                       DNI_TELNYX_API_URL=receiver.url)
        admin = AdminClient(app.test_client(), ADMIN_TOKEN)
        make_pool(admin, make_site(admin), numbers=numbers(1))
        client = app.test_client()
        initiated = telnyx_event("call.initiated", "t1", "2026-05-01T10:00:50Z")
        assert telnyx_post(client, initiated).status_code == 204
        wait_until(lambda: receiver.received)  # sent off the request path
        assert receiver.received == [("/v2/calls/v3:ctl/actions/transfer", "Bearer KEY_test",
                                      {"to": "+12125550199", "from": "+14158675309",
                                       "command_id": "t1"})]
        # The transferred leg's own events describe the forward, not a new call.
        outgoing = telnyx_event("call.answered", "t2", "2026-05-01T10:00:58Z",
                                direction="outgoing", call_control_id="v3:legb")
        telnyx_post(client, outgoing)
        telnyx_post(client, telnyx_event("call.hangup", "t3", "2026-05-01T10:02:00Z",
                                         hangup_cause="normal_clearing"))
        [call] = calls_in(app)
        assert (call.status, call.duration) == ("completed", 62)
        assert len(receiver.received) == 1
    finally:
        receiver.server.shutdown()


def test_a_telnyx_transfer_is_sent_again_with_its_command_id_until_telnyx_takes_it(make_app):
    receiver = TransferReceiver(busy_first=2)
    try:
        app = make_app(DNI_TELNYX_PUBLIC_KEY=TELNYX_PUBLIC, DNI_TELNYX_API_KEY="KEY_test",
                       DNI_TELNYX_API_URL=receiver.url)
        app.extensions["dni"].commands.delays = (0.05, 0.05, 0.05)
        admin = AdminClient(app.test_client(), ADMIN_TOKEN)
        make_pool(admin, make_site(admin), numbers=numbers(1))
        initiated = telnyx_event("call.initiated", "t1", "2026-05-01T10:00:50Z")
        assert telnyx_post(app.test_client(), initiated).status_code == 204
        wait_until(lambda: len(receiver.received) == 3)
        time.sleep(0.2)  # and nothing more once Telnyx has taken it
        assert [body["command_id"] for _, _, body in receiver.received] == ["t1"] * 3
        [call] = calls_in(app)
        assert call.provider == "telnyx"
    finally:
        receiver.server.shutdown()


# -- Telnyx: the order of a forwarded call's events, and its recording -------------------


FORWARD_EVENTS = {
    "forward answered": ("call.answered", "2026-05-01T10:00:54.000000Z",
                         {"direction": "outgoing", "call_control_id": "v3:legb"}),
    "forward hangup": ("call.hangup", "2026-05-01T10:02:09.000000Z",
                       {"direction": "outgoing", "call_control_id": "v3:legb",
                        "hangup_cause": "normal_clearing", "hangup_source": "callee"}),
    "caller hangup": ("call.hangup", "2026-05-01T10:02:09.000000Z",
                      {"hangup_cause": "normal_clearing", "hangup_source": "callee"}),
}


def test_telnyx_talk_time_and_qualification_do_not_depend_on_event_order(telnyx_app):
    admin = AdminClient(telnyx_app.test_client(), ADMIN_TOKEN)
    make_pool(admin, make_site(admin), numbers=numbers(1), qualification={"min_duration": 60})
    client = telnyx_app.test_client()
    orders = list(itertools.permutations(FORWARD_EVENTS))
    for n, order in enumerate(orders):
        session = {"call_session_id": f"order-{n}"}
        telnyx_post(client, telnyx_event("call.initiated", f"o{n}-init", "2026-05-01T10:00:50Z",
                                         state="parked", **session))
        for name in order:  # the forwarded leg's hang-up comes before its answer in some
            kind, at, payload = FORWARD_EVENTS[name]
            body = telnyx_event(kind, f"o{n}-{name}", at, **payload, **session)
            assert telnyx_post(client, body).status_code == 204
    calls = sorted(calls_in(telnyx_app), key=lambda c: c.provider_call_id)
    assert len(calls) == len(orders)
    for call in calls:
        assert call.answered_at.isoformat() == "2026-05-01T10:00:54+00:00", call.provider_call_id
        assert (call.status, call.dial_status, call.duration) == ("completed", "completed", 75)
        assert (call.qualified, call.qualification_failures) == (True, [])


def test_telnyx_recording_pools_are_recorded_and_the_recording_stored(make_app):
    receiver = TransferReceiver()
    try:
        app = make_app(DNI_TELNYX_PUBLIC_KEY=TELNYX_PUBLIC, DNI_TELNYX_API_KEY="KEY_test",
                       DNI_TELNYX_API_URL=receiver.url)
        admin = AdminClient(app.test_client(), ADMIN_TOKEN)
        make_pool(admin, make_site(admin), numbers=numbers(1), record_calls=True)
        client = app.test_client()
        telnyx_post(client, telnyx_event("call.initiated", "r1", "2026-05-01T10:00:50Z"))
        wait_until(lambda: receiver.received)
        [(_, _, body)] = receiver.received
        assert body == {"to": "+12125550199", "from": "+14158675309", "command_id": "r1",
                        "record": "record-from-answer", "record_channels": "dual",
                        "record_format": "wav"}
        wav = "https://s3.amazonaws.com/telephony-recorder-prod/leg-1.wav?X-Amz-Signature=s"
        saved = telnyx_event("call.recording.saved", "r2", "2026-05-01T10:02:01Z",
                             channels="dual", recording_urls={
                                 "mp3": wav.replace(".wav", ".mp3"), "wav": wav},
                             public_recording_urls={},
                             recording_started_at="2026-05-01T10:00:58Z",
                             recording_ended_at="2026-05-01T10:02:00Z")
        for _ in range(2):  # delivered twice: one event
            assert telnyx_post(client, saved).status_code == 204
        [call] = calls_in(app)
        assert call.recording_url == wav
        assert events_in(app) == 2
    finally:
        receiver.server.shutdown()


@pytest.mark.parametrize("payload, url", [
    ({"recording_urls": {"mp3": "https://r/a.mp3"}}, "https://r/a.mp3"),
    ({"recording_urls": {"mp3": "https://r/a.mp3", "wav": "https://r/a.wav"}}, "https://r/a.wav"),
    ({"recording_urls": {"wav": "https://r/a.wav"}, "public_recording_urls": {
        "wav": "https://p/a.wav"}}, "https://p/a.wav"),  # kept: the signed one expires
    ({"recording_urls": {"wav": "javascript:alert(1)", "mp3": 7}}, None),
    ({"recording_urls": ["https://r/a.wav"], "public_recording_urls": None}, None),
    ({}, None),
])
def test_telnyx_recording_links(payload, url):
    assert telnyx_recording_url(payload) == url
