"""Twilio (and SignalWire) webhooks of routed calls: the plan's turns rendered as TwiML.

A call to a number with a routing plan is answered here instead of being forwarded
(``dni_server.api.webhooks.twilio_voice`` hands it over). Every later turn comes back to
``/webhooks/twilio/route/<turn>/...``: the caller's keys (``gather/<step>``), a buyer leg's
pick-up (``whisper/<buyer>``, the ``url`` of its ``<Number>``), the buyer's accept key
(``accept/<buyer>``), and the end of the offer's ``<Dial>`` (``dial``, its ``action``).
The state is in Redis (``routing.calls``); each turn is answered once and replayed to a
redelivery. When Redis fails mid-call, the caller is sent to the plan's fallback.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response, current_app, g, request
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError
from twilio.twiml.voice_response import Dial, Gather, VoiceResponse

from attribution import carriers
from attribution.calls import CallEventIn
from dni_server.api import webhooks
from dni_server.errors import ApiError
from dni_server.extensions import db, services
from pools.models import utcnow
from routing import flow
from routing import models as _models  # noqa: F401  (the tables, for the app's metadata)
from routing.calls import RoutedCalls, facts_for, record
from routing.directory import RoutingDirectory

log = logging.getLogger(__name__)
bp = Blueprint("routing_calls", __name__)
PROVIDER = "twilio"


def routing_directory() -> RoutingDirectory:
    """This app's routing map (made on first use, like the rest of the routing services)."""
    return routed_calls().directory


def routed_calls() -> RoutedCalls:
    ext = current_app.extensions
    if "routing" not in ext:
        s = services()
        # Read again every 10 s, like routes; a change made here is read at once.
        directory = RoutingDirectory(s.session_factory, s.redis, s.settings.redis_prefix)
        ext["routing"] = RoutedCalls(s.redis_admin, directory, s.settings.redis_prefix)
    return ext["routing"]


def plan_for(route) -> int | None:
    """The routing plan of the dialled number's route, when it is known (else the call is
    forwarded as before)."""
    if route.plan is None:
        return None
    try:
        return route.plan if route.plan in routing_directory().current().plans else None
    except SQLAlchemyError:
        return None


# -- rendering -------------------------------------------------------------------------------


def route_url(turn: int, tail: str) -> str:
    return webhooks.callback_url(f"/webhooks/twilio/route/{turn}/{tail}")


def renderer(caller_id: str | None):
    def render(verbs: list, turn: int) -> str:
        return str(twiml_of(verbs, turn, caller_id))
    return render


def twiml_of(verbs: list, turn: int, caller_id: str | None,
             response: VoiceResponse | None = None) -> VoiceResponse:
    response = response if response is not None else VoiceResponse()
    for verb in verbs:
        if isinstance(verb, flow.Say):
            response.say(verb.text)
        elif isinstance(verb, flow.Ask) and verb.step >= 0:
            gather = Gather(num_digits=verb.digits, timeout=flow.GATHER_TIMEOUT,
                            finish_on_key="#", action=route_url(turn, f"gather/{verb.step}"),
                            method="POST", action_on_empty_result=True)
            gather.say(verb.text)
            response.append(gather)
        elif isinstance(verb, flow.Ask):  # the whisper's accept question, to the buyer
            raise ValueError("the accept question is rendered by whisper()")
        elif isinstance(verb, flow.Offer):
            response.append(offer_dial(verb, turn, caller_id))
        elif isinstance(verb, flow.Forward):
            dial = Dial(action=route_url(turn, "dial"), method="POST", timeout=30,
                        caller_id=caller_id, answer_on_bridge=True)
            dial.number(verb.number)
            response.append(dial)
        elif isinstance(verb, flow.Hangup):
            response.hangup()
    return response


