"""The Twilio simulator itself, against a small scripted TwiML app that checks every signature:
Gather (numDigits, finishOnKey, timeout, falling through), Redirect, Reject, and Dial
(several numbers at once, whispers that accept or hang up, busy, no answer, a caller who
leaves while it rings)."""

from __future__ import annotations

import threading

import pytest
from flask import Flask, Response, request
from ports import free_port
from twilio.request_validator import RequestValidator
from werkzeug.serving import make_server

from carriers.scripts import SILENCE, Caller, Keys, Line
from carriers.twilio_sim import TwilioSimulator

TOKEN = "sim-auth-token"
A, B, C = "+12125550101", "+12125550102", "+12125550103"


class ScriptedApp:
    """A TwiML app over HTTP: ``docs[path]`` is the TwiML answered there (a callable gets
    the form); every request's X-Twilio-Signature is checked and kept."""

    def __init__(self):
        self.docs: dict = {}
        self.seen: list[tuple[str, dict, bool]] = []
        flask_app = Flask("scripted")

        @flask_app.route("/<path:path>", methods=["GET", "POST"])
        def answer(path):
            params = request.form.to_dict() if request.method == "POST" else {}
            valid = RequestValidator(TOKEN).validate(
                request.url, params, request.headers.get("X-Twilio-Signature", ""))
            self.seen.append(("/" + path, request.values.to_dict(), valid))
            doc = self.docs.get("/" + path, "")
            doc = doc(request.values) if callable(doc) else doc
            return Response(f"<Response>{doc}</Response>", mimetype="text/xml")

        self.server = make_server("127.0.0.1", free_port(), flask_app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def form(self, path: str) -> list[dict]:
        return [params for seen, params, _ in self.seen if seen == path]


@pytest.fixture
def twiml():
    app = ScriptedApp()
    yield app
    app.server.shutdown()


def simulator(app: ScriptedApp, **options) -> TwilioSimulator:
    return TwilioSimulator(app.url, TOKEN, voice_path="/voice", status_path="/status", **options)


ZIP_IVR = ('<Gather numDigits="5" timeout="4" action="/zip"><Say>Enter your zip code</Say>'
           '</Gather><Say>We did not get that</Say><Hangup/>')


@pytest.mark.parametrize("keys, digits, how", [
    (Keys("94105"), "94105", "digits"),
    (Keys("12#"), "12", "finish"),  # the finish key is not part of the input
    (Keys("941", gap=5.0), "9", "timeout"),  # a gap longer than the timeout ends the input
])
def test_gather_posts_the_digits_to_its_action(twiml, keys, digits, how):
    twiml.docs = {"/voice": ZIP_IVR, "/zip": "<Say>Thanks</Say>"}
    call = simulator(twiml).call(A, Caller(keys=(keys,)))
    assert call.errors == []
    assert [f["Digits"] for f in twiml.form("/zip")] == [digits]
    assert [e["how"] for e in call.transcript if e["kind"] == "keys"] == [how]
    assert call.said() == ["Enter your zip code", "Thanks"]
    assert all(valid for _, _, valid in twiml.seen)


@pytest.mark.parametrize("keys", [SILENCE, Keys("94105", after=6.0)])
def test_gather_without_input_falls_through_to_the_next_verb(twiml, keys):
    twiml.docs = {"/voice": ZIP_IVR}
    call = simulator(twiml).call(A, Caller(keys=(keys,)))
    assert twiml.form("/zip") == []
    assert call.said() == ["Enter your zip code", "We did not get that"]
    assert call.verbs()[-1]["verb"] == "Hangup"


def test_redirect_and_status_callback_with_virtual_duration(twiml):
    twiml.docs = {"/voice": '<Pause length="10"/><Redirect>next</Redirect>',
                  "/next": '<Say>one two three four five</Say>'}
    call = simulator(twiml).call(A)
    assert [v["verb"] for v in call.verbs()] == ["Pause", "Redirect", "Say"]
    [status] = twiml.form("/status")
    assert (status["CallStatus"], status["CallDuration"]) == ("completed", "12")
    assert call.duration == 12


def test_reject_never_answers(twiml):
    twiml.docs = {"/voice": '<Reject reason="busy"/>'}
    call = simulator(twiml).call(A)
    assert call.status == "busy" and call.answered_at is None
    assert twiml.form("/status")[0]["CallStatus"] == "busy"


SCREEN = ('<Gather numDigits="1" timeout="3" action="/screen"><Say>Press 1 to take it</Say>'
          '</Gather><Hangup/>')


def screen(form) -> str:
    return "" if form.get("Digits") == "1" else "<Hangup/>"


def dial_doc(*targets: str, timeout: int = 20, whisper: bool = True) -> str:
    url = ' url="/whisper"' if whisper else ""
    nouns = "".join(f'<Number{url} statusCallback="/leg" '
                    f'statusCallbackEvent="initiated ringing answered completed">{t}</Number>'
                    for t in targets)
    return (f'<Dial action="/dialed" timeout="{timeout}" answerOnBridge="true" '
            f'record="record-from-answer" recordingStatusCallback="/recording">{nouns}</Dial>')


def test_simultaneous_dial_the_first_to_accept_wins_and_a_voicemail_cannot(twiml):
    twiml.docs = {"/voice": dial_doc(A, B, C), "/whisper": SCREEN, "/screen": screen,
                  "/dialed": "<Hangup/>"}
    call = simulator(twiml).call("+18005550100", Caller(talk=90), lines={
        A: Line.voicemail(), B: Line.declines(after=2), C: Line.accepts(after=6)})
    assert call.errors == []
    [offers] = call.offers
    assert {o.target: o.outcome for o in offers} == {A: "declined", B: "declined",
                                                      C: "completed"}
    winner = call.bridged
    assert winner.target == C
    dialed = twiml.form("/dialed")[0]
    assert (dialed["DialCallStatus"], dialed["DialCallSid"]) == ("completed", winner.leg.sid)
    assert dialed["DialBridged"] == "true"
    # C answered at 6, its whisper took 2 s of speech and 1 s to press the key: bridged at 9
    # and the caller talked 90 s; the call is answered at the bridge (answerOnBridge).
    assert winner.bridged_at == 9 and dialed["DialCallDuration"] == "93"
    assert call.duration == 90
    assert twiml.form("/recording")[0]["RecordingDuration"] == "90"
    # Each leg's whisper ran on that leg, with that leg's CallSid.
    whispers = twiml.form("/whisper")
    assert {w["CallSid"] for w in whispers} == {o.leg.sid for o in offers}
    assert all(w["ParentCallSid"] == call.sid for w in whispers)
    legs = {}
    for form in twiml.form("/leg"):
        legs.setdefault(form["To"], []).append(form["CallStatus"])
    assert legs[C] == ["initiated", "ringing", "in-progress", "completed"]
    assert legs[A] == ["initiated", "ringing", "in-progress", "completed"]
    assert all(valid for _, _, valid in twiml.seen)


def test_a_leg_answering_after_the_call_is_taken_is_hung_up_ringing(twiml):
    twiml.docs = {"/voice": dial_doc(A, B, whisper=False), "/dialed": "<Hangup/>"}
    call = simulator(twiml).call("+18005550100", lines={A: Line.answers(2), B: Line.answers(8)})
    outcomes = {o.target: o.outcome for o in call.offers[0]}
    assert outcomes == {A: "completed", B: "canceled"}
    assert twiml.form("/whisper") == []
    assert [f["CallStatus"] for f in twiml.form("/leg") if f["To"] == B][-1] == "canceled"


@pytest.mark.parametrize("lines, status", [
    ({A: Line.busy(), B: Line.busy()}, "busy"),
    ({A: Line.busy(), B: Line.no_answer()}, "no-answer"),
    ({A: Line.fails()}, "failed"),
    ({A: Line.silent(after=2)}, "no-answer"),  # answered, but the whisper hung up
])
def test_dial_outcomes(twiml, lines, status):
    twiml.docs = {"/voice": dial_doc(*lines), "/whisper": SCREEN, "/screen": screen,
                  "/dialed": "<Say>Sorry</Say><Hangup/>"}
    call = simulator(twiml).call("+18005550100", lines=lines)
    dialed = twiml.form("/dialed")[0]
    assert (dialed["DialCallStatus"], dialed["DialBridged"]) == (status, "false")
    assert call.said()[-1] == "Sorry" and call.recordings == []


def test_no_answer_waits_for_the_dial_timeout(twiml):
    twiml.docs = {"/voice": dial_doc(A, timeout=12, whisper=False) + "<Say>Next</Say>",
                  "/dialed": "<Say>Nobody</Say>"}
    call = simulator(twiml).call("+18005550100", lines={A: Line.answers(after=15)})
    [leg_done] = [f for f in twiml.form("/leg") if f["CallStatus"] == "no-answer"]
    assert call.offers[0][0].ended_at == 12
    assert leg_done["CallStatus"] == "no-answer"
    assert call.said() == ["Nobody"]  # the action's TwiML, never the verb after <Dial>


def test_the_caller_hanging_up_while_it_rings_cancels_the_dial(twiml):
    twiml.docs = {"/voice": dial_doc(A, whisper=False), "/dialed": "<Say>Never heard</Say>"}
    call = simulator(twiml).call("+18005550100", Caller(hangup_at=5),
                                 lines={A: Line.answers(after=10)})
    dialed = twiml.form("/dialed")[0]
    assert (dialed["DialCallStatus"], dialed["CallStatus"]) == ("canceled", "canceled")
    assert call.said() == [] and call.status == "canceled"
    assert twiml.form("/status")[0]["CallStatus"] == "canceled"


def test_callbacks_redelivered_and_answers_compared(twiml):
    twiml.docs = {"/voice": dial_doc(A, whisper=False), "/dialed": "<Hangup/>"}
    call = simulator(twiml, redeliver=True, repeat_twiml=True).call(
        "+18005550100", lines={A: Line.answers(1)})
    assert len(twiml.form("/voice")) == 2 and len(twiml.form("/recording")) == 2
    assert len(twiml.form("/leg")) == 8 and call.differing_answers == []


def test_an_error_answer_ends_the_call_like_twilio(twiml):
    twiml.docs = {"/voice": "<Dial><Number>not closed"}
    call = simulator(twiml).call(A)
    assert call.errors and call.errors[0].startswith("12100")


def test_every_status_event_of_the_caller_and_a_sip_leg(twiml):
    sip = "sip:sales@pbx.example.com"
    twiml.docs = {"/voice": f'<Say>Hi</Say><Dial><Sip statusCallback="/leg">{sip}</Sip></Dial>'}
    call = simulator(twiml, status_events=("initiated", "ringing", "answered", "completed")
                     ).call(A, Caller(talk=20), lines={sip: Line.answers(2)})
    assert [f["CallStatus"] for f in twiml.form("/status")] == [
        "initiated", "ringing", "in-progress", "completed"]
    assert twiml.form("/status")[-1]["CallDuration"] == "23"  # 1 s of Say, 2 of ringing
    assert call.bridged.target == sip
    [leg] = twiml.form("/leg")  # statusCallbackEvent defaults to "completed"
    assert (leg["CallStatus"], leg["CallDuration"], leg["To"]) == ("completed", "20", sip)


def test_whispers_run_side_by_side_in_virtual_time(twiml):
    """B answers later than A but presses 1 sooner: B wins, and A's answer, due after the
    call was taken, is never sent."""
    twiml.docs = {"/voice": dial_doc(A, B), "/whisper": SCREEN, "/screen": screen,
                  "/dialed": "<Hangup/>"}
    call = simulator(twiml).call("+18005550100", Caller(talk=10), lines={
        A: Line("answer", 1.0, keys=(Keys("1", after=2.9),)),  # presses at 1 + 2 + 2.9
        B: Line("answer", 2.0, keys=(Keys("1", after=0.5),))})  # presses at 2 + 2 + 0.5
    assert {o.target: o.outcome for o in call.offers[0]} == {A: "canceled", B: "completed"}
    assert call.bridged.bridged_at == 4.5
    screened = [(r["params"]["To"], r["at"]) for r in call.requests("/whisper")]
    assert screened == [(A, 1.0), (B, 2.0)]  # in the order of their moments
    assert [r["params"]["To"] for r in call.requests("/screen")] == [B]
