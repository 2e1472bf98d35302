"""Carrier webhooks of web callback legs: the business's prompt and answer, the visitor's
answer (person or machine), and each leg's end.

Twilio requests are checked with the account's auth token, Telnyx events with its public
key, as for tracking-number webhooks (``dni_server.api.webhooks``). Each names its
callback (``cb`` in the URL, Telnyx's ``client_state``); an unknown or finished callback
is acknowledged and ignored. Telnyx commands go out off the request path
(``services().commands``).
"""

from __future__ import annotations

import logging

import orjson
from flask import Blueprint, Response, current_app, request
from redis.exceptions import RedisError
from twilio.twiml.voice_response import Dial, Gather, VoiceResponse

from attribution import carriers
from attribution.callbacks import calling
from attribution.callbacks.dialing import DialError, TelnyxDialer, read_telnyx_state
from attribution.callbacks.models import Callback
from dni_server.api.webhooks import callback_url, public_url, twiml
from dni_server.errors import Forbidden
from dni_server.extensions import db, services
from pools.keys import call_acted_key
from pools.models import utcnow

log = logging.getLogger(__name__)
bp = Blueprint("callback_legs", __name__)
ACTED_SECONDS = 86_400
MACHINE = ("machine_start", "machine_end_beep", "machine_end_silence", "machine_end_other",
           "fax")


def callback_services():
    return current_app.extensions["dni_callbacks"]


def router():
    """Who callbacks' business legs ring: a routing plan's buyers, else the destination."""
    from dni_server.api.callbacks import business_router

    return business_router(current_app)


def calling_callback(callback_id: str | None) -> Callback | None:
    callback = db.session.get(Callback, (callback_id or "")[:40])
    return callback if callback is not None and callback.status == "calling" else None


# -- Twilio ------------------------------------------------------------------------------


def check_twilio() -> None:
    token = services().settings.twilio_auth_token
    if not token:
        raise Forbidden("Twilio webhooks are off: set DNI_TWILIO_AUTH_TOKEN")
    try:
        carriers.check_twilio_signature(token, public_url(), request.form,
                                        request.headers.get("X-Twilio-Signature", ""))
    except carriers.SignatureError as exc:
        raise Forbidden(str(exc)) from None


def step_url(step: str, callback: Callback) -> str:
    return callback_url(f"/webhooks/callbacks/twilio/{step}?cb={callback.id}")


def goodbye(text: str) -> Response:
    response = VoiceResponse()
    response.say(text)
    response.hangup()
    return twiml(response)


@bp.post("/webhooks/callbacks/twilio/business")
def twilio_business():
    """The business answered: say where the request came from, ask for 1."""
    check_twilio()
    callback = calling_callback(request.args.get("cb"))
    if callback is None or request.form.get("CallSid") != callback.business_call_id:
        return goodbye("This callback request is no longer waiting. Goodbye.")
    response = VoiceResponse()
    gather = Gather(num_digits=1, timeout=8, action=step_url("accept", callback), method="POST")
    gather.say(calling.prompt(db.session, callback))
    response.append(gather)
    response.say("The request was not accepted. Goodbye.")
    response.hangup()
    return twiml(response)


@bp.post("/webhooks/callbacks/twilio/accept")
def twilio_accept():
    """1: dial the visitor from the tracking number, machine detection on; else decline."""
    check_twilio()
    callback = calling_callback(request.args.get("cb"))
    if callback is None:
        return goodbye("This callback request is no longer waiting. Goodbye.")
    if request.form.get("Digits") != "1":
        calling.business_ended(db.session, callback, "declined", utcnow(),
                               callback_services().settings, callback_services().limits,
                               router())
        db.session.commit()
        return goodbye("The request was declined. Goodbye.")
    settings = callback_services().settings
    response = VoiceResponse()
    response.say("Calling the visitor now.")
    dial = Dial(caller_id=calling.tracking_number(db.session, callback),
                timeout=settings.visitor_timeout, action=step_url("dialed", callback),
                method="POST", answer_on_bridge=True)
    dial.number(callback.phone, machine_detection="Enable", url=step_url("screen", callback),
                method="POST")
    response.append(dial)
    return twiml(response)


