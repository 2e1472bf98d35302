"""A Twilio stand-in that places calls to the app and executes its TwiML as Twilio does.

Every request is signed with the account's auth token exactly as Twilio signs it (the
twilio library's RequestValidator: full URL, then the POST parameters sorted by name). The
simulator follows ``action`` and ``Redirect`` URLs, runs each ``<Number>``'s whisper
``url`` on the callee's leg, and posts status, Dial action and recording callbacks with
the parameters Twilio sends. Time is virtual: a Say, a Pause or a ring takes scripted
seconds that are added to a clock and reported (CallDuration, DialCallDuration,
Timestamp), never slept.

Where Twilio's documentation leaves a detail open, the choice made here is named in a
comment ("simulator's choice"), so a test never leans on it unknowingly.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import heapq
import itertools
import math
import random
import time
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from urllib.parse import urlencode, urljoin

import requests
from twilio.request_validator import RequestValidator

from carriers.scripts import Caller, Line, Party, gather, speech_seconds

ACCOUNT_SID = "AC" + "0" * 32
TERMINAL = ("completed", "busy", "no-answer", "failed", "canceled")
PROMPT_VERBS = ("Say", "Play", "Pause")


def new_sid(prefix: str) -> str:
    return prefix + uuid.uuid4().hex


def whole(seconds: float) -> int:
    """Seconds as Twilio reports them: whole, rounded up (float noise is not a second)."""
    return math.ceil(round(seconds, 6))


@dataclass
class Leg:
    """One call leg: the caller's (inbound) or a callee's (outbound-dial)."""

    sid: str
    role: str  # "caller" or "callee"
    party: Party
    params: dict  # the parameters every request about this leg carries
    clock: float = 0.0
    sequence: itertools.count = field(default_factory=itertools.count)

    def hung_up_by(self, moment: float) -> bool:
        return self.party.hangup_at is not None and self.party.hangup_at <= moment


@dataclass
class Offer:
    """One ``<Number>``/``<Sip>`` of a ``<Dial>``: how its leg went."""

    target: str
    line: Line
    leg: Leg
    whisper: str | None
    noun: ET.Element
    outcome: str = ""  # completed (bridged), declined, busy, no-answer, failed, canceled
    started_at: float = 0.0
    answered_at: float | None = None
    ended_at: float | None = None
    bridged_at: float | None = None


@dataclass
class SimulatedCall:
    """A call placed by the simulator, with everything that happened, for assertions."""

    sid: str
    to: str
    caller: Caller
    transcript: list[dict] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    offers: list[list[Offer]] = field(default_factory=list)  # one list per <Dial>
    status: str = "ringing"
    answered_at: float | None = None
    ended_at: float | None = None
    recordings: list[dict] = field(default_factory=list)
    differing_answers: list[str] = field(default_factory=list)

    def requests(self, path: str | None = None) -> list[dict]:
        """The requests sent to the app (optionally to URLs containing ``path``)."""
        return [e for e in self.transcript if e["kind"] == "request"
                and (path is None or path in e["url"])]

    def verbs(self, leg: str = "caller") -> list[dict]:
        """The verbs executed on a leg ("caller", or a callee's CallSid, or "callee" for all)."""
        return [e for e in self.transcript if e["kind"] == "verb"
                and (e["leg"] == leg or (leg == "callee" and e["leg"] != "caller"))]

    def said(self, leg: str = "caller") -> list[str]:
        return [e["text"] for e in self.verbs(leg) if e["verb"] == "Say"]

    @property
    def duration(self) -> int:
        if self.answered_at is None or self.ended_at is None:
            return 0
        return whole(self.ended_at - self.answered_at)

    @property
    def bridges(self) -> list[Offer]:
        """Every leg the caller was connected to, in order."""
        return [o for offers in self.offers for o in offers if o.outcome == "completed"]

    @property
    def bridged(self) -> Offer | None:
        """The leg the caller was last connected to."""
        return self.bridges[-1] if self.bridges else None


class TwimlError(Exception):
    """Twilio would stop the call here and log an error (its code in the message)."""


class TwilioSimulator:
    """Places calls to ``base_url``'s voice webhook and plays them through.

    ``lines`` maps each number (or SIP URI) the app may dial to its scripted line; a
    number not in it gets ``default_line``. ``status_events`` are the caller leg's status
    callbacks (Twilio sends a phone number's status callback only "completed" unless told
    otherwise). ``redeliver`` posts every status and recording callback twice;
    ``repeat_twiml`` sends every TwiML request twice and records when the answers differ;
    ``shuffle`` (a seed) holds the callbacks to the end of the call and posts them in a
    random order. With ``backends`` (app servers' URLs), ``base_url`` is the public URL
    the app names in its TwiML (``DNI_PUBLIC_URL``) and Twilio signs, and each request
    goes to the next backend in turn, as through a load balancer.
    """

    def __init__(self, base_url: str, auth_token: str, *, voice_path: str = "/webhooks/twilio/voice",
                 status_path: str | None = "/webhooks/twilio/status",
                 status_events: tuple[str, ...] = ("completed",), lines: dict | None = None,
                 default_line: Line | None = None, redeliver: bool = False,
                 repeat_twiml: bool = False, shuffle: int | None = None,
                 play_seconds: float = 5.0, start: dt.datetime | None = None,
                 signature_header: str = "X-Twilio-Signature", backends: list | None = None,
                 real_time: float = 0.0):
        self.base_url = base_url.rstrip("/")
        self.validator = RequestValidator(auth_token)
        self.voice_url = self.base_url + voice_path
        self.status_url = self.base_url + status_path if status_path else None
        self.status_events = status_events
        self.lines = dict(lines or {})
        self.default_line = default_line or Line.answers()
        self.redeliver = redeliver
        self.repeat_twiml = repeat_twiml
        self.shuffle = random.Random(shuffle) if shuffle is not None else None
        self.play_seconds = play_seconds
        self.start = start  # None: each call's clock starts when it is placed
        self.signature_header = signature_header
        self.shuffle_now = False
        self.backends = itertools.cycle(backends) if backends else None
        # Called (call, offer) when a leg is bridged, before the call goes on: a test can
        # place other calls while this one is connected.
        self.on_bridge = None
        # Called (url) before each request: a test can break something between two turns.
        self.before_request = None
        # 0: virtual time. Else each request waits for its moment, at this many real
        # seconds per scripted second (1.0: real time), for what the app times itself.
        self.real_time = real_time
        self.http = requests.Session()

    # -- placing a call --------------------------------------------------------------------

    def call(self, to: str, caller: Caller | None = None, *, lines: dict | None = None,
             sid: str | None = None) -> SimulatedCall:
        """Dial ``to`` as ``caller`` and play the call to its end; returns its record."""
        caller = caller or Caller()
        call = SimulatedCall(sid or new_sid("CA"), to, caller)
        self._start = self.start or dt.datetime.now(dt.UTC)
        self._real0 = time.monotonic()
        self._lines = {**self.lines, **(lines or {})}
        self._held: list[tuple[float, int, str, dict]] = []  # callbacks due, by time
        self._order = itertools.count()
        self._shuffled: list[tuple[str, dict]] = []
        self._late: list[tuple[str, dict]] = []  # callbacks Twilio sends after the next fetch
        self._release_due = False
        party = Party(caller, caller.hangup_at)
        leg = Leg(call.sid, "caller", party, {
            "AccountSid": ACCOUNT_SID, "ApiVersion": "2010-04-01", "CallSid": call.sid,
            "Called": to, "Caller": caller.number, "Direction": "inbound", "From": caller.number,
            "To": to, "FromCountry": caller.country, "FromState": caller.state,
            "FromCity": caller.city, "FromZip": caller.zip, "ToCountry": "US"})
        self._call, self._leg = call, leg
        for event in ("initiated", "ringing"):
            if event in self.status_events:
                self._status(leg, event)
        try:
            self._run(leg, self.voice_url, "POST", {"CallStatus": "ringing"})
        except TwimlError as exc:
            call.errors.append(str(exc))
            self._note(leg, "error", message=str(exc))
        self._end_call(leg)
        return call

    def _end_call(self, leg: Leg) -> None:
        call = self._call
        end = leg.clock if leg.party.hangup_at is None else min(leg.clock, leg.party.hangup_at)
        call.ended_at = max(end, 0.0)
        if call.status not in TERMINAL:
            # Simulator's choice: an inbound call never answered ends "canceled" when the
            # caller hung up, else "no-answer".
            call.status = "completed" if call.answered_at is not None else (
                "canceled" if leg.hung_up_by(call.ended_at) else "no-answer")
        self._flush(math.inf)
        if self.status_url and "completed" in self.status_events:
            extra = {"CallStatus": call.status, "Timestamp": self._stamp(call.ended_at),
                     "CallbackSource": "call-progress-events",
                     "SequenceNumber": str(next(leg.sequence))}
            if call.status == "completed":
                extra |= {"CallDuration": str(call.duration),
                          "Duration": str(max(1, math.ceil(call.duration / 60)))}
            self._callback(self.status_url, leg.params | extra)
        self._release_held()
        if self._shuffled:
            shuffled, self._shuffled, self.shuffle_now = self._shuffled, [], True
            self.shuffle.shuffle(shuffled)
            try:
                for url, params in shuffled:
                    self._post_callback(url, params)
            finally:
                self.shuffle_now = False

    # -- running TwiML ---------------------------------------------------------------------

    def _run(self, leg: Leg, url: str, method: str, extra: dict) -> str:
        """Fetch and execute documents on ``leg`` until it ends; returns why it ended:
        "end" (no more verbs), "hangup", "reject", "hung-up" (the party hung up)."""
        steps = self._steps(leg, url, method, extra)
        while True:
            try:
                next(steps)
            except StopIteration as stop:
                return stop.value

    def _steps(self, leg: Leg, url: str, method: str, extra: dict):
        """``_run`` one request at a time: yields the virtual moment of each request before
        sending it, and returns why the leg's TwiML ended."""
        while url:
            yield leg.clock
            root = self._fetch(leg, url, method, extra)
            url, method, extra, ended = self._execute(leg, root, url)
            if ended:
                return ended
        return "end"

    def _whisper(self, offer: Offer):
        """The steps of a callee leg's whisper (none without a ``url``: bridged at once)."""
        if offer.whisper:
            return (yield from self._steps(offer.leg, offer.whisper,
                                           offer.noun.get("method", "POST").upper(),
                                           {"CallStatus": "in-progress"}))
        return "end"

    def _execute(self, leg: Leg, root: ET.Element, doc_url: str):
        """Run a document's verbs; returns (next url, method, parameters, why it ended)."""
        for verb in root:
            if leg.hung_up_by(leg.clock):
                return None, None, None, "hung-up"
            tag = verb.tag
            if tag in PROMPT_VERBS:
                if not self._prompt(leg, verb):
                    return None, None, None, "hung-up"
            elif tag == "Gather":
                jump = self._gather(leg, verb, doc_url)
                if jump == "hung-up":
                    return None, None, None, "hung-up"
                if jump:
                    return jump + (None,)
            elif tag == "Redirect":
                target = urljoin(doc_url, (verb.text or "").strip())
                self._verb(leg, "Redirect", url=target)
                return target, verb.get("method", "POST").upper(), {}, None
            elif tag == "Hangup":
                self._verb(leg, "Hangup")
                self._answer(leg)
                return None, None, None, "hangup"
            elif tag == "Reject":
                reason = verb.get("reason", "rejected")
                self._verb(leg, "Reject", reason=reason)
                if leg.role == "caller" and self._call.answered_at is None:
                    # As documented: reason="busy" ends the call busy, "rejected" (the
                    # default, a not-in-service tone) no-answer; the call is not answered.
                    self._call.status = "busy" if reason == "busy" else "no-answer"
                return None, None, None, "reject"
            elif tag == "Dial":
                if leg.role != "caller":
                    raise TwimlError("13201: a whisper document may not <Dial>")
                jump = self._dial(leg, verb, doc_url)
                if jump == "hung-up":
                    return None, None, None, "hung-up"
                if jump:
                    return jump + (None,)
            else:
                raise TwimlError(f"12200: <{tag}> is not a verb this simulator plays")
        return None, None, None, "end"

    def _answer(self, leg: Leg) -> None:
        """Twilio answers an inbound call when a verb needs the line open."""
        if leg.role == "caller" and self._call.answered_at is None:
            self._call.answered_at = leg.clock
            self._call.status = "in-progress"
            if "answered" in self.status_events and self.status_url:
                self._status(leg, "in-progress")

    def _prompt(self, leg: Leg, verb: ET.Element) -> bool:
        """Say, Play or Pause; False when the party hung up during it."""
        self._answer(leg)
        loops = int(verb.get("loop", "1") or 1) or 20  # loop="0": "forever" (capped)
        if verb.tag == "Say":
            text = (verb.text or "").strip()
            seconds = speech_seconds(text) * loops
            self._verb(leg, "Say", text=text, voice=verb.get("voice"), seconds=seconds)
        elif verb.tag == "Play":
            digits = verb.get("digits")
            seconds = 0.5 * len(digits) if digits else self.play_seconds * loops
            self._verb(leg, "Play", url=(verb.text or "").strip(), digits=digits, seconds=seconds)
        else:
            seconds = float(verb.get("length", "1"))
            self._verb(leg, "Pause", seconds=seconds)
        return self._advance(leg, seconds)

    def _advance(self, leg: Leg, seconds: float) -> bool:
        """Move the leg's clock on; False (clock at the hang-up) if the party hung up."""
        until = leg.clock + seconds
        if leg.party.hangup_at is not None and leg.party.hangup_at < until:
            leg.clock = max(leg.clock, leg.party.hangup_at)
            self._note(leg, "hung-up", by="caller" if leg.role == "caller" else "callee")
            return False
        leg.clock = until
        return True

    def _gather(self, leg: Leg, verb: ET.Element, doc_url: str):
        """Prompts, then keys; returns a jump to the action, None to fall through, or
        "hung-up"."""
        self._answer(leg)
        inputs = verb.get("input", "dtmf").split()
        timeout = float(verb.get("timeout", "5"))
        num = verb.get("numDigits")
        finish = verb.get("finishOnKey", "#")
        action = urljoin(doc_url, verb.get("action") or doc_url)
        self._verb(leg, "Gather", numDigits=num, timeout=timeout, finishOnKey=finish,
                   action=action)
        for child in verb:
            if child.tag not in PROMPT_VERBS:
                raise TwimlError(f"12200: <{child.tag}> cannot be nested in <Gather>")
            if not self._prompt(leg, child):
                return "hung-up"
        keys = leg.party.next_keys() if "dtmf" in inputs else None
        got = gather(keys, first_timeout=timeout, digit_timeout=timeout,
                     max_digits=int(num) if num else None, finish_on=finish)
        if not self._advance(leg, got.seconds):
            return "hung-up"
        leg.party.pressed.append(got.digits)
        self._note(leg, "keys", digits=got.digits, how=got.how)
        if not got.digits and verb.get("actionOnEmptyResult", "false") != "true":
            return None  # no input: on to the next verb
        return action, verb.get("method", "POST").upper(), {
            "Digits": got.digits, "FinishedOnKey": got.finished_on}

    # -- Dial ------------------------------------------------------------------------------

    def _dial(self, leg: Leg, verb: ET.Element, doc_url: str):
        call = self._call
        timeout = float(verb.get("timeout", "30"))
        answer_on_bridge = verb.get("answerOnBridge", "false") == "true"
        if not answer_on_bridge:
            self._answer(leg)
        caller_id = verb.get("callerId") or leg.params["From"]
        record = verb.get("record", "do-not-record")
        nouns = [child for child in verb if child.tag in ("Number", "Sip")]
        if not nouns and (verb.text or "").strip():
            nouns = [ET.Element("Number")]
            nouns[0].text = verb.text.strip()
        if not nouns or len(nouns) > 10:
            raise TwimlError("13212: <Dial> needs one to ten <Number>/<Sip> nouns")
        start = leg.clock
        offers = []
        for noun in nouns:
            target = (noun.text or "").strip()
            line = self._lines.get(target, self.default_line)
            sid = new_sid("CA")
            child = Leg(sid, "callee", Party(line), {
                "AccountSid": ACCOUNT_SID, "ApiVersion": "2010-04-01", "CallSid": sid,
                "ParentCallSid": call.sid, "Called": target, "Caller": caller_id,
                "Direction": "outbound-dial", "From": caller_id, "To": target})
            whisper = urljoin(doc_url, noun.get("url")) if noun.get("url") else None
            offers.append(Offer(target, line, child, whisper, noun, started_at=leg.clock))
        call.offers.append(offers)
        self._verb(leg, "Dial", numbers=[o.target for o in offers], timeout=timeout,
                   callerId=caller_id, record=record, answerOnBridge=answer_on_bridge)

        caller_gone = leg.party.hangup_at
        for offer in offers:
            self._child_status(offer, "initiated", start)
            if offer.line.outcome == "failed":
                self._finish(offer, "failed", start + 0.5)
            elif offer.line.outcome == "busy":
                self._finish(offer, "busy", start + 1.0)
            else:
                self._child_status(offer, "ringing", start + 0.5)

        # Answering legs run their whispers side by side, in virtual time: each leg's next
        # request is sent when its moment comes, the earliest first. The first whisper to
        # end without hanging up is bridged; legs still ringing or whispering then are hung
        # up, and their later requests never sent. A leg whose whisper hangs up does not
        # stop the others ringing (simulator's choice: Twilio's documentation is silent).
        bridge_at, winner = math.inf, None
        gone = caller_gone if caller_gone is not None else math.inf
        answers = sorted(((start + o.line.answer_after, index, o)
                          for index, o in enumerate(offers)
                          if o.line.outcome == "answer" and o.line.answer_after < timeout),
                         key=lambda a: a[:2])
        whispering: dict[int, tuple[float, Offer, object]] = {}
        while winner is None:
            next_answer = answers[0][0] if answers else math.inf
            next_step = min((t for t, _, _ in whispering.values()), default=math.inf)
            moment = min(next_answer, next_step)
            if moment == math.inf or moment >= gone:
                break
            if next_answer <= next_step:
                answer_at, index, offer = answers.pop(0)
                offer.answered_at = offer.leg.clock = answer_at
                if offer.line.talk is not None:
                    offer.leg.party.hangup_at = answer_at + offer.line.talk
                self._child_status(offer, "answered", answer_at)
                steps = self._whisper(offer)
                whispering[index] = (answer_at, offer, steps)
                continue
            index = min(whispering, key=lambda i: (whispering[i][0], i))
            _, offer, steps = whispering[index]
            try:
                whispering[index] = (steps.send(None), offer, steps)
                continue
            except StopIteration as stop:
                ended = stop.value
            except TwimlError as exc:
                call.errors.append(str(exc))
                self._note(offer.leg, "error", message=str(exc))
                ended = "error"
            del whispering[index]
            done = offer.leg.clock
            if done > gone:
                break  # the caller left before this whisper ended
            if ended == "end":
                winner, bridge_at = offer, done
            else:
                offer.outcome = "declined"
                self._finish(offer, "completed", done, declined=True)

        # Everyone else: no answer by the timeout, or hung up when the call was taken or
        # the caller left.
        stop = min(bridge_at, caller_gone if caller_gone is not None else math.inf)
        for offer in offers:
            if offer.outcome or offer is winner:
                continue
            if offer.answered_at is None and start + timeout <= stop:
                self._finish(offer, "no-answer", start + timeout)
            else:
                self._finish(offer, "canceled", stop)

        talk_from = talk_until = None
        if winner is not None:
            winner.outcome, winner.bridged_at = "completed", bridge_at
            talk_from = bridge_at
            ends = [bridge_at + float(verb.get("timeLimit", "14400"))]
            if leg.party.hangup_at is not None:
                ends.append(leg.party.hangup_at)
            elif call.caller.talk is not None:
                leg.party.hangup_at = bridge_at + call.caller.talk
                ends.append(leg.party.hangup_at)
            if winner.leg.party.hangup_at is not None:
                ends.append(winner.leg.party.hangup_at)
            talk_until = min(ends)
            if answer_on_bridge:
                leg.clock = bridge_at
                self._answer(leg)
            self._note(leg, "bridged", callee=winner.leg.sid, target=winner.target)
            if self.on_bridge is not None:
                self.on_bridge(call, winner)  # while connected: real time stands still here
            self._finish(winner, "completed", talk_until)
            leg.clock = talk_until
        else:
            ended = [o.ended_at for o in offers if o.ended_at is not None]
            leg.clock = min(max(ended, default=start), stop)
        self._flush(leg.clock)

        if winner is not None:
            status, dialled = "completed", winner
        elif caller_gone is not None and caller_gone <= leg.clock:
            status, dialled = "canceled", offers[-1]
        elif any(o.answered_at is not None or o.outcome == "no-answer" for o in offers):
            status, dialled = "no-answer", offers[-1]  # simulator's choice for a declined whisper
        elif any(o.outcome == "busy" for o in offers):
            status, dialled = "busy", offers[-1]
        else:
            status, dialled = "failed", offers[-1]
        dial_duration = whole(talk_until - winner.answered_at) if winner else 0
        extra = {"DialCallStatus": status, "DialCallSid": dialled.leg.sid,
                 "DialCallDuration": str(dial_duration),
                 "DialBridged": "true" if winner else "false"}
        recording = None
        if winner is not None and record != "do-not-record":
            since = start if "ringing" in record else talk_from
            recording = {"RecordingSid": new_sid("RE"),
                         "RecordingDuration": str(whole(talk_until - since)),
                         "RecordingChannels": "2" if record.endswith("dual") else "1"}
            recording["RecordingUrl"] = (f"https://api.twilio.com/2010-04-01/Accounts/"
                                         f"{ACCOUNT_SID}/Recordings/{recording['RecordingSid']}")
            call.recordings.append(recording)
            extra |= {k: recording[k] for k in ("RecordingSid", "RecordingUrl",
                                                 "RecordingDuration")}
        caller_left = leg.hung_up_by(leg.clock)
        self._note(leg, "dial-ended", status=status, duration=dial_duration)
        jump = None
        action = verb.get("action")
        if action:
            jump = (urljoin(doc_url, action), verb.get("method", "POST").upper(), extra)
        if recording is not None and verb.get("recordingStatusCallback"):
            events = verb.get("recordingStatusCallbackEvent", "completed").split()
            if "completed" in events:
                self._callback(urljoin(doc_url, verb.get("recordingStatusCallback")), {
                    "AccountSid": ACCOUNT_SID, "CallSid": call.sid, "RecordingStatus": "completed",
                    "RecordingSource": "DialVerb", "RecordingStartTime": self._stamp(talk_from),
                    "ErrorCode": "0", **recording}, hold=jump is not None)
        if caller_left:
            call.status = "completed" if call.answered_at is not None else "canceled"
            if jump:
                # Twilio still requests the action, and ignores the answer.
                self._fetch(leg, jump[0], jump[1], jump[2] | {"CallStatus": call.status})
            self._release_held()
            return "hung-up"
        return jump

    def _finish(self, offer: Offer, status: str, at: float, declined: bool = False) -> None:
        if not declined:
            offer.outcome = offer.outcome or status
        offer.ended_at = at
        extra = {}
        if offer.answered_at is not None and status in ("completed", "canceled"):
            status = "completed"  # an answered leg ends completed, whoever hung up
            extra["CallDuration"] = str(whole(at - offer.answered_at))
        elif status == "completed":
            extra["CallDuration"] = "0"
        self._child_status(offer, "completed", at, status=status, extra=extra)

    def _child_status(self, offer: Offer, event: str, at: float, *, status: str | None = None,
                      extra: dict | None = None) -> None:
        noun = offer.noun
        url = noun.get("statusCallback")
        events = (noun.get("statusCallbackEvent") or "completed").replace(",", " ").split()
        self._note(offer.leg, "status", event=event, status=status or event, at=at)
        if not url or event not in events:
            return
        status = status or {"answered": "in-progress"}.get(event, event)
        params = offer.leg.params | {
            "CallStatus": status, "SequenceNumber": str(next(offer.leg.sequence)),
            "CallbackSource": "call-progress-events", "Timestamp": self._stamp(at)} | (extra or {})
        heapq.heappush(self._held, (at, next(self._order), urljoin(self.voice_url, url), params))

    # -- requests --------------------------------------------------------------------------

    def _fetch(self, leg: Leg, url: str, method: str, extra: dict) -> ET.Element:
        """Request TwiML for ``leg``; raises TwimlError when Twilio would give up."""
        self._flush(leg.clock)
        self._pace(leg.clock)
        status = "in-progress" if (leg.role == "callee" or self._call.answered_at is not None) \
            else "ringing"
        params = leg.params | {"CallStatus": status} | extra
        response = self._send(url, method, params, leg)
        if self.repeat_twiml:
            again = self._send(url, method, params, leg)
            if again.text != response.text:
                self._call.differing_answers.append(url)
            response = again
        if self._release_due:
            self._release_held()
        if response.status_code >= 400:
            raise TwimlError(f"11200: {method} {url} answered {response.status_code}")
        kind = response.headers.get("Content-Type", "").split(";")[0].strip()
        if kind not in ("text/xml", "application/xml"):
            raise TwimlError(f"12300: {url} answered Content-Type {kind!r}")
        try:
            root = ET.fromstring(response.content)
        except ET.ParseError as exc:
            raise TwimlError(f"12100: {url} answered no XML: {exc}") from None
        if root.tag != "Response":
            raise TwimlError(f"12100: {url} answered <{root.tag}>, not <Response>")
        return root

    def _send(self, url: str, method: str, params: dict, leg: Leg | None) -> requests.Response:
        if self.before_request is not None:
            self.before_request(url)
        headers = {"User-Agent": "TwilioProxy/1.1",
                   "I-Twilio-Idempotency-Token": str(uuid.uuid4())}
        if method == "GET":
            full = url + ("&" if "?" in url else "?") + urlencode(params)
            headers[self.signature_header] = self.validator.compute_signature(full, {})
            sent_to = self._route(full)
            response = self.http.get(sent_to, headers=headers, timeout=30)
        else:
            headers[self.signature_header] = self.validator.compute_signature(url, params)
            sent_to = self._route(url)
            response = self.http.post(sent_to, data=params, headers=headers, timeout=30)
        self._call.transcript.append({
            "kind": "request", "leg": self._leg_name(leg), "method": method, "url": url,
            "sent_to": sent_to,
            "params": dict(params), "status": response.status_code, "body": response.text,
            "at": leg.clock if leg else None})
        return response

    def _route(self, url: str) -> str:
        """The backend a request to the public ``url`` lands on."""
        if self.backends is None or not url.startswith(self.base_url + "/"):
            return url
        return next(self.backends).rstrip("/") + url[len(self.base_url):]

    def _callback(self, url: str, params: dict, hold: bool = False) -> None:
        """A status or recording callback: posted now (or after the pending action)."""
        if hold:
            self._late.append((url, params))
            self._release_due = True
            return
        self._post_callback(url, params)

    def _release_held(self) -> None:
        self._release_due = False
        late, self._late = self._late, []
        for url, params in late:
            self._post_callback(url, params)

    def _post_callback(self, url: str, params: dict) -> None:
        if self.shuffle is not None and not self.shuffle_now:
            self._shuffled.append((url, params))
            if self.redeliver:
                self._shuffled.append((url, params))
            return
        for _ in range(2 if self.redeliver else 1):
            response = self._send(url, "POST", params, None)
            if response.status_code >= 400:
                self._call.errors.append(f"11200: callback {url} answered {response.status_code}")

    def _status(self, leg: Leg, status: str) -> None:
        self._callback(self.status_url, leg.params | {
            "CallStatus": status, "SequenceNumber": str(next(leg.sequence)),
            "CallbackSource": "call-progress-events", "Timestamp": self._stamp(leg.clock)})

    def _flush(self, until: float) -> None:
        """Post the callbacks due by virtual time ``until``, in time order."""
        while self._held and self._held[0][0] <= until:
            at, _, url, params = heapq.heappop(self._held)
            self._pace(at)
            self._post_callback(url, params)

    def _pace(self, at: float) -> None:
        """In real time, wait for virtual moment ``at``."""
        if self.real_time:
            time.sleep(max(0.0, self._real0 + at * self.real_time - time.monotonic()))

    # -- transcript ------------------------------------------------------------------------

    def _leg_name(self, leg: Leg | None) -> str | None:
        if leg is None:
            return None
        return "caller" if leg.role == "caller" else leg.sid

    def _verb(self, leg: Leg, verb: str, **details) -> None:
        self._call.transcript.append({"kind": "verb", "leg": self._leg_name(leg), "verb": verb,
                                      "at": leg.clock, **details})

    def _note(self, leg: Leg, what: str, **details) -> None:
        self._call.transcript.append({"kind": what, "leg": self._leg_name(leg),
                                      "at": leg.clock, **details})

    def _stamp(self, at: float) -> str:
        return email.utils.format_datetime(self._start + dt.timedelta(seconds=at), usegmt=True)
