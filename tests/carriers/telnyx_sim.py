"""A Telnyx Call Control stand-in: its command API on a local port, and signed events.

The app is configured with this server as its Telnyx API URL (``DNI_TELNYX_API_URL``),
the simulator's API key, and its Ed25519 public key (``DNI_TELNYX_PUBLIC_KEY``). A call
starts with a signed ``call.initiated`` posted to the app's webhook; from then on the
simulator acts on the commands the app sends (answer, transfer, dial, bridge, speak,
gather_using_speak, hangup, reject), checking the Bearer key and each body strictly
(unknown or missing fields are refused with Telnyx's 422 and recorded in ``errors``),
and answers with the events Telnyx sends. A command repeated with the same
``command_id`` on the same call is answered 200 and not acted on again.

Time is virtual: each call has a clock (ringing, speaking, talking add scripted seconds)
that gives the events' ``occurred_at``; nothing is slept. Delivery can be doubled
(``redeliver``), held to the end of the call and shuffled (``out_of_order``), shuffled
while the call goes on (``jumble``), or replayed afterwards in any order (``replay``).

Legs dialled together (a simultaneous offer: one ``POST /calls`` each, arriving in any
order) ring together once no further dial has come for ``dial_window`` seconds: each
rings from the same start on its own clock, and their ends play in time order, so the
leg that answers first is the first to answer whatever order its dial came in.

``jumble`` (a seed) plays Telnyx's delivery order during the call: the events one step
causes (a buyer's leg initiated and answered; both legs bridged and then hung up) arrive
in a random order, some arrive only with the next step's (or once nothing else is going
on), and with ``redeliver`` every second copy comes a step later, among newer events.
"""

from __future__ import annotations

import base64
import datetime as dt
import http.server
import json
import math
import queue
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from carriers.scripts import Caller, Line, Party, gather, speech_seconds

SPEAK_FIELDS = {"payload", "voice", "language", "payload_type", "service_level", "voice_settings",
                "client_state", "command_id"}
COMMANDS = {
    # command: (required fields, allowed fields)
    "answer": (set(), {"client_state", "command_id", "webhook_url", "webhook_url_method",
                       "billing_group_id", "send_silence_when_idle", "record", "record_channels",
                       "record_format"}),
    "transfer": ({"to"}, {"to", "from", "from_display_name", "audio_url", "media_name",
                          "timeout_secs", "time_limit_secs", "answering_machine_detection",
                          "custom_headers", "sip_headers", "client_state",
                          "target_leg_client_state", "command_id", "webhook_url",
                          "webhook_url_method", "record", "record_channels", "record_format",
                          "record_max_length", "record_timeout_secs", "record_track",
                          "record_trim", "early_media", "mute_dtmf", "park_after_unbridge",
                          "answering_machine_detection_config", "diversion", "media_encryption",
                          "privacy", "sip_auth_username", "sip_auth_password", "sip_region",
                          "sip_transport_protocol", "webhook_urls", "webhook_urls_method",
                          "webhook_retries_policy"}),
    "bridge": ({"call_control_id"}, {"call_control_id", "client_state", "command_id",
                                     "park_after_unbridge", "play_ringtone", "ringtone",
                                     "record", "record_channels", "record_format"}),
    "speak": ({"payload", "voice"}, SPEAK_FIELDS | {"stop"}),
    "gather_using_speak": ({"payload", "voice"}, SPEAK_FIELDS | {
        "invalid_payload", "minimum_digits", "maximum_digits", "maximum_tries",
        "timeout_millis", "inter_digit_timeout_millis", "terminating_digit", "valid_digits"}),
    "hangup": (set(), {"client_state", "command_id"}),
    "reject": ({"cause"}, {"cause", "client_state", "command_id"}),
}
DIAL_FIELDS = ({"connection_id", "to", "from"}, {
    "connection_id", "to", "from", "from_display_name", "timeout_secs", "time_limit_secs",
    "answering_machine_detection", "client_state", "command_id", "custom_headers",
    "webhook_url", "webhook_url_method", "link_to", "record", "record_channels",
    "record_format", "sip_headers", "audio_url"})
DEFAULT_SEED = bytes(range(32))  # the key tests/test_webhooks.py signs with


