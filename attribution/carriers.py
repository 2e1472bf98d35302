"""Carrier webhooks in, carrier-neutral call events out; signature checks for each carrier.

Formats: Twilio and SignalWire form posts, Telnyx Call Control JSON. Parsing is
defensive: carriers add parameters over time, and a missing or odd field never loses the
call. Each field goes through a reader that never raises: a value of the wrong type, out
of range or too long for its column is dropped to None (the raw event keeps it), so the
call is still stored with what could be read.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import email.utils
import hashlib
import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from urllib.parse import quote

import requests
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from twilio.request_validator import RequestValidator

from attribution.calls import CallEventIn
from attribution.zones import in_range, parse_datetime

log = logging.getLogger(__name__)
TELNYX_TOLERANCE_SECONDS = 300
MAX_COUNT = 2**31 - 1  # what the sequence and duration columns hold
# What a transfer asks for when the number records: both sides from the answer, each on
# its own channel (the caller's first), as WAV, the format the insight worker reads.
TELNYX_RECORDING = {"record": "record-from-answer", "record_channels": "dual",
                    "record_format": "wav"}
TELNYX_HANGUP_STATUS = {"normal_clearing": "completed", "originator_cancel": "canceled",
                        "user_busy": "busy", "no_answer": "no-answer", "timeout": "no-answer",
                        "call_rejected": "failed", "not_found": "failed",
                        "time_limit": "completed", "unspecified": "completed"}


class SignatureError(ValueError):
    """The webhook is not signed by the carrier we trust."""


# -- Twilio and SignalWire ----------------------------------------------------------------


def check_twilio_signature(auth_token: str, url: str, params, signature: str) -> None:
    """Raise SignatureError unless ``signature`` is Twilio's over ``url`` and ``params``.

    The twilio library also accepts the URL with and without the default port, since
    Twilio signs either.
    """
    if not signature:
        raise SignatureError("X-Twilio-Signature does not match")
    validator = RequestValidator(auth_token)
    if validator.validate(url, params, signature):
        return
    # Twilio is reported to add the caller-identity fields to voice webhooks after signing
    # them (a public webhook handler drops them before checking, as every failure in its
    # logs carried them). So a request that fails with them is checked once without: every
    # other field is still covered, and those two are only ever read as information.
    if hasattr(params, "keys") and any(name in params for name in UNSIGNED_TWILIO_FIELDS):
        if validator.validate(url, _Without(params, UNSIGNED_TWILIO_FIELDS), signature):
            return
    raise SignatureError("X-Twilio-Signature does not match")


UNSIGNED_TWILIO_FIELDS = ("StirVerstat", "CallToken")


class _Without:
    """Form fields without some names, repeated values kept (read as the validator reads a
    multi-valued form: ``getall``)."""

    def __init__(self, params, names):
        self.params, self.names = params, set(names)

    def __iter__(self):
        return (key for key in self.params if key not in self.names)

    def getall(self, name):
        for reader in ("getall", "getlist"):
            if hasattr(self.params, reader):
                return getattr(self.params, reader)(name)
        return [self.params[name]]


# -- field readers: each returns None for anything it cannot use, and never raises ----------


def _int(value) -> int | None:
    """A count (sequence, duration) its column can hold: ASCII digits or a JSON number."""
    if isinstance(value, str):
        value = value.strip()
        if not (value.isascii() and value.isdigit() and len(value) <= 10):
            return None
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if 0 <= value <= MAX_COUNT else None


def _text(value, limit: int = 255) -> str | None:
    """A string field (a JSON number is taken as its digits), without NULs, cut to ``limit``."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        return None
    return value.replace("\x00", "")[:limit] or None


def _country(value) -> str | None:
    text = _text(value, 8)
    return text.upper() if text and len(text) == 2 and text.isascii() and text.isalpha() else None