def offer_dial(offer: flow.Offer, turn: int, caller_id: str | None) -> Dial:
    """One <Dial> ringing every leg at once; each leg's pick-up runs its whisper first."""
    dial = Dial(action=route_url(turn, "dial"), method="POST", timeout=offer.ring_seconds,
                caller_id=caller_id, answer_on_bridge=True)
    for leg in offer.legs:
        noun = dict(url=route_url(turn, f"whisper/{leg.buyer}"), method="POST",
                    status_callback=webhooks.callback_url("/webhooks/twilio/status"),
                    status_callback_event="initiated ringing answered completed",
                    status_callback_method="POST")
        if leg.target.startswith("sip"):
            dial.sip(leg.target, **noun)
        else:
            dial.number(leg.target, **noun)
    return dial


def whisper_renderer(buyer_id: int):
    """The buyer leg's TwiML: the whisper, and with ``accept`` the question; silence or
    another key hangs up this leg (else Twilio would bridge it all the same)."""
    def render(verbs: list, turn: int) -> str:
        response = VoiceResponse()
        for verb in verbs:
            if isinstance(verb, flow.Ask):
                gather = Gather(num_digits=1, timeout=flow.GATHER_TIMEOUT,
                                action=route_url(turn, f"accept/{buyer_id}"), method="POST",
                                action_on_empty_result=True)
                gather.say(verb.text)
                response.append(gather)
                response.hangup()
            elif isinstance(verb, flow.Say):
                response.say(verb.text)
            elif isinstance(verb, flow.Hangup):
                response.hangup()
        return str(response)
    return render


def twiml_text(text: str) -> Response:
    return Response(text, mimetype="text/xml")


def rescue(plan_id: int | None, caller_id: str | None) -> Response:
    """Redis failed mid-call: the plan's fallback (from the cached map), never dead air.
    Without ``plan_id`` the plan is the dialled number's (the request's ``To``): the call's
    state, which names it, is in the Redis that failed."""
    verbs = rescue_verbs(plan_id if plan_id is not None else dialled_plan())
    response = VoiceResponse()
    for verb in verbs:
        if isinstance(verb, flow.Forward):
            # Its end goes to the plain forward's action (which hangs up), not back to a
            # routed turn that would need Redis again.
            dial = Dial(action=webhooks.callback_url("/webhooks/twilio/dial"), method="POST",
                        timeout=30, caller_id=caller_id, answer_on_bridge=True)
            dial.number(verb.number)
            response.append(dial)
        else:
            twiml_of([verb], 0, caller_id, response)
    return twiml_text(str(response))


def rescue_verbs(plan_id: int | None) -> list:
    """The plan's fallback as verbs (the cached map serves it while SQL is down too)."""
    try:
        plan = routing_directory().current().plans.get(plan_id) or {}
    except SQLAlchemyError:
        plan = {}
    return flow.fallback(flow.Context(plan, {}, utcnow(), lambda ids: [],
                                      lambda *a, **k: False), {"done": False})


def dialled_plan(dialled: str | None = None) -> int | None:
    """The routing plan of the dialled number, from the cached route map (no Redis)."""
    try:
        return services().routes.route(dialled or request.form.get("To")).plan
    except SQLAlchemyError:
        return None


def keep_log(state: dict | None) -> None:
    keep_log_for(PROVIDER, call_sid(), state)


def keep_log_for(provider: str, call_id: str, state: dict | None) -> None:
    """The call's routing log in SQL; while SQL is down it stays in Redis and the next
    turn writes it."""
    if state is None:
        return
    try:
        record(db.session, provider, call_id, state)
        db.session.commit()
    except SQLAlchemyError:
        db.session.rollback()
        log.warning("SQL unavailable: routing log of %s not written yet", call_id)


# -- the webhooks ----------------------------------------------------------------------------


def call_sid() -> str:
    return str(request.form.get("ParentCallSid") or request.form.get("CallSid") or "")[:128]


def caller_id() -> str | None:
    caller = str(request.form.get("From", ""))
    return caller if caller.startswith("+") else str(request.form.get("To", "")) or None


def signed() -> None:
    """403 unless Twilio signed the request (as every carrier webhook)."""
    token = services().settings.twilio_auth_token
    if not token:
        g.webhook_result = "not_configured"
        raise ApiError("Twilio webhooks are off: set DNI_TWILIO_AUTH_TOKEN", status=403,
                       code="forbidden")
    signature = (request.headers.get("X-Twilio-Signature")
                 or request.headers.get("X-SignalWire-Signature", ""))
    try:
        carriers.check_twilio_signature(token, webhooks.public_url(), request.form, signature)
    except carriers.SignatureError as exc:
        g.webhook_result = "bad_signature"
        raise ApiError(str(exc), status=403, code="forbidden") from None
    if not call_sid():
        raise ApiError("CallSid is required", status=422, code="invalid")


