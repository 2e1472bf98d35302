"""The Telnyx simulator (tests/carriers/telnyx_sim.py), taught what a web callback needs.

A callback starts with an outbound ``dial`` (``POST /v2/calls`` without ``link_to``): here
that opens a new session whose first leg is the business's, rung when the test says so
(``play``), as Telnyx rings it once the command is answered. A leg dialled with
``answering_machine_detection: "detect"`` reports ``call.machine.detection.ended``
(``result`` "machine" for a voicemail line, else "human") a moment after it answers, as
Telnyx does. Everything else (the gather, the visitor's ``dial`` with ``link_to``, the
bridge, hang-ups, the strict checks of every command and the signed events) is the
simulator's own.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid

from carriers.scripts import Caller
from carriers.telnyx_sim import DIAL_FIELDS, TelnyxCall, TelnyxSimulator

DETECTION_SECONDS = 2.5  # from the answer to the verdict


class CallbackTelnyx(TelnyxSimulator):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.originated: list[tuple[TelnyxCall, dict]] = []  # (session, dial body), not rung

    def _dial(self, body: dict) -> tuple[int, dict]:
        if "link_to" in body:
            return super()._dial(body)
        problem = self._check_fields(body, *DIAL_FIELDS)
        if problem:
            return self._refuse(422, "10015", "Invalid parameters", f"dial: {problem}")
        if body["connection_id"] != self.connection_id:
            return self._refuse(422, "10015", "Invalid parameters", "unknown connection_id")
        if body.get("webhook_url") != self.webhook_url:
            self.errors.append(f"dial: webhook_url {body.get('webhook_url')!r}, expected "
                               f"{self.webhook_url!r}")
        # The service is the "caller" of an outbound session: it stays until it hangs up.
        call = TelnyxCall(str(uuid.uuid4()), body["to"], Caller(number=body["from"], talk=None),
                          start=self.start or dt.datetime.now(dt.UTC))
        call.lines = dict(self.lines)
        leg = self._new_leg(call, "outgoing", body["from"], body["to"], None)
        leg.client_state = body.get("client_state")
        call.commands.append({"name": "dial", "leg": leg.control_id, "body": body,
                              "acted": True})
        self.calls[call.session_id] = call
        self.originated.append((call, body))
        return 200, {"data": {"call_control_id": leg.control_id, "call_leg_id": leg.leg_id,
                              "call_session_id": call.session_id, "is_alive": False,
                              "record_type": "call"}}

    def play(self, wait: float = 15.0) -> list[TelnyxCall]:
        """Ring every business leg dialled so far; returns their sessions once each has
        ended and the app has sent what it meant to."""
        started, self.originated = self.originated, []
        for call, body in started:
            leg = call.a_leg
            self._submit(call, lambda c=call, lg=leg, b=body: self._ring(c, lg, b, None))
        deadline = time.monotonic() + wait
        for call, _ in started:
            while not call.ended.wait(0.05):
                if time.monotonic() > deadline:
                    raise AssertionError(f"callback session {call.session_id} did not end; "
                                         f"events {call.event_types()}, errors {self.errors}")
        self._settle()
        return [call for call, _ in started]

    def _ring_end(self, call, leg, body, start: float, bridge_to) -> None:
        super()._ring_end(call, leg, body, start, bridge_to)
        if (body.get("answering_machine_detection") == "detect" and leg.ended_at is None
                and leg.answered_at is not None):
            if not self._advance(call, leg, DETECTION_SECONDS):
                return self._hangup(call, leg, "callee")
            machine = getattr(leg.party.script, "machine", False)
            self._event(call, leg, "call.machine.detection.ended",
                        result="machine" if machine else "human")