def _evidence(value):
    """The raw event as JSON SQL can store: NULs removed from every string and key."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {str(k).replace("\x00", ""): _evidence(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_evidence(v) for v in value]
    return value


def _rfc2822(value) -> dt.datetime | None:
    text = _text(value, 64)
    if not text:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, OverflowError, IndexError):
        return None
    parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
    return parsed if in_range(parsed) else None


def twilio_event(params, kind: str, now: dt.datetime) -> CallEventIn | None:
    """A Twilio voice, status, dial-action or recording callback as a call event.

    The call is keyed on the caller's CallSid; events of the forwarded leg (which carry
    ``ParentCallSid``) and the ``<Dial>`` action describe the forward.
    """
    def field(name: str, limit: int = 255) -> str | None:
        return _text(params.get(name), limit)

    sid = field("ParentCallSid", 128) or field("CallSid", 128)
    if not sid:
        return None
    leg = "forward" if field("ParentCallSid") or kind == "dial" else "call"
    occurred = _rfc2822(params.get("Timestamp")) or now
    if kind == "dial":
        status = {"answered": "completed"}.get(field("DialCallStatus"), field("DialCallStatus"))
        duration = _int(params.get("DialCallDuration"))
        key = f"dial:{field('DialCallSid') or sid}:{status}"
    elif kind == "recording":
        status, duration = None, None
        key = f"recording:{field('RecordingSid') or field('RecordingUrl', 2048)}"
    else:
        status = field("CallStatus")
        duration = _int(params.get("CallDuration")) if status == "completed" else None
        key = f"{kind}:{field('CallSid')}:{field('SequenceNumber') or ''}:{status}"
    return CallEventIn(
        provider="twilio", provider_call_id=sid, event_key=key[:200], kind=kind,
        occurred_at=occurred, from_raw=field("From", 64), to_raw=field("To", 64),
        status=status, sequence=_int(params.get("SequenceNumber")), duration=duration,
        ended_at=occurred if status in ("completed", "busy", "no-answer", "failed", "canceled")
        else None,
        recording_url=field("RecordingUrl", 2048), leg=leg,
        caller_country=_country(params.get("FromCountry")),
        caller_region=field("FromState", 64), caller_city=field("FromCity", 128),
        payload=_evidence({k: params.getlist(k) if hasattr(params, "getlist")
                           and len(params.getlist(k)) > 1 else params.get(k) for k in params}),
    )


# -- Telnyx ------------------------------------------------------------------------------


def check_telnyx_signature(public_key_b64: str, raw_body: bytes, signature_b64: str | None,
                           timestamp: str | None, now: float | None = None) -> None:
    """Raise SignatureError unless the Ed25519 signature over ``timestamp|body`` is valid."""
    if not signature_b64 or not timestamp:
        raise SignatureError("telnyx-signature-ed25519 and telnyx-timestamp are required")
    # Unix seconds: a handful of ASCII digits. Checked before int(): a 4,000-digit header
    # would otherwise overflow the float arithmetic below.
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
        raise SignatureError("telnyx-timestamp is not a number")
    sent = int(timestamp)
    if abs((time.time() if now is None else now) - sent) > TELNYX_TOLERANCE_SECONDS:
        raise SignatureError("telnyx-timestamp is too far from now (replayed or clock skew)")
    try:
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key_b64))
        key.verify(base64.b64decode(signature_b64), timestamp.encode() + b"|" + raw_body)
    except (InvalidSignature, ValueError, binascii.Error):
        raise SignatureError("telnyx-signature-ed25519 does not match") from None


def telnyx_event(body: dict, now: dt.datetime) -> CallEventIn | None:
    """A Telnyx Call Control event (call.initiated / answered / hangup / recording.saved)
    as a call event."""
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, dict) or not isinstance(data.get("payload"), dict):
        return None
    payload, kind = data["payload"], _text(data.get("event_type"), 32) or ""
    sid = _text(payload.get("call_session_id"), 128) or _text(payload.get("call_control_id"), 128)
    if not sid or not kind.startswith("call."):
        return None
    occurred = parse_datetime(data.get("occurred_at")) or now
    status = {"call.initiated": "ringing", "call.answered": "in-progress"}.get(kind)
    # The leg Telnyx dials when we transfer the call is "outgoing": it is the forward.
    leg = "forward" if payload.get("direction") == "outgoing" else "call"
    if kind == "call.hangup":
        status = TELNYX_HANGUP_STATUS.get(_text(payload.get("hangup_cause")), "completed")
    return CallEventIn(
        provider="telnyx", provider_call_id=sid, event_key=f"event:{telnyx_event_id(data)}"[:200],
        kind=kind, occurred_at=occurred, from_raw=_text(payload.get("from"), 64),
        to_raw=_text(payload.get("to"), 64),
        status=status, answered_at=occurred if kind == "call.answered" else None,
        ended_at=occurred if kind == "call.hangup" else None, leg=leg,
        recording_url=telnyx_recording_url(payload) if kind == "call.recording.saved" else None,
        payload=_evidence(body),
    )


def telnyx_recording_url(payload: dict) -> str | None:
    """The link to a saved recording: WAV before MP3, and the public link before the
    pre-signed one, which Telnyx lets expire ten minutes after the event."""
    for extension in ("wav", "mp3"):
        for name in ("public_recording_urls", "recording_urls"):
            urls = payload.get(name)
            url = _text(urls.get(extension), 2048) if isinstance(urls, dict) else None
            if url and url.startswith(("https://", "http://")):
                return url
    return None


def telnyx_event_id(data: dict) -> str:
    """Telnyx's id for the event (its repeats carry the same), else a hash of its payload."""
    return _text(data.get("id"), 190) or hashlib.sha256(
        repr(sorted(data["payload"].items())).encode()).hexdigest()


