"""Meta Conversions API: ``POST /{version}/{pixel_id}/events?access_token=...`` (docs/conversions.md).

Each call becomes one event: ``action_source`` ``phone_call``, ``event_id`` = our key (Meta's
dedupe key), ``event_time`` in Unix seconds, ``user_data`` with the caller's phone hashed the
Meta way (digits with country code, no ``+``), ``fbc`` = ``fb.1.<ms of the click>.<fbclid>``
and ``fbp`` only when the ``_fbp`` cookie was captured; ``custom_data`` value and currency.

If any event in a request is more than 7 days old Meta rejects the whole request, so such a
conversion is never sent (``check`` says why). Other invalid events also fail the whole
request: ``all_or_nothing`` lets ``http.deliver`` isolate them.

Unconfirmed: the 1,000-events-per-request limit (widely documented, not re-checked here);
the 62-day window for offline events (we keep 7 days); ``fbc`` falls back to the call time
when the click time was not recorded.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from urllib.parse import urlencode

from attribution.conversions import hashing
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

# No check of times ahead of ours here (there never was one): Meta's answer says so.
WINDOW = TimeWindow(dt.timedelta(days=7),
                    too_old="meta: older than 7 days: Meta would reject the whole request")
# Meta error codes that mean "later": unknown, temporarily unavailable, rate limits.
TRANSIENT_CODES = {1, 2, 4, 17, 32, 341, 613, 80004}


def fbc(conv: Conversion) -> str | None:
    if not conv.fbclid:
        return None
    clicked = conv.click_at or conv.occurred_at
    return f"fb.1.{int(utc(clicked).timestamp() * 1000)}.{conv.fbclid}"


class MetaConversions(Destination):
    kind = "meta"
    max_batch = 1000
    per_minute = 200

    def __init__(self, config: Mapping):
        super().__init__(config)
        c = self.config
        self.base_url = c.url("base_url", "https://graph.facebook.com")
        self.api_version = c.text("api_version", "v23.0", pattern=r"v\d+\.\d+")
        self.pixel_id = c.text("pixel_id", required=True, pattern=r"\d+")
        self.access_token = self.secret(c.text("access_token", required=True))
        self.test_event_code = c.text("test_event_code", pattern=r"[A-Za-z0-9_-]+")
        self.phone_region = c.text("phone_region", pattern=r"[A-Z]{2}")
        self.max_batch = min(c.integer("max_batch", 1000), 1000)
        self.all_or_nothing = True

    def phone_hash(self, conv: Conversion) -> str | None:
        if not (conv.consent and conv.caller_e164):
            return None
        try:
            return hashing.meta_phone_hash(conv.caller_e164, self.phone_region)
        except ValueError:
            return None

    def user_data(self, conv: Conversion) -> dict:
        if not conv.consent:
            return {}
        data = {}
        phone = self.phone_hash(conv)
        if phone:
            data["ph"] = [phone]
        if fbc(conv):
            data["fbc"] = fbc(conv)
        if conv.fbp:
            data["fbp"] = conv.fbp
        return data

    def check(self, conv: Conversion, now: dt.datetime) -> Reason | None:
        if conv.kind != "conversion":
            return Skip(f"meta: {conv.kind} is not supported by the Conversions API")
        if not conv.consent:
            return Skip("meta: no consent: nothing that identifies the visitor or caller may be sent")
        if late := WINDOW.problem(conv, now):
            return Reason(late)
        if not self.user_data(conv):
            return Skip("meta: no fbclid, _fbp cookie or usable caller number")
        return self._common_checks(conv)

    def event(self, conv: Conversion) -> dict:
        event = {"event_name": conv.name or "Lead", "event_time": int(utc(conv.occurred_at).timestamp()),
                 "action_source": "phone_call", "event_id": conv.key, "user_data": self.user_data(conv)}
        if conv.value is not None:
            event["custom_data"] = {"value": number(conv.value), "currency": conv.currency}
        return event

    def prepare(self, convs: list[Conversion], now: dt.datetime) -> PreparedRequest:
        if not convs or len(convs) > self.max_batch:
            raise ValueError(f"meta: a request holds 1 to {self.max_batch} events")
        body = {"data": [self.event(c) for c in convs]}
        if self.test_event_code:
            body["test_event_code"] = self.test_event_code
        url = (f"{self.base_url}/{self.api_version}/{self.pixel_id}/events?"
               + urlencode({"access_token": self.access_token}))
        return PreparedRequest("POST", url, {"Content-Type": "application/json"},
                               json.dumps(body).encode(), self.redact(url))

    def bisectable(self, status: int, body: bytes) -> bool:
        # only "invalid parameter" (code 100) can come from one event; token errors cannot
        error = (json_body(body) or {}).get("error")
        return status == 400 and isinstance(error, dict) and error.get("code") == 100

    def read(self, status: int, headers: Mapping[str, str], body: bytes,
             convs: list[Conversion]) -> list[Outcome]:
        data = json_body(body) or {}
        if 200 <= status < 300:
            received = data.get("events_received")
            trace = data.get("fbtrace_id")
            if received != len(convs):
                return every(convs, "retry", f"meta: answered events_received={received!r} "
                                             f"for {len(convs)} events")
            return every(convs, "sent", f"meta: received, fbtrace_id {trace}",
                         extra={"fbtrace_id": trace})
        error = data.get("error") if isinstance(data.get("error"), dict) else {}
        code = error.get("code")
        parts = [error.get("message"), error.get("error_user_title"), error.get("error_user_msg")]
        message = ": ".join(str(p) for p in parts if p) or short(body) or "no error body"
        detail = f"meta: HTTP {status}: {message}" + (f" (code {code})" if code is not None else "")
        if transient(status) or code in TRANSIENT_CODES or error.get("is_transient") is True:
            return every(convs, "retry", self.redact(detail), retry_after=retry_after(headers))
        return every(convs, "failed", self.redact(detail))