@dataclass
class TelnyxLeg:
    control_id: str
    leg_id: str
    direction: str  # "incoming" (the caller) or "outgoing" (a leg Telnyx dialled)
    frm: str
    to: str
    party: Party
    client_state: str | None = None
    answered_at: float | None = None
    ended_at: float | None = None
    bridged_to: TelnyxLeg | None = None
    record: bool = False
    outcome: str = ""  # answered, busy, no-answer, failed, canceled, declined
    parks: bool = False  # bridged with park_after_unbridge "self": outlives the other leg


@dataclass
class TelnyxCall:
    """One call session, with everything that happened, for assertions."""

    session_id: str
    to: str
    caller: Caller
    legs: list[TelnyxLeg] = field(default_factory=list)
    clock: float = 0.0
    events: list[dict] = field(default_factory=list)  # every event body sent, in order
    deliveries: list[tuple[str, int]] = field(default_factory=list)  # (event id, status)
    commands: list[dict] = field(default_factory=list)
    ended: threading.Event = field(default_factory=threading.Event)
    held: list[dict] = field(default_factory=list)
    lines: dict = field(default_factory=dict)
    start: dt.datetime | None = None  # the real moment its virtual clock counts from
    batch: list[dict] = field(default_factory=list)  # jumble: this step's events
    dialling: list[tuple[TelnyxLeg, dict]] = field(default_factory=list)  # not rung yet
    last_dial: float = 0.0  # when the last of them came (monotonic seconds)
    late: list[tuple[dict, bool]] = field(default_factory=list)  # jumble: (event, again)

    @property
    def a_leg(self) -> TelnyxLeg:
        return self.legs[0]

    def acted(self, name: str | None = None) -> list[dict]:
        """The commands acted on (repeats of a command_id left out)."""
        return [c for c in self.commands if c["acted"] and (name is None or c["name"] == name)]

    def event_types(self) -> list[str]:
        return [e["data"]["event_type"] for e in self.events]


