"""The Telnyx simulator itself, against a small Call Control program over HTTP that checks
every event's signature: strict command bodies and auth, a repeated command_id acting once,
answer / gather_using_speak / transfer, reject, dial and bridge after a whisper, and
delivery twice and out of order."""

from __future__ import annotations

import random
import threading
from collections import Counter

import pytest
import requests
from flask import Flask, request
from ports import free_port
from werkzeug.serving import make_server

from attribution.carriers import check_telnyx_signature
from carriers.scripts import Caller, Keys, Line
from carriers.telnyx_sim import TelnyxSimulator

KEY = "KEY_program"
BUYER = "+12125550111"


class Program:
    """A Call Control program: ``on(event, payload)`` may send commands with ``command``."""

    def __init__(self, sim: TelnyxSimulator, on):
        self.sim, self.on = sim, on
        self.events: list[dict] = []
        self.bad_signatures = 0
        flask_app = Flask("program")

        @flask_app.post("/webhook")
        def webhook():
            raw = request.get_data()
            try:
                check_telnyx_signature(sim.public_key, raw,
                                       request.headers.get("telnyx-signature-ed25519"),
                                       request.headers.get("telnyx-timestamp"))
            except ValueError:
                self.bad_signatures += 1
                return "", 403
            data = request.get_json()["data"]
            self.events.append(data)
            self.on(self, data["event_type"], data["payload"])
            return "", 204

        self.server = make_server("127.0.0.1", free_port(), flask_app, threaded=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        sim.webhook_url = f"http://127.0.0.1:{self.server.server_port}/webhook"

    def command(self, control_id: str, name: str, key: str = KEY, **body) -> requests.Response:
        return requests.post(f"{self.sim.url}/calls/{control_id}/actions/{name}", json=body,
                             headers={"Authorization": f"Bearer {key}"}, timeout=5)

    def dial(self, **body) -> requests.Response:
        return requests.post(f"{self.sim.url}/calls", json=body, timeout=5,
                             headers={"Authorization": f"Bearer {KEY}"})


@pytest.fixture
def sim():
    simulator = TelnyxSimulator(free_port(), api_key=KEY, quiet=0.5)
    yield simulator
    simulator.close()


def run(sim, on, *args, **kwargs):
    program = Program(sim, on)
    try:
        return program, sim.call(*args, **kwargs)
    finally:
        program.server.shutdown()


def test_commands_are_checked_strictly_and_a_repeat_acts_once(sim):
    answers = []

    def on(program, kind, payload):
        if kind == "call.initiated":
            control = payload["call_control_id"]
            answers.append(program.command(control, "answer", key="wrong").status_code)
            answers.append(program.command(control, "answer", command_id="a", bogus=1)
                           .status_code)
            answers.append(program.command(control, "transfer", command_id="t").status_code)
            answers.append(program.command(control, "answer", command_id="a1").status_code)
            answers.append(program.command(control, "answer", command_id="a1").status_code)

    program, call = run(sim, on, "+16505550101", Caller(hangup_at=30))
    assert answers == [401, 422, 422, 200, 200]
    assert [e for e in sim.errors if "Authentication" in e] and len(sim.errors) == 3
    assert [c["acted"] for c in call.commands if c["name"] == "answer"] == [True, False]
    assert [e["event_type"] for e in program.events] == [
        "call.initiated", "call.answered", "call.hangup"]
    assert program.bad_signatures == 0


def test_ivr_gather_then_transfer(sim):
    def on(program, kind, payload):
        control = payload["call_control_id"]
        if kind == "call.initiated" and payload["direction"] == "incoming":
            program.command(control, "answer", command_id="1")
        elif kind == "call.answered" and payload["direction"] == "incoming":
            program.command(control, "gather_using_speak", command_id="2", voice="female",
                            payload="Please key your ZIP code.", minimum_digits=5,
                            maximum_digits=5, terminating_digit="#", timeout_millis=6000)
        elif kind == "call.gather.ended" and payload["status"] == "valid":
            program.command(control, "transfer", command_id="3", to=BUYER,
                            **{"from": payload["from"]})

    program, call = run(sim, on, "+16505550101", Caller(keys=(Keys("94105"),), talk=45),
                        lines={BUYER: Line.answers(4)})
    assert sim.errors == []
    assert [(e["event_type"], e["payload"]["direction"]) for e in program.events] == [
        ("call.initiated", "incoming"), ("call.answered", "incoming"),
        ("call.gather.ended", "incoming"), ("call.initiated", "outgoing"),
        ("call.answered", "outgoing"), ("call.bridged", "incoming"),
        ("call.bridged", "outgoing"), ("call.hangup", "incoming"), ("call.hangup", "outgoing")]
    gathered = program.events[2]["payload"]
    assert (gathered["digits"], gathered["status"]) == ("94105", "valid")
    # Virtual time: 2 s of prompt, keys from 1 s after it, 4 s of ringing, 45 s of talk.
    assert round(call.clock, 1) == 2.0 + 2.6 + 4 + 45


def test_reject_ends_the_call_busy(sim):
    def on(program, kind, payload):
        control = payload["call_control_id"]
        if kind == "call.initiated":
            program.command(control, "reject", cause="USER_BUSY")

    program, call = run(sim, on, "+16505550101")
    hangup = program.events[-1]["payload"]
    assert (hangup["hangup_cause"], hangup["hangup_source"]) == ("user_busy", "callee")


def test_dial_whisper_accept_then_bridge(sim):
    state = {}

    def on(program, kind, payload):
        control = payload["call_control_id"]
        if kind == "call.initiated" and payload["direction"] == "incoming":
            state["a"] = control
            leg = program.dial(connection_id=sim.connection_id, to=BUYER, link_to=control,
                               command_id="d1", **{"from": payload["from"]}).json()
            state["b"] = leg["data"]["call_control_id"]
        elif kind == "call.answered" and control == state.get("b"):
            program.command(control, "gather_using_speak", voice="female", maximum_digits=1,
                            payload="A call for you. Press 1 to accept.", command_id="w")
        elif kind == "call.gather.ended" and payload["digits"] == "1":
            program.command(state["a"], "bridge", call_control_id=control, command_id="br")

    program, call = run(sim, on, "+16505550101", Caller(talk=30),
                        lines={BUYER: Line.accepts(after=2)})
    assert sim.errors == []
    kinds = [e["event_type"] for e in program.events]
    assert kinds.count("call.bridged") == 2 and kinds.count("call.hangup") == 2
    assert call.legs[1].bridged_to is call.a_leg


def test_a_voicemail_never_accepts(sim):
    def on(program, kind, payload):
        control = payload["call_control_id"]
        if kind == "call.initiated" and payload["direction"] == "incoming":
            program.dial(connection_id=sim.connection_id, to=BUYER, link_to=control,
                         **{"from": payload["from"]})
        elif kind == "call.answered" and payload["direction"] == "outgoing":
            program.command(control, "gather_using_speak", voice="female", maximum_digits=1,
                            payload="Press 1 to accept.", timeout_millis=5000)
        elif kind == "call.gather.ended":
            program.command(control, "hangup")

    program, call = run(sim, on, "+16505550101", Caller(hangup_at=40),
                        lines={BUYER: Line.voicemail()})
    gathered = [e["payload"] for e in program.events if e["event_type"] == "call.gather.ended"]
    assert [(g["digits"], g["status"]) for g in gathered] == [("", "timeout")]
    assert call.legs[1].bridged_to is None


def test_events_twice_and_out_of_order_are_all_signed(sim):
    sim.redeliver, sim.shuffle = True, random.Random(5)

    def on(program, kind, payload):
        if kind == "call.initiated" and payload["direction"] == "incoming":
            program.command(payload["call_control_id"], "transfer", to=BUYER, command_id="x")

    program, call = run(sim, on, "+16505550101", Caller(talk=20),
                        lines={BUYER: Line.answers(2)})
    delivered = Counter(e["id"] for e in program.events)
    assert set(delivered) == {e["data"]["id"] for e in call.events}
    assert min(delivered.values()) >= 2
    sent = [e["data"]["id"] for e in call.events]
    seen = list(dict.fromkeys(e["id"] for e in program.events))
    assert seen[0] == sent[0] and seen != sent  # the first one first, the rest shuffled
    assert program.bad_signatures == 0
    acted = [c["acted"] for c in call.commands]
    assert acted[0] and not any(acted[1:]) and len(acted) == delivered[sent[0]]
