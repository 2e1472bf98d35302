"""Google Ads through the Data Manager API: ``POST /v1/events:ingest`` (docs/conversions.md).

One request carries at most 2,000 events for one destination (a conversion action, the
``productDestinationId``, owned by ``operatingAccount``). Each event has a ``transactionId``
(our key: Google's dedupe key), an RFC 3339 ``eventTimestamp``, ``eventSource`` ``PHONE`` and
exactly one click id, preferring gclid, then gbraid, then wbraid. The caller's phone, hashed
as Google wants (E.164 with ``+``), goes in ``userData`` only next to a gclid or alone: the
Google Ads API rejects user identifiers next to gbraid/wbraid and Data Manager's behaviour is
unconfirmed, so we never combine them.

Unconfirmed, checked with the search tool (developers.google.com events:ingest reference):
the request shape and the 2,000 limit are confirmed; whether ``PHONE`` is treated like
``WEB`` is not (check with ``validate_only``). Retractions through ``events:ingest`` have
unconfirmed mechanics, so ``supports_retraction`` is False and retractions are skipped.

The batch is all-or-nothing: one invalid event fails it, so ``http.deliver`` isolates the bad
event(s) by bisecting, helped by the event indexes named in ``fieldViolations``.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping

from attribution.conversions import hashing
from attribution.conversions.base import Conversion, Outcome, PreparedRequest, TimeWindow
from attribution.conversions.destination import (
    Destination,
    OAuthToken,
    Reason,
    Skip,
    every,
    json_body,
    number,
    retry_after,
    rfc3339,
    short,
    transient,
)

EVENT_SOURCES = ("WEB", "APP", "IN_STORE", "PHONE", "OTHER")
CONSENT = {"granted": "CONSENT_GRANTED", "denied": "CONSENT_DENIED"}
EVENT_INDEX = re.compile(r"^events\[(\d+)\]")
WINDOW = TimeWindow(None, future="google: conversion time is in the future")


def click_id(conv: Conversion) -> tuple[str, str] | None:
    """The one click id to send: gclid, else gbraid, else wbraid."""
    for name in ("gclid", "gbraid", "wbraid"):
        value = getattr(conv, name)
        if value:
            return name, value
    return None


def google_error(body: bytes) -> tuple[str, list[int], bool]:
    """(message, event indexes named by field violations, whether violations name non-events)."""
    data = json_body(body) or {}
    error = data.get("error") if isinstance(data.get("error"), dict) else {}
    message = str(error.get("message") or short(body) or "no error body")
    reasons, indexes, other = [], [], False
    for detail in error.get("details") or []:
        if not isinstance(detail, dict):
            continue
        if detail.get("reason"):
            reasons.append(str(detail["reason"]))
        for violation in detail.get("fieldViolations") or []:
            field = str((violation or {}).get("field", ""))
            match = EVENT_INDEX.match(field)
            if match:
                indexes.append(int(match.group(1)))
            elif field:
                other = True
    status = error.get("status")
    prefix = " ".join(str(p) for p in (status, *reasons) if p)
    return (f"{prefix}: {message}" if prefix else message), sorted(set(indexes)), other


class GoogleDataManager(Destination):
    kind = "google"
    max_batch = 2000
    per_minute = 300  # the ingestion quota per Google Cloud project
    all_or_nothing = True

    def __init__(self, config: Mapping):
        super().__init__(config)
        c = self.config
        self.base_url = c.url("base_url", "https://datamanager.googleapis.com")
        self.operating_account = self._account(c.text("operating_account_id", required=True),
                                               "operating_account_id")
        login = c.text("login_account_id")
        self.login_account = self._account(login, "login_account_id") if login else None
        self.conversion_action = c.text("conversion_action_id", pattern=r"\d+")
        self.encoding = c.text("encoding", "HEX", choices=hashing.ENCODINGS)
        self.validate_only = c.boolean("validate_only", False)
        self.event_source = c.text("event_source", "PHONE", choices=EVENT_SOURCES)
        self.send_caller_phone = c.boolean("send_caller_phone", True)
        self.ad_personalization = CONSENT[c.text("ad_personalization", "denied", choices=CONSENT)]
        self.phone_region = c.text("phone_region", pattern=r"[A-Z]{2}")
        self.token = OAuthToken(self, c, "https://oauth2.googleapis.com/token")
        self.max_batch = min(c.integer("max_batch", 2000), 2000)

    def _account(self, value: str, key: str) -> str:
        digits = value.replace("-", "")
        if not re.fullmatch(r"\d{10}", digits):
            raise ValueError(f"google: invalid config key {key!r}: a 10-digit customer id")
        return digits

    # -- what we send -------------------------------------------------------------------
    def action_id(self, conv: Conversion) -> str | None:
        name = (conv.name or "").strip()
        return name if name.isdigit() else self.conversion_action

    def batch_key(self, conv: Conversion) -> str:
        return self.action_id(conv) or ""

    def phone_hash(self, conv: Conversion) -> str | None:
        if not (conv.consent and self.send_caller_phone and conv.caller_e164):
            return None
        try:
            return hashing.google_phone_hash(conv.caller_e164, self.phone_region, self.encoding)
        except ValueError:
            return None  # a withheld or junk caller id: nothing to hash

    def check(self, conv: Conversion, now: dt.datetime) -> Reason | None:
        if conv.kind != "conversion":
            return Skip(f"google: {conv.kind} is not sent (Data Manager adjustments are unconfirmed)")
        if not self.action_id(conv):
            return Reason("google: no conversion action id (rule name or config conversion_action_id)")
        if not conv.consent:
            return Skip("google: no consent: nothing that identifies the visitor or caller may be sent")
        if click_id(conv) is None and self.phone_hash(conv) is None:
            return Skip("google: no gclid, gbraid or wbraid and no usable caller number")
        if late := WINDOW.problem(conv, now):
            return Reason(late)
        return self._common_checks(conv)

    def event(self, conv: Conversion) -> dict:
        event = {"transactionId": conv.key, "eventTimestamp": rfc3339(conv.occurred_at),
                 "eventSource": self.event_source}
        click = click_id(conv)
        if click:
            event["adIdentifiers"] = {click[0]: click[1]}
        phone = self.phone_hash(conv)
        # user identifiers only beside a gclid or alone: never beside gbraid/wbraid
        if phone and (click is None or click[0] == "gclid"):
            event["userData"] = {"userIdentifiers": [{"phoneNumber": phone}]}
        if conv.value is not None:
            event["conversionValue"] = number(conv.value)
            event["currency"] = conv.currency
        return event

    def prepare(self, convs: list[Conversion], now: dt.datetime) -> PreparedRequest:
        if not convs or len(convs) > self.max_batch:
            raise ValueError(f"google: a request holds 1 to {self.max_batch} events")
        actions = {self.action_id(c) for c in convs}
        if len(actions) != 1 or None in actions:
            raise ValueError("google: one request per conversion action (use split())")
        destination = {"operatingAccount": {"accountType": "GOOGLE_ADS",
                                            "accountId": self.operating_account},
                       "productDestinationId": actions.pop()}
        if self.login_account:
            destination["loginAccount"] = {"accountType": "GOOGLE_ADS", "accountId": self.login_account}
        events = [self.event(c) for c in convs]
        body = {"destinations": [destination],
                "consent": {"adUserData": "CONSENT_GRANTED", "adPersonalization": self.ad_personalization},
                "events": events}
        if any("userData" in e for e in events):
            body["encoding"] = self.encoding
        if self.validate_only:
            body["validateOnly"] = True
        url = f"{self.base_url}/v1/events:ingest"
        headers = {"Content-Type": "application/json",
                   "Authorization": f"Bearer {self.token.current or ''}"}
        return PreparedRequest("POST", url, headers, json.dumps(body).encode(), self.redact(url))

    def authenticate(self, session, now: dt.datetime, timeout: float) -> None:
        self.token.ensure(session, now, timeout)

    def bisectable(self, status: int, body: bytes) -> bool:
        # an error about the destination or the request itself fails every half alike
        _, indexes, other = google_error(body)
        return status == 400 and not (other and not indexes)

    # -- what Google answers ------------------------------------------------------------
    def read(self, status: int, headers: Mapping[str, str], body: bytes,
             convs: list[Conversion]) -> list[Outcome]:
        if 200 <= status < 300:
            request_id = (json_body(body) or {}).get("requestId")
            if self.validate_only:
                return every(convs, "skipped", "google: validateOnly: valid, nothing ingested")
            return every(convs, "sent", f"google: accepted, requestId {request_id}",
                         extra={"request_id": request_id})
        message, indexes, _ = google_error(body)
        if transient(status):
            return every(convs, "retry", f"google: HTTP {status}: {message}",
                         retry_after=retry_after(headers))
        if indexes and status == 400:
            bad = {convs[i].key for i in indexes if i < len(convs)}
            return [Outcome(c.key, "failed", f"google: HTTP 400: {message}") if c.key in bad
                    else Outcome(c.key, "retry", "google: batch rejected for another event; resend",
                                 extra={"resend": True})
                    for c in convs]
        return every(convs, "failed", f"google: HTTP {status}: {message}")