class TelnyxSimulator:
    """A local Telnyx: ``url`` is its API base, ``public_key`` the key its events verify with."""

    def __init__(self, port: int, *, api_key: str = "KEY_sim", seed: bytes = DEFAULT_SEED,
                 lines: dict | None = None, default_line: Line | None = None,
                 redeliver: bool = False, out_of_order: int | None = None,
                 connection_id: str = "1684641123236054244", quiet: float = 1.0,
                 start: dt.datetime | None = None, jumble: int | None = None,
                 hold_back: float = 0.3, dial_window: float = 0.15):
        self.api_key = api_key
        self.signer = Ed25519PrivateKey.from_private_bytes(seed)
        self.public_key = base64.b64encode(self.signer.public_key().public_bytes(
            Encoding.Raw, PublicFormat.Raw)).decode()
        self.lines = dict(lines or {})
        self.default_line = default_line or Line.answers()
        self.redeliver = redeliver
        self.shuffle = random.Random(out_of_order) if out_of_order is not None else None
        self.jumble = random.Random(jumble) if jumble is not None else None
        self.hold_back = hold_back  # jumble: the share of events kept for the next step
        self.dial_window = dial_window  # legs dialled this close together ring together
        # Optional: whether the app has sent every command it means to (its command queue
        # is empty). Then the sim waits for that instead of quiet spells: a step follows
        # the app's answer to the last, and a jumbled call plays the same for a seed.
        self.app_idle: Callable[[], bool] | None = None
        self.connection_id = connection_id
        self.quiet = quiet
        self.start = start  # None: each call's clock starts when it is placed
        self.webhook_url: str | list[str] | None = None  # a list: app servers taken in turn
        self.errors: list[str] = []
        self.calls: dict[str, TelnyxCall] = {}
        self._legs: dict[str, tuple[TelnyxCall, TelnyxLeg]] = {}
        self._seen: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        self._work: queue.Queue = queue.Queue()
        self._busy = 0
        self._last = time.monotonic()
        self.http = requests.Session()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{port}/v2"
        self._threads = [threading.Thread(target=self.server.serve_forever, daemon=True),
                         threading.Thread(target=self._worker, daemon=True)]
        for thread in self._threads:
            thread.start()

    def close(self) -> None:
        self._work.put(None)
        self.server.shutdown()
        self.server.server_close()
        self.http.close()

    # -- placing a call --------------------------------------------------------------------

    def call(self, to: str, caller: Caller | None = None, *, lines: dict | None = None,
             wait: float = 15.0) -> TelnyxCall:
        """Ring ``to`` from ``caller``; returns when the call has ended (the caller hangs up
        once the app has stopped sending commands for ``quiet`` seconds)."""
        assert self.webhook_url, "attach the simulator to the app's webhook URL first"
        caller = caller or Caller()
        call = TelnyxCall(str(uuid.uuid4()), to, caller, start=self.start or dt.datetime.now(dt.UTC))
        call.lines = {**self.lines, **(lines or {})}
        leg = self._new_leg(call, "incoming", caller.number, to, Party(caller, caller.hangup_at))
        self.calls[call.session_id] = call
        self._submit(call, lambda: self._event(call, leg, "call.initiated", state="parked",
                                               start_time=self._stamp(call, 0)))
        deadline = time.monotonic() + wait
        while not call.ended.wait(0.05):
            if time.monotonic() > deadline:
                raise AssertionError(f"call {call.session_id} did not end within {wait} s")
            idle = self._work.empty() and not self._busy and self._app_idle()
            if idle and call.late:  # nothing else is going on: the late events come now
                self._submit(call, lambda: None)
                continue
            if idle and time.monotonic() - self._last > self.quiet:
                self._last = time.monotonic()
                self._submit(call, lambda: self._caller_gives_up(call))
        self._flush_held(call)
        return call

    def _app_idle(self) -> bool:
        return self.app_idle is None or self.app_idle()

    def replay(self, call: TelnyxCall, seed: int = 0, times: int = 2) -> None:
        """Deliver every event of ``call`` again, ``times`` times, in a shuffled order."""
        bodies = [b for b in call.events for _ in range(times)]
        random.Random(seed).shuffle(bodies)
        for body in bodies:
            self._deliver(call, body, again=True)
        self._settle()

    def _settle(self) -> None:
        """Wait until the app has stopped sending commands."""
        while True:
            time.sleep(0.05)
            if self._work.empty() and not self._busy and time.monotonic() - self._last > self.quiet:
                return

    def _caller_gives_up(self, call: TelnyxCall) -> None:
        """Nothing more is happening: the caller hangs up (at their scripted moment, or
        after half a minute of this)."""
        leg = call.a_leg
        if leg.ended_at is not None:
            return
        at = leg.party.hangup_at if leg.party.hangup_at is not None else call.clock + 30
        call.clock = max(call.clock, at)
        self._hangup(call, leg, "caller")

    # -- commands --------------------------------------------------------------------------

    def _handler(self):
        sim = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, answer = sim._command(self.path, self.headers.get("Authorization"), raw)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(json.dumps(answer).encode())

            def log_message(self, *args):
                pass

        return Handler

    def _refuse(self, status: int, code: str, title: str, detail: str = "") -> tuple[int, dict]:
        self.errors.append(f"{status} {title}: {detail}")
        return status, {"errors": [{"code": code, "title": title, "detail": detail}]}

    def _command(self, path: str, authorization: str | None, raw: bytes) -> tuple[int, dict]:
        self._last = time.monotonic()
        if authorization != f"Bearer {self.api_key}":
            return self._refuse(401, "10009", "Authentication failed", repr(authorization))
        try:
            body = json.loads(raw)
        except ValueError:
            return self._refuse(400, "10015", "Bad Request", "the body is not JSON")
        if not isinstance(body, dict):
            return self._refuse(422, "10015", "Invalid parameters", "the body is not an object")
        parts = path.split("?")[0].strip("/").split("/")
        if parts == ["v2", "calls"]:
            return self._dial(body)
        if len(parts) != 5 or parts[:2] != ["v2", "calls"] or parts[3] != "actions":
            return self._refuse(404, "10005", "Resource not found", path)
        control_id, name = parts[2], parts[4]
        if name not in COMMANDS:
            return self._refuse(404, "10005", "Resource not found", f"no command {name!r}")
        required, allowed = COMMANDS[name]
        problem = self._check_fields(body, required, allowed)
        if problem:
            return self._refuse(422, "10015", "Invalid parameters", f"{name}: {problem}")
        found = self._legs.get(control_id)
        if found is None:
            return self._refuse(404, "10005", "Resource not found", control_id)
        call, leg = found
        command_id = body.get("command_id")
        with self._lock:
            repeat = command_id is not None and (control_id, command_id) in self._seen
            if command_id is not None:
                self._seen.add((control_id, command_id))
        call.commands.append({"name": name, "leg": control_id, "body": body,
                              "acted": not repeat})
        if repeat:
            return 200, {"data": {"result": "ok"}}
        if leg.ended_at is not None:
            return 422, {"errors": [{"code": "90018", "title": "Call has already ended"}]}
        self._submit(call, lambda: self._act(call, leg, name, body))
        return 200, {"data": {"result": "ok"}}

    def _act(self, call, leg, name: str, body: dict) -> None:
        # As Telnyx does: a command's client_state rides on every later event of its leg.
        if "client_state" in body:
            leg.client_state = body["client_state"]
        getattr(self, f"_do_{name}")(call, leg, body)

    @staticmethod
    def _check_fields(body: dict, required: set, allowed: set) -> str | None:
        unknown = sorted(set(body) - allowed)
        missing = sorted(required - set(body))
        if unknown:
            return f"unknown fields {unknown}"
        if missing:
            return f"missing fields {missing}"
        for name in ("to", "from", "payload", "voice", "cause", "call_control_id", "command_id",
                     "client_state", "terminating_digit", "valid_digits"):
            if name in body and not isinstance(body[name], str):
                return f"{name} must be a string"
        for name in ("timeout_secs", "minimum_digits", "maximum_digits", "timeout_millis",
                     "inter_digit_timeout_millis", "time_limit_secs"):
            if name in body and (isinstance(body[name], bool) or not isinstance(body[name], int)):
                return f"{name} must be an integer"
        if "to" in body and not (body["to"].startswith("+") or body["to"].startswith("sip:")):
            return "to must be E.164 or a sip: URI"
        return None

    def _dial(self, body: dict) -> tuple[int, dict]:
        """POST /v2/calls: a new outgoing leg, in the session of the leg it links to."""
        problem = self._check_fields(body, *DIAL_FIELDS)
        if problem:
            return self._refuse(422, "10015", "Invalid parameters", f"dial: {problem}")
        if body["connection_id"] != self.connection_id:
            return self._refuse(422, "10015", "Invalid parameters", "unknown connection_id")
        linked = self._legs.get(body.get("link_to", ""))
        if linked is None:
            return self._refuse(422, "10015", "Invalid parameters",
                                "link_to must name a live call (the simulator needs a session)")
        call = linked[0]
        leg = self._new_leg(call, "outgoing", body["from"], body["to"], None)
        leg.client_state = body.get("client_state")
        call.commands.append({"name": "dial", "leg": leg.control_id, "body": body, "acted": True})
        with self._lock:
            first = not call.dialling
            call.dialling.append((leg, body))
            call.last_dial = time.monotonic()
            if first:
                self._busy += 1  # the call is not idle while its dials wait to ring
        if first:
            self._when_dialled(call)
        return 200, {"data": {"call_control_id": leg.control_id, "call_leg_id": leg.leg_id,
                              "call_session_id": call.session_id, "is_alive": False,
                              "record_type": "call"}}

    # -- what each command does (on the simulator's worker thread) ------------------------

    def _do_answer(self, call, leg, body):
        if leg.answered_at is None:
            leg.answered_at = call.clock
            leg.record = leg.record or "record" in body
            self._event(call, leg, "call.answered", start_time=self._stamp(call, call.clock))

    def _do_transfer(self, call, leg, body):
        # Without "from", Telnyx presents the number the caller dialled.
        new = self._new_leg(call, "outgoing", body.get("from", leg.to), body["to"], None)
        new.client_state = body.get("target_leg_client_state")
        new.record = "record" in body
        self._ring(call, new, body, bridge_to=leg)

    def _when_dialled(self, call) -> None:
        """Ring the legs dialled together (a simultaneous offer's legs come as separate
        commands, in any order) once no other dial has come for ``dial_window`` seconds
        (with ``app_idle``: once the app has sent them all)."""
        wait = call.last_dial + self.dial_window - time.monotonic()
        if self.app_idle is not None:
            wait = 0.0 if self.app_idle() else 0.01
        if wait > 0:
            timer = threading.Timer(wait, self._when_dialled, (call,))
            timer.daemon = True
            timer.start()
            return
        with self._lock:
            legs, call.dialling = call.dialling, []
        self._submit(call, lambda: self._ring_together(call, legs))
        with self._lock:
            self._busy -= 1

    def _ring_together(self, call, legs: list[tuple[TelnyxLeg, dict]]) -> None:
        """Legs dialled together ring at once, each on a clock of its own from the same
        start: their ends are played in time order, whatever order the dials came in."""
        legs = [(leg, body) for leg, body in legs if leg.ended_at is None]
        start = call.clock
        for leg, _ in legs:
            self._ring_start(call, leg)
        order = sorted(range(len(legs)),
                       key=lambda i: (self._ring_ends_at(call, *legs[i], start), i))
        for i in order:
            self._ring_end(call, *legs[i], start, bridge_to=None)

    def _ring(self, call, leg, body, bridge_to):
        """Ring ``leg``'s line; with ``bridge_to`` (a transfer) connect the two on answer."""
        start = call.clock
        self._ring_start(call, leg)
        self._ring_end(call, leg, body, start, bridge_to)

    def _ring_start(self, call, leg) -> None:
        leg.party = Party(call.lines.get(leg.to, self.default_line))
        self._event(call, leg, "call.initiated", state="bridging",
                    start_time=self._stamp(call, call.clock))

    @staticmethod
    def _ring_ends_at(call, leg, body, start: float) -> float:
        """When ``leg``'s ringing ends (answered, busy, rung out, or the caller gone)."""
        line = leg.party.script
        if line.outcome in ("busy", "failed"):
            return start + (1.0 if line.outcome == "busy" else 0.5)
        timeout = body.get("timeout_secs", 30)
        answers = line.outcome == "answer" and line.answer_after < timeout
        end = start + (line.answer_after if answers else timeout)
        caller_gone = call.a_leg.party.hangup_at
        return end if caller_gone is None else min(end, caller_gone)

    def _ring_end(self, call, leg, body, start: float, bridge_to) -> None:
        if leg.ended_at is not None:
            return  # ended meanwhile: the caller left
        line = leg.party.script
        timeout = body.get("timeout_secs", 30)
        caller_gone = call.a_leg.party.hangup_at
        answers = line.outcome == "answer" and line.answer_after < timeout
        if line.outcome in ("busy", "failed"):
            call.clock = max(call.clock, start + (1.0 if line.outcome == "busy" else 0.5))
            leg.outcome = line.outcome
            return self._hangup(call, leg, "callee", "user_busy" if line.outcome == "busy"
                                else "not_found")
        end_ring = start + (line.answer_after if answers else timeout)
        if caller_gone is not None and caller_gone < end_ring:
            call.clock = caller_gone
            leg.outcome = "canceled"
            self._hangup(call, leg, "caller", "originator_cancel")
            return self._hangup(call, call.a_leg, "caller", "normal_clearing")
        call.clock = max(call.clock, end_ring)
        if not answers:
            leg.outcome = "no-answer"
            return self._hangup(call, leg, "callee", "timeout")
        leg.answered_at, leg.outcome = call.clock, "answered"
        if line.talk is not None:
            leg.party.hangup_at = call.clock + line.talk
        self._event(call, leg, "call.answered", start_time=self._stamp(call, start))
        if bridge_to is not None:
            self._bridge(call, bridge_to, leg)

    def _do_bridge(self, call, leg, body):
        found = self._legs.get(body["call_control_id"])
        if found is None or found[0] is not call:
            self.errors.append(f"bridge: {body['call_control_id']} is not a leg of this call")
            return
        other = found[1]
        if other.ended_at is not None:
            self.errors.append("bridge: the other leg has ended")
            return
        leg.parks = body.get("park_after_unbridge") == "self"
        if leg.answered_at is None:  # an incoming call is answered by being bridged
            leg.answered_at = call.clock
            self._event(call, leg, "call.answered", start_time=self._stamp(call, call.clock))
        self._bridge(call, leg, other)

    def _bridge(self, call, a, b):
        """Connect two legs, then play the conversation to its scripted end."""
        a.bridged_to, b.bridged_to = b, a
        for leg in (a, b):
            # A transferred incoming call is connected by the bridge; Telnyx sends it no
            # call.answered of its own (simulator's choice, as observed in its logs).
            leg.answered_at = call.clock if leg.answered_at is None else leg.answered_at
        for leg in (a, b):
            self._event(call, leg, "call.bridged")
        caller = call.a_leg
        ends = []
        if caller.party.hangup_at is not None:
            ends.append((caller.party.hangup_at, caller))
        elif call.caller.talk is not None:
            ends.append((call.clock + call.caller.talk, caller))
        callee = b if a is caller else a
        if callee.party.hangup_at is not None:
            ends.append((callee.party.hangup_at, callee))
        at, by = min(ends, key=lambda e: e[0]) if ends else (call.clock + 14400, caller)
        call.clock = max(call.clock, at)
        first, second = (by, a if by is b else b)
        self._hangup(call, first, "caller" if first is caller else "callee")
        if second.bridged_to is not None:  # else parked: the app says what comes next
            self._hangup(call, second, "caller" if first is caller else "callee")

    def _do_speak(self, call, leg, body):
        if leg.answered_at is None:
            self.errors.append("speak on a leg not answered")
            return
        self._event(call, leg, "call.speak.started")
        if self._advance(call, leg, speech_seconds(body["payload"])):
            self._event(call, leg, "call.speak.ended", status="completed")

    def _do_gather_using_speak(self, call, leg, body):
        if leg.answered_at is None:
            self.errors.append("gather_using_speak on a leg not answered")
            return
        if not self._advance(call, leg, speech_seconds(body["payload"])):
            return
        keys = leg.party.next_keys()
        got = gather(keys, first_timeout=body.get("timeout_millis", 60_000) / 1000,
                     digit_timeout=body.get("inter_digit_timeout_millis", 5_000) / 1000,
                     max_digits=body.get("maximum_digits", 128),
                     finish_on=body.get("terminating_digit", "#"),
                     valid=body.get("valid_digits", "0123456789#*"))
        if not self._advance(call, leg, got.seconds):
            self._event(call, leg, "call.gather.ended", digits="", status="call_hangup")
            return self._hangup(call, leg, "caller" if leg is call.a_leg else "callee")
        leg.party.pressed.append(got.digits)
        status = ("timeout" if not got.digits
                  else "invalid" if len(got.digits) < body.get("minimum_digits", 1) else "valid")
        self._event(call, leg, "call.gather.ended", digits=got.digits, status=status)

    def _do_hangup(self, call, leg, body):
        self._hangup(call, leg, "callee" if leg is call.a_leg else "caller")

    def _do_reject(self, call, leg, body):
        if leg.answered_at is not None or leg.direction != "incoming":
            self.errors.append("reject: only an incoming call not yet answered can be rejected")
            return
        cause = {"CALL_REJECTED": "call_rejected", "USER_BUSY": "user_busy"}.get(body["cause"])
        if cause is None:
            self.errors.append(f"reject: unknown cause {body['cause']!r}")
            return
        self._hangup(call, leg, "callee", cause)

    # -- state and events ------------------------------------------------------------------

    def _advance(self, call, leg, seconds: float) -> bool:
        """Move the clock on; False (and the leg hung up) if its party hung up meanwhile."""
        until = call.clock + seconds
        gone = leg.party.hangup_at
        if gone is not None and gone < until:
            call.clock = max(call.clock, gone)
            return False
        call.clock = until
        return True

    def _new_leg(self, call, direction, frm, to, party) -> TelnyxLeg:
        leg = TelnyxLeg(f"v3:{uuid.uuid4().hex}", str(uuid.uuid4()), direction, frm, to, party)
        call.legs.append(leg)
        self._legs[leg.control_id] = (call, leg)
        return leg

    def _hangup(self, call, leg, source: str, cause: str = "normal_clearing") -> None:
        if leg.ended_at is not None:
            return
        leg.ended_at = call.clock
        if leg.answered_at is None and cause == "normal_clearing" and source == "caller":
            cause = "originator_cancel"
        self._event(call, leg, "call.hangup", hangup_cause=cause, hangup_source=source,
                    sip_hangup_cause={"normal_clearing": "200", "user_busy": "486",
                                      "timeout": "480", "originator_cancel": "487",
                                      "not_found": "404", "call_rejected": "603"}.get(cause, "unspecified"),
                    start_time=self._stamp(call, 0), end_time=self._stamp(call, call.clock))
        other = leg.bridged_to
        if other is not None and other.ended_at is None and other.parks:
            other.bridged_to = leg.bridged_to = None  # unbridged, and parked
        elif other is not None and other.ended_at is None:
            self._hangup(call, other, source)
        if leg.record and leg.answered_at is not None:
            since = leg.answered_at
            self._event(call, leg, "call.recording.saved", channels="dual", recording_urls={
                "mp3": f"https://s3.amazonaws.com/telephony-recorder-prod/{leg.leg_id}.mp3"},
                public_recording_urls={}, recording_started_at=self._stamp(call, since),
                recording_ended_at=self._stamp(call, call.clock))
        if leg is call.a_leg:
            for other in call.legs[1:]:  # legs still ringing stop with the caller
                if other.ended_at is None:
                    self._hangup(call, other, "caller", "originator_cancel")

    def _event(self, call, leg, kind: str, **payload) -> None:
        body = {"data": {"record_type": "event", "event_type": kind, "id": str(uuid.uuid4()),
                         "occurred_at": self._stamp(call, call.clock), "payload": {
                             "call_control_id": leg.control_id, "call_leg_id": leg.leg_id,
                             "call_session_id": call.session_id,
                             "client_state": leg.client_state, "connection_id": self.connection_id,
                             "from": leg.frm, "to": leg.to, "direction": leg.direction,
                             **payload}},
                "meta": {"attempt": 1, "delivered_to": self.webhook_url}}
        call.events.append(body)
        first = kind == "call.initiated" and leg is call.a_leg
        if self.shuffle is not None and not first:
            call.held.append(body)
            return
        if self.jumble is not None and not first:
            call.batch.append(body)  # delivered when the step ends (``_deliver_jumbled``)
            return
        self._deliver(call, body)
        if self.redeliver:
            self._deliver(call, body, again=True)

    def _deliver_jumbled(self, call) -> None:
        """Jumble: the events of the step just played, shuffled with those held from earlier
        steps; some of them are held in turn, and each one's second copy (``redeliver``)
        waits for a later step."""
        fresh, now = call.batch, call.late
        call.batch, call.late = [], []
        for body in fresh:
            if self.redeliver:
                call.late.append((body, True))
            if self.jumble.random() < self.hold_back:
                call.late.append((body, False))
            else:
                now.append((body, False))
        self.jumble.shuffle(now)
        for body, again in now:
            self._deliver(call, body, again=again)

    def _flush_held(self, call) -> None:
        """Out of order: the held events (and the first one again), shuffled, each twice
        when redelivering. Jumble: whatever is still held, shuffled."""
        if self.jumble is not None:
            while call.batch or call.late:
                self._deliver_jumbled(call)
            self._settle()
        if self.shuffle is None:
            return
        bodies = call.held + [call.events[0]]
        bodies = bodies * (2 if self.redeliver else 1)
        self.shuffle.shuffle(bodies)
        call.held = []
        for body in bodies:
            self._deliver(call, body, again=True)
        self._settle()

    def _deliver(self, call, body: dict, again: bool = False) -> None:
        if again:
            body = json.loads(json.dumps(body))
            body["meta"]["attempt"] = 2
        raw = json.dumps(body).encode()
        stamp = str(int(time.time()))
        signature = base64.b64encode(self.signer.sign(stamp.encode() + b"|" + raw)).decode()
        url = self.webhook_url
        if isinstance(url, list | tuple):  # several app servers: each delivery to the next
            self._turn = getattr(self, "_turn", -1) + 1
            url = url[self._turn % len(url)]
        response = self.http.post(url, data=raw, timeout=30, headers={
            "Content-Type": "application/json", "User-Agent": "telnyx-webhooks",
            "telnyx-timestamp": stamp, "telnyx-signature-ed25519": signature})
        self._last = time.monotonic()
        call.deliveries.append((body["data"]["id"], response.status_code))
        if response.status_code >= 300:
            self.errors.append(f"webhook {body['data']['event_type']} answered "
                               f"{response.status_code}: {response.text[:200]}")

    def _submit(self, call, action) -> None:
        with self._lock:
            self._busy += 1
        self._work.put((call, action))

    def _worker(self) -> None:
        while True:
            item = self._work.get()
            if item is None:
                return
            call, action = item
            try:
                action()
                if self.jumble is not None:
                    self._deliver_jumbled(call)
            except Exception as exc:  # reported to the test, never lost in a thread
                self.errors.append(f"simulator failed: {type(exc).__name__}: {exc}")
            finally:
                self._last = time.monotonic()
                with self._lock:
                    self._busy -= 1
                if call.a_leg.ended_at is not None and all(
                        leg.ended_at is not None for leg in call.legs):
                    call.ended.set()

    @staticmethod
    def _stamp(call: TelnyxCall, at: float) -> str:
        moment = call.start + dt.timedelta(seconds=at)
        return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def seconds_between(first: str, second: str) -> int:
    parse = dt.datetime.fromisoformat
    return math.ceil((parse(second.replace("Z", "+00:00")) -
                      parse(first.replace("Z", "+00:00"))).total_seconds())
