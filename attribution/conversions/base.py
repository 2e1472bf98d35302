"""What every destination format works from, and what it answers.

The outbox turns a qualified call into one ``Conversion`` per destination; a destination
module (google, microsoft, meta, ga4) turns a batch of them into one HTTP request and reads
the platform's answer back into one ``Outcome`` per conversion.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal


@dataclass(frozen=True)
class Conversion:
    key: str  # stable per call and destination: transactionId / event_id / order id
    call_id: int
    kind: str  # "conversion", "retraction" or "restatement"
    occurred_at: dt.datetime  # UTC, aware: when the call started
    name: str  # conversion action id / goal name / event name, per destination
    value: Decimal | None
    currency: str
    consent: bool  # False: send nothing that identifies the visitor or the caller
    caller_e164: str | None = None
    gclid: str | None = None
    gbraid: str | None = None
    wbraid: str | None = None
    msclkid: str | None = None
    fbclid: str | None = None
    click_at: dt.datetime | None = None  # when the click id was first seen (UTC, aware)
    fbp: str | None = None  # the _fbp cookie, only when captured
    ga_client_id: str | None = None
    ga_session_id: str | None = None
    timezone: str = "UTC"  # the site's zone, for file exports


@dataclass(frozen=True)
class PreparedRequest:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes
    redacted_url: str  # the URL as it may be logged: secrets masked


@dataclass(frozen=True)
class Outcome:
    key: str  # Conversion.key
    status: str  # "sent", "retry" (transient: try again later), "failed" (permanent), "skipped"
    detail: str = ""
    retry_after: float | None = None  # seconds, when the platform said so
    extra: dict = field(default_factory=dict)


# A call stamped a few minutes ahead of our clock is drift between machines, not the future.
CLOCK_SKEW = dt.timedelta(minutes=5)


@dataclass(frozen=True)
class TimeWindow:
    """The call times a platform takes, and what each destination says of one outside them.

    ``max_age`` None: no limit on age; ``future`` None: the platform sorts out times ahead
    of ours (no check here).
    """

    max_age: dt.timedelta | None
    too_old: str = ""
    future: str | None = None

    def problem(self, conv: Conversion, now: dt.datetime) -> str | None:
        """Why ``conv``'s time cannot be sent (``too_old`` or ``future``), or None."""
        if self.max_age is not None and now - conv.occurred_at > self.max_age:
            return self.too_old
        if self.future is not None and conv.occurred_at > now + CLOCK_SKEW:
            return self.future
        return None
