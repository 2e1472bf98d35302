"""The fraud challenge on Telnyx Call Control: a caller whose pre-ring score reached the
site's ``challenge`` must press 1 before the call is routed or forwarded.

The caller's leg is answered, then asked with ``gather_using_speak`` (routing's ``press``
step: asked again once); 1 goes on to the number's routing plan or its destination, and
anything else hangs up. The outcome is stored on the call (``challenge_passed`` /
``challenge_failed``). Each command carries a ``command_id`` made of the call and its step,
and an event acts only on its first delivery (``webhooks.first_sight``), so a redelivered
event sends nothing twice. The step rides in the command's ``client_state`` (``k``:
``chal`` after the answer, ``chal-g`` after a question, with ``t`` the tries so far).
"""

from __future__ import annotations

import logging

from flask import g
from redis.exceptions import RedisError

from attribution.calls import CallEventIn
from dni_server.api import fraud, webhooks
from dni_server.api.routing_telnyx import (
    PROVIDER,
    Commands,
    action,
    client_state,
    moment,
    send,
    state_of,
)

log = logging.getLogger(__name__)
ANSWERED, ASKED = "chal", "chal-g"


def start(event: CallEventIn, body: dict) -> None:
    """A challenged call's first sight: answered, so the question can be asked."""
    payload = body["data"]["payload"]
    control = payload.get("call_control_id")
    if not isinstance(control, str) or not control:
        return
    commands = Commands(event.provider_call_id, payload)
    send(commands.numbered([(action(control, "answer"), {
        "client_state": client_state(k=ANSWERED, d=commands.dialled)})], "challenge:answer"))


def handles(event: CallEventIn, body: dict) -> bool:
    """Whether the event is a step of a challenge (then stored and acted on here, once).
    Other events of a challenged call (its hang-up, a forwarded leg) go on as usual."""
    payload = body["data"]["payload"]
    meta = state_of(payload)
    step = meta.get("k")
    if step in (ANSWERED, ASKED) and event.kind == "call.hangup" and event.leg == "call":
        # Gone before pressing 1 (a caller who passed keeps its outcome); the hang-up
        # itself goes on to be stored as usual.
        fraud.store_outcome(event, "challenge_failed", unless_decided=True)
        return False
    if not ((step == ANSWERED and event.kind == "call.answered")
            or (step == ASKED and event.kind == "call.gather.ended")):
        return False
    control = payload.get("call_control_id")
    result = webhooks.store(event)
    if not isinstance(control, str) or not control or not webhooks.first_sight(event, result):
        return True  # a redelivery: its commands went out the first time
    commands = Commands(event.provider_call_id, payload)
    text = fraud.challenge_text(event.to_raw)
    if step == ANSWERED:
        ask(commands, control, text, 0)
        return True
    pressed = payload.get("digits") if payload.get("status") == "valid" else ""
    passed = (pressed or "").strip() == fraud.challenge_step("-")["digit"]
    tries = int(meta.get("t") or 0)
    gone = payload.get("status") == "call_hangup"  # the caller left during the question
    if not passed and not gone and tries < fraud.challenge_step("-")["retries"]:
        ask(commands, control, text, tries + 1)
        return True
    outcome = "challenge_passed" if passed else "challenge_failed"
    fraud.store_outcome(event, outcome)
    g.webhook_result = outcome
    if passed:
        go_on(event, body, commands, control)
    elif not gone:
        send(commands.numbered([(action(control, "hangup"), {})], "challenge:hangup"))
    return True


def ask(commands: Commands, control: str, text: str, tries: int) -> None:
    from routing import flow

    question = flow.ask(fraud.challenge_step(text), 0)
    send(commands.numbered([(action(control, "gather_using_speak"), {
        "payload": question.text, "voice": "female", "language": "en-US",
        "minimum_digits": question.digits, "maximum_digits": question.digits,
        "timeout_millis": flow.GATHER_TIMEOUT * 1000,
        "client_state": client_state(k=ASKED, t=tries, d=commands.dialled)})],
        f"challenge:ask:{tries}"))


def go_on(event: CallEventIn, body: dict, commands: Commands, control: str) -> None:
    """The caller pressed 1: the number's routing plan starts (the call is already
    answered, as routing's own first turn expects), else the call is transferred."""
    from dni_server.api.routing_calls import plan_for, rescue_verbs, routed_calls
    from dni_server.extensions import services
    from routing.calls import facts_for

    payload = body["data"]["payload"]
    plan = plan_for(services().routes.route(event.to_raw))
    if plan is None:
        webhooks.telnyx_forward(event, body["data"])
        return
    render = commands.caller_leg(control, payload.get("from"))
    try:
        facts = facts_for(g.get("webhook_call_facts"), payload.get("from"), None)
        turn = routed_calls().start(PROVIDER, event.provider_call_id, int(plan), facts, render,
                                    moment(event))
    except RedisError:
        log.exception("Redis unavailable starting challenged call %s", event.provider_call_id)
        send(render(rescue_verbs(plan), "rescue:challenge"))
        return
    send(turn.answer)
