"""Telnyx Call Control for routed calls: the plan's turns as commands, its events as turns.

The caller's leg is answered, then asked with ``gather_using_speak``; an offer dials each
buyer's leg (``POST /calls`` with ``link_to`` the caller), whose answer runs the whisper
(``speak``) or the accept question (``gather_using_speak``) on that leg before the
``bridge``; a declined or losing leg is hung up. Every command carries a ``command_id``
made of the call, the turn and its place in the turn, so a command sent twice (a
redelivered event, a retry) acts once; and an event acts only on its first delivery
(``webhooks.first_sight``). What each command is about rides in its ``client_state``,
which Telnyx hands back with the events it causes. Turns are timed by the events'
``occurred_at`` (talk time is Telnyx's, however late an event arrives). A bridged caller
is parked, not hung up, when the buyer leaves, so the plan can recover the call. When
Redis fails mid-call, the caller is sent to the plan's fallback (``rescue``).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
from urllib.parse import quote

import requests
from flask import g
from redis.exceptions import RedisError

from attribution.calls import CallEventIn
from dni_server.api import webhooks
from dni_server.api.routing_calls import (
    dialled_plan,
    keep_log_for,
    plan_for,
    rescue_verbs,
    routed_calls,
)
from dni_server.extensions import services
from routing import flow
from routing.calls import facts_for

log = logging.getLogger(__name__)
PROVIDER = "telnyx"
CLOCK_SLACK = dt.timedelta(hours=1)
HANGUP_STATUS = {"user_busy": "busy", "no_answer": "no-answer", "timeout": "no-answer",
                 "call_rejected": "failed", "not_found": "failed"}


def state_of(payload: dict) -> dict:
    raw = payload.get("client_state")
    if not isinstance(raw, str) or not raw:
        return {}
    try:
        value = json.loads(base64.b64decode(raw))
    except (ValueError, TypeError):
        return {}
    return value if isinstance(value, dict) else {}


def client_state(**values) -> str:
    return base64.b64encode(json.dumps(values, separators=(",", ":")).encode()).decode()


def send_command(api_url: str, api_key: str, path: str, body: dict) -> str:
    """One Call Control command: "ok", "retry" (no answer, or Telnyx busy) or "refused"."""
    try:
        response = requests.post(f"{api_url}{path}", json=body, timeout=3,
                                 headers={"Authorization": f"Bearer {api_key}"})
    except requests.RequestException as exc:
        log.warning("Telnyx %s got no answer: %s", path, exc)
        return "retry"
    if response.status_code == 429 or response.status_code >= 500:
        return "retry"
    if response.status_code >= 300:
        log.error("Telnyx refused %s: %s %s", path, response.status_code, response.text[:300])
        return "refused"
    return "ok"


def action(control_id: str, verb: str) -> str:
    segment = quote(control_id, safe=":")
    return f"/calls/{segment}/actions/{verb}"


class Commands:
    """Turns verbs into Call Control commands for one turn; ``text()`` is what is kept as
    the turn's answer (the commands), ``send()`` queues them."""

    def __init__(self, call_id: str, payload: dict):
        self.call_id = call_id
        self.payload = payload
        self.caller = payload.get("from") if payload.get("direction") == "incoming" else None
        # The dialled number rides in every client_state: it names the plan when Redis,
        # which holds the call's state, is away (``rescue``).
        self.dialled = (payload.get("to") if payload.get("direction") == "incoming"
                        else state_of(payload).get("d"))

    def caller_leg(self, caller_control: str, caller_number: str | None):
        def render(verbs: list, turn: int) -> str:
            out, says = [], []
            state = dict(c=caller_control, n=caller_number, d=self.dialled)
            for verb in verbs:
                if isinstance(verb, flow.Say):
                    says.append(verb.text)
                elif isinstance(verb, flow.Ask):
                    out.append((action(caller_control, "gather_using_speak"), {
                        "payload": " ".join(says + [verb.text]), "voice": "female",
                        "language": "en-US", "minimum_digits": verb.digits,
                        "maximum_digits": verb.digits, "terminating_digit": "#",
                        "timeout_millis": flow.GATHER_TIMEOUT * 1000,
                        "client_state": client_state(k="gather", t=turn, s=verb.step, **state)}))
                    says = []
                elif isinstance(verb, flow.Offer):
                    if says:
                        out.append(speak(caller_control, says, client_state(k="wait", **state)))
                        says = []
                    for leg in verb.legs:
                        out.append(("/calls", {
                            "connection_id": self.payload.get("connection_id"), "to": leg.target,
                            "from": caller_number, "link_to": caller_control,
                            "timeout_secs": verb.ring_seconds,
                            "client_state": client_state(k="leg", t=turn, b=leg.buyer,
                                                         o=len(verb.legs), **state)}))
                elif isinstance(verb, flow.Forward):
                    out.append((action(caller_control, "transfer"), {
                        "to": verb.number, "from": caller_number, "timeout_secs": 30,
                        "client_state": client_state(k="fwd", **state)}))
                elif isinstance(verb, flow.Hangup):
                    if says:  # said first; hung up when the speech ends
                        out.append(speak(caller_control, says, client_state(k="bye", **state)))
                        says = []
                    else:
                        out.append((action(caller_control, "hangup"), {}))
            if says:
                out.append(speak(caller_control, says, client_state(k="wait", **state)))
            return self.numbered(out, turn)
        return render

    def buyer_leg(self, leg_control: str, meta: dict, others: list[str]):
        """The verbs of a buyer's leg: [] bridges it (and hangs up the other legs)."""
        def render(verbs: list, turn: int) -> str:
            out = []
            state = dict(t=meta.get("t"), b=meta.get("b"), c=meta.get("c"), n=meta.get("n"),
                         d=meta.get("d"), o=meta.get("o"))
            if not verbs:
                # Parked, not hung up, when the buyer leaves: the plan may recover the call.
                out.append((action(meta["c"], "bridge"), {"call_control_id": leg_control,
                                                          "park_after_unbridge": "self"}))
                out += [(action(other, "hangup"), {}) for other in others]
            for verb in verbs:
                if isinstance(verb, flow.Ask):
                    out.append((action(leg_control, "gather_using_speak"), {
                        "payload": verb.text, "voice": "female", "language": "en-US",
                        "minimum_digits": 1, "maximum_digits": 1,
                        "timeout_millis": flow.GATHER_TIMEOUT * 1000,
                        "client_state": client_state(k="accept", **state)}))
                elif isinstance(verb, flow.Say):
                    out.append(speak(leg_control, [verb.text],
                                     client_state(k="whisper", **state)))
                elif isinstance(verb, flow.Hangup):
                    out.append((action(leg_control, "hangup"), {}))
            return self.numbered(out, f"{turn}:{meta.get('b')}:{meta.get('k')}")
        return render

    def numbered(self, commands: list, turn) -> str:
        for i, (_, body) in enumerate(commands):
            body["command_id"] = f"{self.call_id}:{turn}:{i}"[:250]
        return json.dumps(commands)