@bp.post("/webhooks/callbacks/twilio/screen")
def twilio_screen():
    """The visitor's leg answered: a person is connected (and the call created), a
    machine is hung up on."""
    check_twilio()
    callback = calling_callback(request.args.get("cb"))
    response = VoiceResponse()
    if callback is None:
        response.hangup()
        return twiml(response)
    answered_by = request.form.get("AnsweredBy", "unknown")
    sid = str(request.form.get("CallSid", ""))[:128]
    if answered_by in MACHINE:
        callback.visitor_call_id, callback.last_outcome = sid, "machine"
        response.hangup()
    else:
        calling.visitor_answered(db.session, callback, sid, utcnow())
    db.session.commit()
    return twiml(response)


@bp.post("/webhooks/callbacks/twilio/dialed")
def twilio_dialed():
    """The visitor's leg ended (the Dial's action): connected, or an outcome to retry."""
    check_twilio()
    callback = calling_callback(request.args.get("cb"))
    if callback is None:
        return goodbye("Goodbye.")
    status = request.form.get("DialCallStatus", "failed")
    if callback.call_id is None and callback.last_outcome == "machine":
        outcome = "machine"
    else:
        outcome = status if status in calling.RETRIED else "failed"
    duration = request.form.get("DialCallDuration", "")
    cbs = callback_services()
    calling.visitor_ended(db.session, callback, outcome, utcnow(), cbs.settings, cbs.limits,
                          duration=int(duration) if duration.isdigit() else None,
                          router=router())
    db.session.commit()
    if callback.status == "completed":
        response = VoiceResponse()
        response.hangup()
        return twiml(response)
    return goodbye("The visitor could not be reached; we will try again later. Goodbye.")


@bp.post("/webhooks/callbacks/twilio/status")
def twilio_status():
    """The business's leg ended: if it never reached the visitor, the attempt ends."""
    check_twilio()
    callback = calling_callback(request.args.get("cb"))
    if (callback is not None and request.args.get("leg") == "business"
            and request.form.get("CallSid") == callback.business_call_id):
        status = request.form.get("CallStatus", "")
        if status in ("completed", "busy", "no-answer", "failed", "canceled"):
            outcome = "declined" if status == "completed" else "business_unanswered"
            cbs = callback_services()
            calling.business_ended(db.session, callback, outcome, utcnow(), cbs.settings,
                                   cbs.limits, router())
            db.session.commit()
    return Response(status=204)


# -- Telnyx ------------------------------------------------------------------------------


def telnyx_dialer() -> TelnyxDialer | None:
    settings, own = services().settings, callback_services().settings
    if not (settings.telnyx_api_key and own.telnyx_connection_id):
        return None
    return TelnyxDialer(settings.telnyx_api_url, settings.telnyx_api_key,
                        own.telnyx_connection_id,
                        settings.public_url or request.host_url.rstrip("/"))


def command(dialer: TelnyxDialer, control_id: str, name: str, body: dict) -> None:
    """Send a Call Control command off the request path (retried by the sender)."""

    def send() -> str:
        try:
            dialer.action(control_id, name, body)
        except DialError as exc:
            log.warning("Telnyx %s on %s: %s", name, control_id, exc)
            return "retry" if exc.retry else "refused"
        return "ok"

    send.__name__ = f"telnyx_{name}"
    services().commands.submit(send)


def dial_visitor(dialer: TelnyxDialer, callback: Callback, caller_id: str, business: str,
                 timeout: int) -> None:
    def send() -> str:
        try:
            dialer.dial(callback_phone, caller_id, callback_id, "visitor", timeout,
                        detect_machine=True, link_to=business,
                        command_id=f"{callback_id}-visitor-{attempt}")
        except DialError as exc:
            log.warning("Telnyx dial of callback %s's visitor: %s", callback_id, exc)
            return "retry" if exc.retry else "refused"
        return "ok"

    callback_phone, callback_id, attempt = callback.phone, callback.id, callback.attempts
    send.__name__ = "telnyx_dial_visitor"
    services().commands.submit(send)


