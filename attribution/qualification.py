"""Is a call billable? Rules per pool or static number; each failure is named.

Rules (every one optional)::

    {"min_duration": 60,                 # talk seconds
     "unique_days": 30,                  # no earlier call from this caller in N days
                                         # (to the same site and publisher)
     "countries": ["US"], "regions": ["CA", "NY"], "area_codes": ["212", "650"],
     "hours": {"days": [0, 1, 2, 3, 4], "start": "09:00", "end": "17:00"}}

Hours are in the site's time zone (days: 0 = Monday). A disposition overrides the rules:
``sale`` and ``qualified_lead`` qualify the call, ``spam``, ``not_a_lead`` and ``wrong_number``
disqualify it.
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from dataclasses import dataclass

QUALIFYING = {"sale", "qualified_lead", "appointment"}
DISQUALIFYING = {"spam", "not_a_lead", "wrong_number", "duplicate"}
DISPOSITIONS = QUALIFYING | DISQUALIFYING | {"lead", "voicemail", "other"}
HHMM = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")


@dataclass(frozen=True)
class CallFacts:
    """What qualification looks at."""

    duration: int | None
    started_at: dt.datetime
    caller_country: str | None
    caller_region: str | None
    area_code: str | None
    # The caller's latest earlier call to the same site (and publisher, for a publisher's
    # number), if any: calls to other tenants never count (attribution.calls.caller_history).
    previous_call_at: dt.datetime | None
    timezone: str = "UTC"
    disposition: str | None = None


def validate_rules(rules: object) -> dict:
    """Return the rules if well formed, else raise ValueError saying what is wrong."""
    if rules is None:
        return {}
    if not isinstance(rules, dict):
        raise ValueError("qualification must be an object")
    known = {"min_duration", "unique_days", "countries", "regions", "area_codes", "hours"}
    if unknown := set(rules) - known:
        raise ValueError(f"unknown qualification rules: {', '.join(sorted(unknown))}")
    for name in ("min_duration", "unique_days"):
        value = rules.get(name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                                  or not 0 <= value <= 86_400):
            raise ValueError(f"{name} must be a whole number from 0 to 86400")
    for name in ("countries", "regions", "area_codes"):
        value = rules.get(name)
        if value is not None and (not isinstance(value, list) or not all(
                isinstance(v, str) and 0 < len(v) <= 16 for v in value)):
            raise ValueError(f"{name} must be a list of short strings")
    hours = rules.get("hours")
    if hours is not None:
        if not isinstance(hours, dict) or not HHMM.fullmatch(str(hours.get("start"))) \
                or not HHMM.fullmatch(str(hours.get("end"))):
            raise ValueError('hours must be {"days": [0-6...], "start": "HH:MM", "end": "HH:MM"}')
        days = hours.get("days", list(range(7)))
        if not isinstance(days, list) or not all(isinstance(d, int) and 0 <= d <= 6 for d in days):
            raise ValueError("hours.days must list weekdays 0 (Monday) to 6")
    return rules


def evaluate(rules: dict, facts: CallFacts) -> tuple[bool, list[str]]:
    """Return (qualified, names of the rules that failed)."""
    failures = []
    minimum = rules.get("min_duration")
    if minimum and (facts.duration or 0) < minimum:
        failures.append("too_short")
    days = rules.get("unique_days")
    if days and facts.previous_call_at is not None \
            and facts.started_at - facts.previous_call_at < dt.timedelta(days=days):
        failures.append("repeat_caller")
    if rules.get("countries") and (facts.caller_country or "").upper() not in {
            c.upper() for c in rules["countries"]}:
        failures.append("outside_countries")
    if rules.get("regions") and (facts.caller_region or "").upper() not in {
            r.upper() for r in rules["regions"]}:
        failures.append("outside_regions")
    if rules.get("area_codes") and facts.area_code not in set(rules["area_codes"]):
        failures.append("outside_area_codes")
    if rules.get("hours") and not _within_hours(rules["hours"], facts):
        failures.append("outside_hours")
    if facts.disposition in DISQUALIFYING:
        return False, failures + [f"disposition_{facts.disposition}"]
    if facts.disposition in QUALIFYING:
        return True, []
    return not failures, failures


def _within_hours(hours: dict, facts: CallFacts) -> bool:
    local = facts.started_at.astimezone(zoneinfo.ZoneInfo(facts.timezone))
    if local.weekday() not in hours.get("days", range(7)):
        return False
    start, end = hours["start"], hours["end"]
    now = local.strftime("%H:%M")
    if start <= end:
        return start <= now < end
    return now >= start or now < end  # overnight hours, e.g. 22:00-06:00
