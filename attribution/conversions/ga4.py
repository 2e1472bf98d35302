"""GA4 Measurement Protocol: ``POST /mp/collect?measurement_id=...&api_secret=...`` (docs/conversions.md).

One request per visitor (``client_id``, the site tag's id from the ``_ga`` cookie), at most
25 events. The call is an event (default name ``phone_call_qualified``) with ``session_id``
when known, ``engagement_time_msec`` (so it joins the session), ``value``, ``currency``,
``call_id`` and ``transaction_id`` (our key), backdated with the event's ``timestamp_micros``.

``/mp/collect`` answers 2xx even for events it drops, so in ``validate`` mode the request
goes to ``/debug/mp/collect`` (same body), whose ``validationMessages`` become failed
outcomes; debug events are never recorded, so valid ones come back ``skipped``.

Events more than 72 hours old are clamped or rejected by GA4, so they are never sent.
Unconfirmed: ``client_id`` = the last two parts of ``GA1.1.<random>.<time>`` (we strip the
``GA1.x.`` prefix when the stored value still has it).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping
from urllib.parse import urlencode

from attribution.conversions.base import Conversion, Outcome, PreparedRequest, TimeWindow
from attribution.conversions.destination import (
    Destination,
    Reason,
    Skip,
    every,
    json_body,
    number,
    retry_after,
    short,
    transient,
    utc,
)

WINDOW = TimeWindow(dt.timedelta(hours=72),
                    too_old="ga4: older than 72 hours: GA4 would clamp or reject the event",
                    future="ga4: event time is in the future")
EVENT_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,39}$")
RESERVED_PREFIXES = ("_", "firebase_", "ga_", "google_", "gtag.")
GA_COOKIE = re.compile(r"^GA\d+\.\d+\.(\d+\.\d+)$")
EVENT_INDEX = re.compile(r"^events\[(\d+)\]")


def client_id(conv: Conversion) -> str | None:
    value = (conv.ga_client_id or "").strip()
    match = GA_COOKIE.match(value)
    return match.group(1) if match else (value or None)


def valid_event_name(name: str) -> bool:
    return bool(EVENT_NAME.match(name)) and not name.lower().startswith(RESERVED_PREFIXES)


class GA4MeasurementProtocol(Destination):
    kind = "ga4"
    max_batch = 25
    per_minute = 600

    def __init__(self, config: Mapping):
        super().__init__(config)
        c = self.config
        self.base_url = c.url("base_url", "https://www.google-analytics.com")
        self.measurement_id = c.text("measurement_id", required=True, pattern=r"G-[A-Z0-9]+")
        self.api_secret = self.secret(c.text("api_secret", required=True))
        self.event_name = c.text("event_name", "phone_call_qualified")
        if not valid_event_name(self.event_name):
            raise ValueError("ga4: invalid config key 'event_name': letters, digits and _, "
                             "starting with a letter, at most 40, no reserved prefix")
        self.validate = c.boolean("validate", False)
        self.engagement_time_msec = c.integer("engagement_time_msec", 100)
        self.max_batch = min(c.integer("max_batch", 25), 25)

    def name(self, conv: Conversion) -> str:
        """The rule's event name when GA4 accepts it, else the configured one."""
        return conv.name if conv.name and valid_event_name(conv.name) else self.event_name

    def batch_key(self, conv: Conversion) -> str:
        return client_id(conv) or ""

    def check(self, conv: Conversion, now: dt.datetime) -> Reason | None:
        if conv.kind != "conversion":
            return Skip(f"ga4: {conv.kind} is not supported by the Measurement Protocol")
        if not conv.consent:
            return Skip("ga4: no consent: the GA client id may not be sent")
        if not client_id(conv):
            return Skip("ga4: no GA client id (_ga cookie) for this visit")
        if late := WINDOW.problem(conv, now):
            return Reason(late)
        return self._common_checks(conv)

    def event(self, conv: Conversion) -> dict:
        params = {"engagement_time_msec": self.engagement_time_msec, "call_id": str(conv.call_id),
                  "transaction_id": conv.key}
        if conv.ga_session_id:
            params["session_id"] = conv.ga_session_id
        if conv.value is not None:
            params["value"] = number(conv.value)
            params["currency"] = conv.currency
        micros = int(utc(conv.occurred_at).timestamp()) * 1_000_000
        return {"name": self.name(conv), "params": params, "timestamp_micros": micros}

    def prepare(self, convs: list[Conversion], now: dt.datetime) -> PreparedRequest:
        if not convs or len(convs) > self.max_batch:
            raise ValueError(f"ga4: a request holds 1 to {self.max_batch} events")
        ids = {client_id(c) for c in convs}
        if len(ids) != 1 or None in ids:
            raise ValueError("ga4: one request per client_id (use split())")
        body = {"client_id": ids.pop(), "events": [self.event(c) for c in convs]}
        path = "/debug/mp/collect" if self.validate else "/mp/collect"
        url = f"{self.base_url}{path}?" + urlencode({"measurement_id": self.measurement_id,
                                                     "api_secret": self.api_secret})
        return PreparedRequest("POST", url, {"Content-Type": "application/json"},
                               json.dumps(body).encode(), self.redact(url))

    def read(self, status: int, headers: Mapping[str, str], body: bytes,
             convs: list[Conversion]) -> list[Outcome]:
        if transient(status):
            return every(convs, "retry", f"ga4: HTTP {status}", retry_after=retry_after(headers))
        if not 200 <= status < 300:
            return every(convs, "failed", f"ga4: HTTP {status}: {short(body)}")
        if not self.validate:
            return every(convs, "sent", "ga4: accepted (/mp/collect does not report invalid events)")
        messages = (json_body(body) or {}).get("validationMessages")
        if not isinstance(messages, list):
            return every(convs, "retry", f"ga4: unreadable debug answer: {short(body)}")
        by_event: dict[int, list[str]] = {}
        general: list[str] = []
        for item in messages:
            item = item if isinstance(item, dict) else {}
            text = f"{item.get('validationCode', 'INVALID')}: {item.get('description', '')}".strip()
            match = EVENT_INDEX.match(str(item.get("fieldPath", "")))
            if match and int(match.group(1)) < len(convs):
                by_event.setdefault(int(match.group(1)), []).append(text)
            else:
                general.append(text)
        outcomes = []
        for i, conv in enumerate(convs):
            problems = general + by_event.get(i, [])
            if problems:
                outcomes.append(Outcome(conv.key, "failed", "ga4: " + "; ".join(problems)))
            else:
                outcomes.append(Outcome(conv.key, "skipped", "ga4: valid (debug endpoint: not recorded)"))
        return outcomes
