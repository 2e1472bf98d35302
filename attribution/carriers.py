"""Carrier webhooks in, carrier-neutral call events out; signature checks for each carrier.

Formats: ../shared/docs/integrations.md section 1 (Twilio and SignalWire form posts,
Telnyx Call Control JSON). Parsing is defensive: carriers add parameters over time, and
a missing or odd field never loses the call.
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
from concurrent.futures import ThreadPoolExecutor

import requests
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from twilio.request_validator import RequestValidator

from attribution.calls import CallEventIn

log = logging.getLogger(__name__)
TELNYX_TOLERANCE_SECONDS = 300
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
    if not signature or not RequestValidator(auth_token).validate(url, params, signature):
        raise SignatureError("X-Twilio-Signature does not match")


def _int(value) -> int | None:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


def _rfc2822(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def twilio_event(params, kind: str, now: dt.datetime) -> CallEventIn | None:
    """A Twilio voice, status, dial-action or recording callback as a call event.

    The call is keyed on the caller's CallSid; events of the forwarded leg (which carry
    ``ParentCallSid``) and the ``<Dial>`` action describe the forward.
    """
    sid = params.get("ParentCallSid") or params.get("CallSid")
    if not sid:
        return None
    leg = "forward" if params.get("ParentCallSid") or kind == "dial" else "call"
    occurred = _rfc2822(params.get("Timestamp")) or now
    if kind == "dial":
        status = {"answered": "completed"}.get(params.get("DialCallStatus"),
                                                params.get("DialCallStatus"))
        duration = _int(params.get("DialCallDuration"))
        key = f"dial:{params.get('DialCallSid') or sid}:{status}"
    elif kind == "recording":
        status, duration = None, None
        key = f"recording:{params.get('RecordingSid') or params.get('RecordingUrl')}"
    else:
        status = params.get("CallStatus")
        duration = _int(params.get("CallDuration")) if status == "completed" else None
        key = f"{kind}:{params.get('CallSid')}:{params.get('SequenceNumber', '')}:{status}"
    return CallEventIn(
        provider="twilio", provider_call_id=sid, event_key=key[:200], kind=kind,
        occurred_at=occurred, from_raw=params.get("From"), to_raw=params.get("To"),
        status=status, sequence=_int(params.get("SequenceNumber")), duration=duration,
        ended_at=occurred if status in ("completed", "busy", "no-answer", "failed", "canceled")
        else None,
        recording_url=params.get("RecordingUrl"), leg=leg,
        caller_country=params.get("FromCountry"), caller_region=params.get("FromState"),
        caller_city=params.get("FromCity"),
        payload={k: params.getlist(k) if hasattr(params, "getlist") and len(params.getlist(k)) > 1
                 else params.get(k) for k in params},
    )


# -- Telnyx ------------------------------------------------------------------------------


def check_telnyx_signature(public_key_b64: str, raw_body: bytes, signature_b64: str | None,
                           timestamp: str | None, now: float | None = None) -> None:
    """Raise SignatureError unless the Ed25519 signature over ``timestamp|body`` is valid."""
    if not signature_b64 or not timestamp:
        raise SignatureError("telnyx-signature-ed25519 and telnyx-timestamp are required")
    try:
        sent = int(timestamp)
    except ValueError:
        raise SignatureError("telnyx-timestamp is not a number") from None
    if abs((time.time() if now is None else now) - sent) > TELNYX_TOLERANCE_SECONDS:
        raise SignatureError("telnyx-timestamp is too far from now (replayed or clock skew)")
    try:
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key_b64))
        key.verify(base64.b64decode(signature_b64), timestamp.encode() + b"|" + raw_body)
    except (InvalidSignature, ValueError, binascii.Error):
        raise SignatureError("telnyx-signature-ed25519 does not match") from None


def _iso(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def telnyx_event(body: dict, now: dt.datetime) -> CallEventIn | None:
    """A Telnyx Call Control event (call.initiated / answered / hangup) as a call event."""
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, dict) or not isinstance(data.get("payload"), dict):
        return None
    payload, kind = data["payload"], str(data.get("event_type", ""))
    sid = payload.get("call_session_id") or payload.get("call_control_id")
    if not sid or not kind.startswith("call."):
        return None
    occurred = _iso(data.get("occurred_at")) or now
    status = {"call.initiated": "ringing", "call.answered": "in-progress"}.get(kind)
    # The leg Telnyx dials when we transfer the call is "outgoing": it is the forward.
    leg = "forward" if payload.get("direction") == "outgoing" else "call"
    if kind == "call.hangup":
        status = TELNYX_HANGUP_STATUS.get(payload.get("hangup_cause"), "completed")
    event_id = data.get("id") or hashlib.sha256(repr(sorted(payload.items())).encode()).hexdigest()
    return CallEventIn(
        provider="telnyx", provider_call_id=str(sid)[:128], event_key=f"event:{event_id}"[:200],
        kind=kind, occurred_at=occurred, from_raw=payload.get("from"), to_raw=payload.get("to"),
        status=status, answered_at=occurred if kind == "call.answered" else None,
        ended_at=occurred if kind == "call.hangup" else None, leg=leg, payload=body,
    )


def telnyx_transfer(api_url: str, api_key: str, call_control_id: str, to: str, caller_id: str,
                    command_id: str) -> str:
    """Ask Telnyx to connect the call to ``to``; ``command_id`` makes a repeat harmless.

    Returns "ok", "retry" (no answer, or Telnyx busy: the same command may be sent again)
    or "refused" (Telnyx answered no; sending it again would not help).
    """
    try:
        response = requests.post(
            f"{api_url}/calls/{call_control_id}/actions/transfer", timeout=3,
            headers={"Authorization": f"Bearer {api_key}"},
            json={"to": to, "from": caller_id, "command_id": command_id})
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
    """

    def __init__(self, threads: int = 4, delays: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)):
        self.threads = threads
        self.delays = delays
        self._executor = None
        self._lock = threading.Lock()

    def submit(self, command, *args, **kwargs):
        with self._lock:  # made on first use: after gunicorn forks, never before
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self.threads,
                                                    thread_name_prefix="dni-commands")
        return self._executor.submit(self._run, command, args, kwargs)

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
