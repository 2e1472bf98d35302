"""Carrier webhooks: Twilio (and SignalWire) form posts, Telnyx Call Control JSON.

A webhook is checked, forwarded and stored, in that order of importance: a forged one
gets 403 and stores nothing; a genuine one is forwarded even when SQL is down (its event
then waits in the call inbox). A genuine event that cannot be read or stored is kept as
received (``CallInbox.keep_unparsed``) and acknowledged, so the carrier does not send it
again and again; its caller is still forwarded.
"""

from __future__ import annotations

import json
import logging
from urllib.parse import quote

import orjson
from flask import Blueprint, Response, g, request
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError
from twilio.twiml.voice_response import Dial, VoiceResponse

from attribution import carriers
from attribution.calls import CallEventIn, Route, ingest
from dni_server import metrics
from dni_server.errors import ApiError, Forbidden
from dni_server.extensions import db, services
from pools.keys import call_acted_key
from pools.models import utcnow
from routing.calls import CALL_FACTS

log = logging.getLogger(__name__)
bp = Blueprint("webhooks", __name__)
ACTED_SECONDS = 86_400  # how long an event's transfer is remembered as sent


def public_url() -> str:
    """The URL the carrier called, as it signed it (``DNI_PUBLIC_URL`` behind a proxy)."""
    raw = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI")
    if not raw:
        raw = quote(request.path) + (f"?{request.query_string.decode()}"
                                     if request.query_string else "")
    base = services().settings.public_url or request.host_url.rstrip("/")
    return base + raw


def callback_url(path: str) -> str:
    return (services().settings.public_url or request.host_url.rstrip("/")) + path


def store(event: CallEventIn) -> str:
    """Store the event now, or keep it in the inbox if SQL is down; never lose it.

    Returns what happened: "stored", "duplicate" (seen before), "queued" or "spooled"
    (SQL is down: not known whether seen before), or "unparsed" (kept as received).
    """
    try:
        call, new = ingest(db.session, event, pools=services().pools)
        # What a routed call's buyers filter on, read before the commit expires the row.
        g.webhook_call_facts = {name: getattr(call, name) for name in CALL_FACTS}
        db.session.commit()
        g.webhook_result = "stored" if new else "duplicate"
    except SQLAlchemyError:
        db.session.rollback()
        log.exception("SQL unavailable: call event %s kept in the inbox", event.event_key)
        kept = services().inbox.push(event)
        g.webhook_result = "queued" if kept == "redis" else "spooled"
    except Exception as exc:  # a bug in storing it: the raw event is kept, never lost
        db.session.rollback()
        keep_unparsed(event.provider, exc)
    return g.webhook_result


def raw_event() -> str:
    """The webhook as received: Telnyx's signed bytes, or Twilio's form fields."""
    if request.path.startswith("/webhooks/telnyx"):
        return request.get_data(cache=True).decode("utf-8", "replace")
    return json.dumps(request.form.to_dict(flat=False))


def keep_unparsed(provider: str, exc: Exception) -> None:
    log.exception("%s webhook could not be read or stored; kept as received", provider)
    services().inbox.keep_unparsed(provider, raw_event(), f"{type(exc).__name__}: {exc}")
    g.webhook_result = "unparsed"


def parse(reader, provider: str, *args) -> CallEventIn | None:
    """The carrier event read by ``reader``, or None; when reading fails, the raw event is
    kept and None returned (the carrier is still answered 2xx)."""
    try:
        return reader(*args)
    except Exception as exc:  # the readers never raise by design; this is the last net
        keep_unparsed(provider, exc)
        return None


@bp.after_request
def count_webhook(response: Response) -> Response:
    """One outcome per webhook: what store() did, else what the status says."""
    if request.path.startswith("/webhooks/telnyx"):
        provider = "telnyx"
    elif "X-SignalWire-Signature" in request.headers:
        provider = "signalwire"
    else:
        provider = "twilio"
    result = g.get("webhook_result")
    if result is None:
        status = response.status_code
        result = "error" if status >= 500 else "rejected" if status >= 400 else "ignored"
    metrics.observe_webhook(provider, result)
    return response


# -- Twilio ------------------------------------------------------------------------------


def twilio_webhook(kind: str) -> CallEventIn | None:
    token = services().settings.twilio_auth_token
    if not token:
        g.webhook_result = "not_configured"
        raise Forbidden("Twilio webhooks are off: set DNI_TWILIO_AUTH_TOKEN")
    signature = (request.headers.get("X-Twilio-Signature")
                 or request.headers.get("X-SignalWire-Signature", ""))
    try:
        carriers.check_twilio_signature(token, public_url(), request.form, signature)
    except carriers.SignatureError as exc:
        g.webhook_result = "bad_signature"
        raise Forbidden(str(exc)) from None
    return parse(carriers.twilio_event, "twilio", request.form, kind, utcnow())


def twiml(response: VoiceResponse) -> Response:
    return Response(str(response), mimetype="text/xml")


def forward(route: Route, event: CallEventIn) -> VoiceResponse:
    response = VoiceResponse()
    if not route.destination:
        response.say("Sorry, this number is not in service.")
        response.hangup()
        return response
    # Show the business the real caller; a caller id Twilio would refuse (error 13214)
    # is replaced by the tracking number.
    caller = event.from_raw if (event.from_raw or "").startswith("+") else event.to_raw
    recording = {"record": "record-from-answer-dual",
                 "recording_status_callback": callback_url("/webhooks/twilio/recording")
                 } if route.record else {}
    dial = Dial(action=callback_url("/webhooks/twilio/dial"), method="POST", timeout=25,
                caller_id=caller, answer_on_bridge=True, **recording)
    dial.number(route.destination, status_callback=callback_url("/webhooks/twilio/status"),
                status_callback_event="initiated ringing answered completed",
                status_callback_method="POST")
    response.append(dial)
    return response