def speak(control_id: str, texts: list[str], state: str) -> tuple[str, dict]:
    return (action(control_id, "speak"), {"payload": " ".join(texts), "voice": "female",
                                          "language": "en-US", "client_state": state})


def moment(event: CallEventIn) -> dt.datetime:
    """When Telnyx says the event happened (talk and ring times follow its clock, however
    late or out of order its events arrive), within an hour of this server's clock."""
    now = dt.datetime.now(dt.UTC)
    at = event.occurred_at
    if at is None or at.tzinfo is None:
        return now
    return min(max(at, now - CLOCK_SLACK), now + CLOCK_SLACK)


def send(answer: str) -> None:
    settings = services().settings
    if not settings.telnyx_api_key:
        return
    for path, body in json.loads(answer):
        services().commands.submit(send_command, settings.telnyx_api_url,
                                   settings.telnyx_api_key, path, body)


def handles(event: CallEventIn, data: dict, result: str) -> bool:
    """Whether the event belongs to a routed call (then it was acted on here, once)."""
    payload = data.get("payload") or {}
    meta = state_of(payload)
    kind = event.kind
    control = payload.get("call_control_id")
    if not isinstance(control, str) or not control:
        return False
    if not meta:
        if kind != "call.initiated" or payload.get("direction") != "incoming":
            return False
        route = services().routes.route(event.to_raw)
        plan = plan_for(route)
        if plan is None:
            return False
        if webhooks.first_sight(event, result):
            commands = Commands(event.provider_call_id, payload)
            send(commands.numbered([(action(control, "answer"), {
                "client_state": client_state(k="answer", p=plan)})], "answer"))
        return True
    if not webhooks.first_sight(event, result):
        return True  # a redelivery: its commands went out the first time
    try:
        act(event, payload, meta, control)
    except RedisError:
        log.exception("Redis unavailable during routed Telnyx call %s", event.provider_call_id)
        rescue(event, payload, meta, control)
    return True