def telnyx_transfer(api_url: str, api_key: str, call_control_id: str, to: str, caller_id: str,
                    command_id: str, record: bool = False) -> str:
    """Ask Telnyx to connect the call to ``to``, recording it when ``record``;
    ``command_id`` makes a repeat harmless.

    Returns "ok", "retry" (no answer, or Telnyx busy: the same command may be sent again)
    or "refused" (Telnyx answered no; sending it again would not help).
    """
    # One encoded path segment (":" is left as is: Telnyx's ids are "v3:..."), and never a
    # dot segment: a signed event cannot steer the API key to another path
    # ("../../internal/admin?x=").
    segment = quote(call_control_id, safe=":")
    if segment in (".", ".."):
        log.error("Telnyx transfer refused: call_control_id %r is not an id", call_control_id)
        return "refused"
    try:
        response = requests.post(
            f"{api_url}/calls/{segment}/actions/transfer", timeout=3,
            headers={"Authorization": f"Bearer {api_key}"},
            json={"to": to, "from": caller_id, "command_id": command_id,
                  **(TELNYX_RECORDING if record else {})})
    except requests.RequestException as exc:
        log.warning("Telnyx transfer of %s got no answer: %s", call_control_id, exc)
        return "retry"
    if response.status_code == 429 or response.status_code >= 500:
        log.warning("Telnyx transfer of %s: %s, trying again", call_control_id,
                    response.status_code)
        return "retry"
    if response.status_code >= 300:
        log.error("Telnyx refused the transfer of %s: %s %s", call_control_id,
                  response.status_code, response.text[:300])
        return "refused"
    return "ok"


class CommandSender:
    """Sends carrier call commands off the webhook's request path, retrying with back-off.

    A carrier API that answers slowly must not hold a web worker (the snippet API shares
    them). A command that got no answer is sent again with its same command id, which the
    carrier uses to ignore repeats, so the call is connected exactly once.

    At most ``max_queue`` commands wait or are being sent (DNI_CARRIER_QUEUE). Past that
    the carrier API is not keeping up at all, and a new command is refused (counted and
    logged) rather than queued behind work that would make it late anyway: the carrier's
    own timeout and fallback then apply to that call. Commands already queued are kept,
    since each is a caller waiting to be connected.
    """

    def __init__(self, threads: int = 4, delays: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0),
                 max_queue: int = 200, on_drop=None):
        self.threads = threads
        self.delays = delays
        self.max_queue = max_queue
        self.on_drop = on_drop  # called once per refused command (a metrics counter)
        self.dropped = 0
        self._pending = 0
        self._executor = None
        self._lock = threading.Lock()

    def submit(self, command, *args, **kwargs) -> Future | None:
        """Queue ``command``; None when the queue is full and it was dropped."""
        with self._lock:  # made on first use: after gunicorn forks, never before
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self.threads,
                                                    thread_name_prefix="dni-commands")
            full = self._pending >= self.max_queue
            if full:
                self.dropped += 1
            else:
                self._pending += 1
        if full:
            log.error("carrier command queue full (%d waiting): %s dropped", self.max_queue,
                      command.__name__)
            if self.on_drop is not None:
                self.on_drop()
            return None
        future = self._executor.submit(self._run, command, args, kwargs)
        future.add_done_callback(self._finished)
        return future

    @property
    def pending(self) -> int:
        """Commands waiting or being sent."""
        return self._pending

    def _finished(self, _future) -> None:
        with self._lock:
            self._pending -= 1

    def _run(self, command, args, kwargs) -> str:
        result = command(*args, **kwargs)
        for delay in self.delays:
            if result != "retry":
                break
            time.sleep(delay)
            result = command(*args, **kwargs)
        if result == "retry":
            log.error("carrier command %s gave up after %d tries", command.__name__,
                      len(self.delays) + 1)
        return result