@bp.post("/webhooks/twilio/voice")
def twilio_voice():
    """A call to a tracking number: forward it, then record and match it."""
    event = twilio_webhook("voice")
    if event is None and g.get("webhook_result") == "unparsed":
        # Kept as received; the caller is forwarded all the same.
        event = CallEventIn(provider="twilio", provider_call_id="", event_key="", kind="voice",
                            occurred_at=utcnow(), from_raw=str(request.form.get("From", ""))[:64],
                            to_raw=str(request.form.get("To", ""))[:64])
        return twiml(forward(services().routes.route(event.to_raw), event))
    if event is None:
        raise ApiError("CallSid is required", status=422, code="invalid")
    from dni_server.api import fraud  # issue 16: block or challenge before it rings

    if (answer := fraud.twilio_pre_ring(event)) is not None:
        return answer
    route = services().routes.route(event.to_raw)
    store(event)
    from dni_server.api import routing_calls  # pay-per-call: a plan replaces the destination

    if (plan := routing_calls.plan_for(route)) is not None:
        return routing_calls.start_routed(event, plan)
    return twiml(forward(route, event))


@bp.post("/webhooks/twilio/status")
def twilio_status():
    event = twilio_webhook("status")
    if event is not None:
        store(event)
        if event.leg == "call" and event.ended_at is not None:
            from dni_server.api import routing_calls  # a routed caller gone: free its buyers

            routing_calls.caller_gone(event, services().routes.route(event.to_raw))
    return Response(status=204)


@bp.post("/webhooks/twilio/dial")
def twilio_dial():
    """The forwarded leg ended: record how, and end the caller's call."""
    event = twilio_webhook("dial")
    if event is not None:
        store(event)
    response = VoiceResponse()
    response.hangup()
    return twiml(response)


@bp.post("/webhooks/twilio/recording")
def twilio_recording():
    event = twilio_webhook("recording")
    if event is not None and event.recording_url:
        store(event)
    return Response(status=204)


# -- Telnyx ------------------------------------------------------------------------------


@bp.post("/webhooks/telnyx")
def telnyx():
    key = services().settings.telnyx_public_key
    if not key:
        g.webhook_result = "not_configured"
        raise Forbidden("Telnyx webhooks are off: set DNI_TELNYX_PUBLIC_KEY")
    raw = request.get_data(cache=True)  # the exact bytes that were signed
    try:
        carriers.check_telnyx_signature(key, raw, request.headers.get("telnyx-signature-ed25519"),
                                        request.headers.get("telnyx-timestamp"))
    except carriers.SignatureError as exc:
        g.webhook_result = "bad_signature"
        raise Forbidden(str(exc)) from None
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        # Signed by Telnyx, so evidence: kept as received and acknowledged (a 4xx would
        # only have Telnyx send it again and again).
        keep_unparsed("telnyx", exc)
        return Response(status=204)
    event = parse(carriers.telnyx_event, "telnyx", body, utcnow())
    if event is None:
        return Response(status=204)  # not a call event (or kept unparsed): acknowledged
    from dni_server.api import fraud  # issue 16: a blocked call is rejected, not forwarded

    if fraud.telnyx_pre_ring(event, body):
        return Response(status=204)
    # Stored first: Telnyx delivers an event again and again until it is acknowledged, and
    # only the first sight of a call may send the transfer command.
    result = store(event)
    from dni_server.api import routing_telnyx  # pay-per-call: a routed call's own commands

    if routing_telnyx.handles(event, body["data"], result):
        return Response(status=204)
    if event.kind == "call.initiated" and event.leg == "call" and first_sight(event, result):
        telnyx_forward(event, body["data"])
    return Response(status=204)


def first_sight(event: CallEventIn, result: str) -> bool:
    """Whether this delivery is the event's first. SQL knows when it is up ("duplicate");
    a Redis claim also covers deliveries while SQL is down (their inbox copies wait
    unstored). Redis away too: forwarded, since a caller is never left unconnected (the
    command id lets Telnyx ignore a repeat)."""
    if result == "duplicate":
        return False
    key = call_acted_key(event.provider, event.event_key, services().settings.redis_prefix)
    try:
        return bool(services().redis.set(key, "1", nx=True, ex=ACTED_SECONDS))
    except RedisError:
        return True


def telnyx_forward(event: CallEventIn, data: dict) -> None:
    """Connect a new incoming call to its destination with Telnyx's transfer command."""
    settings = services().settings
    route = services().routes.route(event.to_raw)
    control_id = data["payload"].get("call_control_id")
    if not (settings.telnyx_api_key and route.destination and isinstance(control_id, str)
            and control_id):
        return
    caller = event.from_raw if (event.from_raw or "").startswith("+") else event.to_raw
    # Sent off the request path: a slow Telnyx API must not hold a web worker. A recording
    # arrives later as call.recording.saved, stored like any other event of the call.
    services().commands.submit(carriers.telnyx_transfer, settings.telnyx_api_url,
                               settings.telnyx_api_key, control_id, route.destination, caller,
                               command_id=str(data.get("id")), record=route.record)
