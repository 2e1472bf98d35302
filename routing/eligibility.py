"""Whether a buyer may be offered a call, before its capacity is asked of Redis.

Checked here, from the buyer's contract and the call's facts alone: paused, open hours in
the buyer's own zone, and its filters. Caps, concurrency, spacing and duplicates depend on
live counters and are checked with the reservation itself (``routing.capacity``).

Filters are pool-rule conditions (``pools.rules``): a list of conditions, any of which
admits the call, each matching when all its fields do; strings compare case-insensitively
with ``*`` wildcards, a list matches when any of its values does.

    [{"caller_state": ["CA", "NV"], "campaign": "roof*"}, {"repeat_caller": false}]

Fields: the call's ``caller_state``, ``caller_area_code``, ``zip`` (from the IVR),
``source``, ``medium``, ``campaign``, ``keyword``, ``publisher``, ``repeat_caller`` (true
or false), and any IVR tag a plan's menu step sets.
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from dataclasses import dataclass, field

from pools.rules import canonical_conditions, missed_field

BOOL_FIELDS = ("repeat_caller",)
KNOWN_FIELDS = ("caller_state", "caller_area_code", "zip", "source", "medium", "campaign",
                "keyword", "publisher")
TAG_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")  # an IVR tag: also a filter field


@dataclass(frozen=True)
class CallFacts:
    """What is known of a call when it is offered: its attribution and its IVR answers."""

    caller: str | None = None  # E.164, for duplicates
    caller_state: str | None = None
    caller_area_code: str | None = None
    zip: str | None = None
    source: str | None = None
    medium: str | None = None
    campaign: str | None = None
    keyword: str | None = None
    publisher: str | None = None
    repeat_caller: bool = False
    risk_score: int | None = None  # the call's fraud risk (attribution.fraud), when known
    tags: dict = field(default_factory=dict)

    def value(self, name: str):
        if name in KNOWN_FIELDS or name in BOOL_FIELDS:
            return getattr(self, name)
        return self.tags.get(name)


def validate_filters(filters: object) -> list[dict]:
    """Filters in canonical form (values lower-cased, lists), or ValueError."""
    known = ", ".join(KNOWN_FIELDS + BOOL_FIELDS)
    return canonical_conditions(
        filters, "filter", bool_fields=BOOL_FIELDS,
        takes_strings=lambda name: name in KNOWN_FIELDS or bool(TAG_NAME.match(name)),
        unknown=lambda i, name: f"filter {i}: {name!r} is not a call fact nor a tag name "
                                f"(known: {known})")


def failed_filter(filters: list[dict], facts: CallFacts) -> str | None:
    """None when the call passes the filters, else the field that turned it away (of the
    first condition: with one condition, the usual case, exactly the one that failed)."""
    first = None
    for condition in filters:
        missed = missed_field(condition, facts.value, BOOL_FIELDS)
        if missed is None:
            return None
        first = first or missed
    return first


def is_open(hours: list[dict] | None, zone: str, now: dt.datetime) -> bool:
    """Whether ``now`` falls in one of the buyer's opening windows, read in its zone.

    A window is ``{"days": [0-6] (0 = Monday), "start": "HH:MM", "end": "HH:MM"}``; an end
    at or before the start runs past midnight (its day is the day it starts); "24:00" is
    the end of the day. No hours: always open.
    """
    if not hours:
        return True
    local = now.astimezone(zoneinfo.ZoneInfo(zone))
    minute = local.hour * 60 + local.minute
    today, yesterday = local.weekday(), (local.weekday() - 1) % 7
    for window in hours:
        start, end = minutes(window["start"]), minutes(window["end"])
        if start < end:
            if today in window["days"] and start <= minute < end:
                return True
        else:  # overnight: from start today to end tomorrow
            if (today in window["days"] and minute >= start) or (
                    yesterday in window["days"] and minute < end):
                return True
    return False


def minutes(hhmm: str) -> int:
    hours, _, mins = hhmm.partition(":")
    return int(hours) * 60 + int(mins)


def static_refusal(buyer: dict, facts: CallFacts, now: dt.datetime) -> str | None:
    """Why ``buyer`` (its contract, with ``paused``) cannot take the call whatever its
    capacity, or None: "paused", "suppressed", "risk", "closed" or "filter:<field>"."""
    if buyer.get("paused"):
        return "paused"
    # The buyer's suppression list (numbers or prefixes, attribution.fraud.lists): the
    # caller is silently not offered to it.
    if facts.caller and any(facts.caller.startswith(v) for v in buyer.get("suppress") or ()):
        return "suppressed"
    # The buyer's fraud policy: no call riskier than it takes (an unknown risk passes).
    max_risk = (buyer.get("fraud") or {}).get("max_risk")
    if max_risk is not None and facts.risk_score is not None and facts.risk_score > max_risk:
        return "risk"
    if not is_open(buyer.get("hours"), buyer["timezone"], now):
        return "closed"
    missed = failed_filter(buyer.get("filters") or [], facts)
    return f"filter:{missed}" if missed else None