def first_delivery(event_id: str) -> bool:
    """Whether this Telnyx event is acted on for the first time (a redelivery is not)."""
    if not event_id:
        return True
    key = call_acted_key("telnyx-callback", event_id, services().settings.redis_prefix)
    try:
        return bool(services().redis.set(key, "1", nx=True, ex=ACTED_SECONDS))
    except RedisError:
        return True


@bp.post("/webhooks/callbacks/telnyx")
def telnyx_event():
    key = services().settings.telnyx_public_key
    if not key:
        raise Forbidden("Telnyx webhooks are off: set DNI_TELNYX_PUBLIC_KEY")
    raw = request.get_data(cache=True)
    try:
        carriers.check_telnyx_signature(key, raw, request.headers.get("telnyx-signature-ed25519"),
                                        request.headers.get("telnyx-timestamp"))
    except carriers.SignatureError as exc:
        raise Forbidden(str(exc)) from None
    try:
        data = orjson.loads(raw)["data"]
        kind, payload = data["event_type"], data["payload"]
        control_id = str(payload["call_control_id"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return Response(status=204)  # signed but not a call event: acknowledged
    state = read_telnyx_state(payload.get("client_state"))
    dialer = telnyx_dialer()
    if state is None or dialer is None or not first_delivery(str(data.get("id") or "")):
        return Response(status=204)
    callback = calling_callback(state[0])
    if callback is None:
        return Response(status=204)
    on_telnyx(dialer, callback, state[1], kind, payload, control_id)
    db.session.commit()
    return Response(status=204)


def on_telnyx(dialer: TelnyxDialer, callback: Callback, leg: str, kind: str, payload: dict,
              control_id: str) -> None:
    cbs, now = callback_services(), utcnow()
    if leg == "business":
        if control_id != callback.business_call_id:
            return
        if kind == "call.answered":
            command(dialer, control_id, "gather_using_speak", {
                "payload": calling.prompt(db.session, callback), "voice": "female",
                "language": "en-US", "minimum_digits": 1, "maximum_digits": 1,
                "valid_digits": "0123456789", "timeout_millis": 8000,
                "client_state": payload.get("client_state")})
        elif kind == "call.gather.ended":
            if payload.get("digits") == "1":
                dial_visitor(dialer, callback, calling.tracking_number(db.session, callback),
                             control_id, cbs.settings.visitor_timeout)
            else:
                calling.business_ended(db.session, callback, "declined", now, cbs.settings,
                                       cbs.limits, router())
                command(dialer, control_id, "hangup", {})
        elif kind == "call.hangup":
            outcome = "business_unanswered" if payload.get("hangup_cause") in (
                "timeout", "no_answer", "user_busy", "call_rejected") else "declined"
            calling.business_ended(db.session, callback, outcome, now, cbs.settings,
                                   cbs.limits, router())
        return
    # The visitor's leg.
    if kind == "call.machine.detection.ended":
        if payload.get("result") == "machine":
            callback.visitor_call_id, callback.last_outcome = control_id, "machine"
            command(dialer, control_id, "hangup", {})
        else:  # human, or not sure: a person may be waiting, connect them
            calling.visitor_answered(db.session, callback, control_id, now)
            command(dialer, control_id, "bridge", {"call_control_id": callback.business_call_id})
    elif kind == "call.hangup":
        cause = payload.get("hangup_cause")
        if callback.call_id is None and callback.last_outcome == "machine":
            outcome = "machine"
        else:
            outcome = {"user_busy": "busy", "timeout": "no-answer", "no_answer": "no-answer",
                       "call_rejected": "busy"}.get(cause, "failed")
        business = callback.business_call_id
        calling.visitor_ended(db.session, callback, outcome, now, cbs.settings, cbs.limits,
                              router=router())
        if callback.status != "completed" and business:
            command(dialer, business, "hangup", {})