def rescue(event: CallEventIn, payload: dict, meta: dict, control: str) -> None:
    """Redis failed mid-call (the call's state is there): the caller is sent to the plan's
    fallback, the plan being the dialled number's; a buyer who picked up is bridged."""
    commands, k, kind = Commands(event.provider_call_id, payload), meta.get("k"), event.kind
    if k == "answer" and kind == "call.answered":
        caller, number, plan = control, payload.get("from"), meta.get("p")
    elif k == "gather" and kind == "call.gather.ended":
        caller, number, plan = meta.get("c") or control, meta.get("n"), None
    elif "b" in meta and kind == "call.answered":
        send(commands.buyer_leg(control, meta, [])([], f"rescue:{meta.get('t')}"))
        return
    elif "b" in meta and kind == "call.hangup" and unanswered_offer(meta, payload):
        caller, number, plan = meta.get("c"), meta.get("n"), None
    elif ("b" in meta and kind == "call.hangup" and meta.get("c")
          and payload.get("hangup_source") == "callee"):
        # The buyer left (a leg this app hung up says "caller"): the caller, parked by the
        # bridge, is hung up.
        send(commands.numbered([(action(meta["c"], "hangup"), {})],
                               f"rescue:{meta.get('t')}:end"))
        return
    else:
        return  # a hang-up or a whisper's end: its slot frees itself when its hold lapses
    if plan is None:
        plan = dialled_plan(meta.get("d") or commands.dialled or "")
    if caller:
        send(commands.caller_leg(caller, number)(rescue_verbs(plan), f"rescue:{meta.get('t')}"))


def unanswered_offer(meta: dict, payload: dict) -> bool:
    """Whether a buyer leg's end (known without Redis) means its offer went unanswered:
    the offer's only leg was not answered, or the ring time (shared by every leg of a
    simultaneous offer) ran out."""
    cause = payload.get("hangup_cause")
    return cause in ("timeout", "no_answer") or (meta.get("o") == 1 and cause in HANGUP_STATUS)


def ended_from_our_side(payload: dict) -> bool:
    """Whether a buyer leg's ``call.hangup`` says the calling side ended it: Telnyx's
    ``hangup_source`` "caller" (on a leg we dialled, that is us: a hang-up we sent, or the
    leg cancelled with the caller's) with a cause that is not the buyer's (busy, no
    answer, the ring timeout, rejected, not found)."""
    return (payload.get("hangup_source") == "caller"
            and payload.get("hangup_cause") not in HANGUP_STATUS)


def act(event: CallEventIn, payload: dict, meta: dict, control: str) -> None:
    calls, call_id, k = routed_calls(), event.provider_call_id, meta.get("k")
    commands = Commands(call_id, payload)
    kind = event.kind
    if k == "answer" and kind == "call.answered":
        facts = facts_for(g.get("webhook_call_facts"), payload.get("from"), None)
        turn = calls.start(PROVIDER, call_id, int(meta["p"]), facts,
                           commands.caller_leg(control, payload.get("from")), moment(event))
        send(turn.answer)
    elif k == "gather" and kind == "call.gather.ended":
        digits = payload.get("digits") if payload.get("status") == "valid" else ""
        turn = calls.keyed(PROVIDER, call_id, int(meta["t"]), int(meta["s"]), digits,
                           commands.caller_leg(meta["c"], meta.get("n")), moment(event))
        send(turn.answer)
        keep_log_for(PROVIDER, call_id, turn.state)
    elif "b" in meta:  # a buyer's leg
        leg_event(calls, commands, event, payload, meta, control)
    elif k == "bye" and kind == "call.speak.ended":
        send(commands.numbered([(action(control, "hangup"), {})], "bye"))
    elif kind == "call.hangup":  # the caller is gone
        keep_log_for(PROVIDER, call_id, calls.hung_up(PROVIDER, call_id, moment(event)))


def leg_event(calls, commands, event, payload, meta, control) -> None:
    call_id, turn, buyer = event.provider_call_id, int(meta["t"]), int(meta["b"])
    kind, k = event.kind, meta.get("k")
    if kind == "call.initiated":
        calls.note_leg(PROVIDER, call_id, turn, buyer, control)
        return
    state = calls.state(PROVIDER, call_id) or {}
    others = [c for b, c in (state.get("legs") or {}).items() if b != str(buyer)]
    render = commands.buyer_leg(control, meta, others)
    if kind == "call.answered":
        send(calls.buyer_answered(PROVIDER, call_id, turn, buyer, render,
                                  moment(event)).answer)
    elif kind == "call.speak.ended" and k == "whisper":
        send(render([], turn))  # the whisper said: bridge
    elif kind == "call.gather.ended" and k == "accept":
        digits = payload.get("digits") if payload.get("status") == "valid" else ""
        send(calls.buyer_decided(PROVIDER, call_id, turn, buyer, digits, render,
                                 moment(event)).answer)
    elif kind == "call.hangup":
        cause = payload.get("hangup_cause")
        status = HANGUP_STATUS.get(cause, "completed")
        done = calls.leg_ended(PROVIDER, call_id, turn, buyer, status,
                               commands.caller_leg(meta["c"], meta.get("n")), moment(event),
                               from_our_side=ended_from_our_side(payload))
        if done is not None:
            send(done.answer)
            keep_log_for(PROVIDER, call_id, done.state)