def start_routed(event: CallEventIn, plan_id: int) -> Response:
    """The voice webhook of a routed number (already signed and stored): the first turn."""
    facts = facts_for(g.get("webhook_call_facts"), event.from_raw, event.caller_region)
    try:
        turn = routed_calls().start(PROVIDER, event.provider_call_id, plan_id, facts,
                                    renderer(caller_id()))
    except RedisError:
        log.exception("Redis unavailable: routed call %s sent to its fallback",
                      event.provider_call_id)
        return rescue(plan_id, caller_id())
    g.webhook_result = g.get("webhook_result") or "routed"
    return twiml_text(turn.answer)


def caller_gone(event: CallEventIn, route) -> None:
    """The caller's call ended (its status callback): a slot still held for it is freed
    now, not when its hold lapses (the <Dial action> normally does this first)."""
    if route.plan is None:
        return
    try:
        state = routed_calls().hung_up(PROVIDER, event.provider_call_id)
    except RedisError:
        log.warning("Redis unavailable: slots of %s free themselves later",
                    event.provider_call_id)
        return
    keep_log(state)


@bp.post("/webhooks/twilio/route/<int:turn>/gather/<int:step>")
def routed_gather(turn: int, step: int):
    signed()
    try:
        done = routed_calls().keyed(PROVIDER, call_sid(), turn, step,
                                    request.form.get("Digits"), renderer(caller_id()))
    except RedisError:
        return rescue(None, caller_id())
    keep_log(done.state)
    return twiml_text(done.answer)


@bp.post("/webhooks/twilio/route/<int:turn>/dial")
def routed_dial(turn: int):
    """The offer's <Dial> ended: settle it, then fail over, recover or hang up."""
    signed()
    event = webhooks.parse(carriers.twilio_event, "twilio", request.form, "dial", utcnow())
    if event is not None:
        webhooks.store(event)  # the call's talk time and dial status, as for any forward
    duration = carriers._int(request.form.get("DialCallDuration"))
    caller_gone = request.form.get("CallStatus") in ("completed", "canceled", "failed",
                                                     "busy", "no-answer")
    status = request.form.get("DialCallStatus")
    try:
        done = routed_calls().dial_ended(PROVIDER, call_sid(), turn, status, duration,
                                         caller_gone, renderer(caller_id()))
    except RedisError:
        if caller_gone or status == "completed":  # the caller talked to a buyer: done
            return twiml_text(str(twiml_of([flow.Hangup()], turn, None)))
        return rescue(None, caller_id())
    keep_log(done.state)
    return twiml_text(done.answer)


@bp.post("/webhooks/twilio/route/<int:turn>/whisper/<int:buyer_id>")
def routed_whisper(turn: int, buyer_id: int):
    """A buyer picked up: the whisper (and the accept question), before the caller joins."""
    signed()
    try:
        done = routed_calls().buyer_answered(PROVIDER, call_sid(), turn, buyer_id,
                                             whisper_renderer(buyer_id))
    except RedisError:
        return twiml_text(str(VoiceResponse()))  # bridge: the caller reaches someone
    return twiml_text(done.answer)


@bp.post("/webhooks/twilio/route/<int:turn>/accept/<int:buyer_id>")
def routed_accept(turn: int, buyer_id: int):
    """The buyer's key: 1 takes the call (empty TwiML bridges it), else this leg hangs up."""
    signed()
    try:
        done = routed_calls().buyer_decided(PROVIDER, call_sid(), turn, buyer_id,
                                            request.form.get("Digits"),
                                            whisper_renderer(buyer_id))
    except RedisError:
        response = VoiceResponse()
        if request.form.get("Digits") != "1":
            response.hangup()
        return twiml_text(str(response))
    return twiml_text(done.answer)
