"""Is a call billable? Rules per pool or static number; each failure is named.

Rules (every one optional)::

    {"min_duration": 60,                 # talk seconds
     "unique_days": 30,                  # no earlier call from this caller in N days
                                         # (to the same site and publisher)
     "countries": ["US"], "regions": ["CA", "NY"], "area_codes": ["212", "650"],
     "hours": {"days": [0, 1, 2, 3, 4], "start": "09:00", "end": "17:00"},
     # from the recording's insight (attribution.insight):
     "caller_talk_seconds": 20, "agent_talk_seconds": 5,   # minimum talk per side
     "heard": ["appointment", "tag:booking"],              # every one spotted
     "not_heard": ["wrong number", "tag:competitor"]}      # none spotted

Hours are in the site's time zone (days: 0 = Monday). A disposition overrides the rules:
``sale`` and ``qualified_lead`` qualify the call, ``spam``, ``not_a_lead`` and ``wrong_number``
disqualify it.

``heard`` and ``not_heard`` name keywords of the site's list (as spoken, any side) or
``tag:<name>`` for any keyword meaning that tag. A call whose rules look at insight is not
qualified until its insight arrives: it fails ``insight_pending`` while its recording may
still come (none announced yet, or waiting for the worker), and the worker qualifies it
again when the analysis is written (``attribution.insight.jobs``). A recording that failed,
was deleted unanalysed or could not be read fails ``insight_unavailable``, for good.
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from dataclasses import dataclass

QUALIFYING = {"sale", "qualified_lead", "appointment"}
DISQUALIFYING = {"spam", "not_a_lead", "wrong_number", "duplicate"}
DISPOSITIONS = QUALIFYING | DISQUALIFYING | {"lead", "voicemail", "other"}
INSIGHT_RULES = ("caller_talk_seconds", "agent_talk_seconds", "heard", "not_heard")
# Recording states after which no analysis will come (attribution.insight.jobs).
RECORDING_GONE = {"failed", "deleted"}
MAX_PHRASES = 50
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
    insight: dict | None = None  # the recording's analysis (attribution.insight.analyse)
    recording_status: str | None = None  # the call's ``recording_status``
    review: str | None = None  # fraud review (attribution.fraud): pending, approved, rejected


def validate_rules(rules: object) -> dict:
    """Return the rules if well formed, else raise ValueError saying what is wrong."""
    if rules is None:
        return {}
    if not isinstance(rules, dict):
        raise ValueError("qualification must be an object")
    known = {"min_duration", "unique_days", "countries", "regions", "area_codes", "hours",
             *INSIGHT_RULES}
    if unknown := set(rules) - known:
        raise ValueError(f"unknown qualification rules: {', '.join(sorted(unknown))}")
    for name in ("min_duration", "unique_days", "caller_talk_seconds", "agent_talk_seconds"):
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
    for name in ("heard", "not_heard"):
        value = rules.get(name)
        if value is not None and (not isinstance(value, list) or len(value) > MAX_PHRASES
                                  or not all(isinstance(v, str) and _phrase(v) for v in value)):
            raise ValueError(f"{name} must be a list of at most {MAX_PHRASES} keywords "
                             '(words as listed for the site) or "tag:<name>"')
    return rules


def _phrase(value: str) -> str:
    """A keyword as the analysis reports it (lower case, letters, single spaces), or a
    ``tag:`` as given; '' when nothing is left."""
    if value.startswith("tag:"):
        return value if 0 < len(value) - 4 <= 64 else ""
    return " ".join(re.sub(r"[^a-z' ]", " ", value.lower()).split())[:200]


def needs_insight(rules: dict) -> bool:
    """Whether the rules look at the recording's analysis."""
    return any(rules.get(name) for name in INSIGHT_RULES)


def _insight_failures(rules: dict, facts: CallFacts) -> list[str]:
    """The insight rules that fail; ``insight_pending`` / ``insight_unavailable`` when
    there is no analysis to judge by."""
    insight = facts.insight
    if not insight or insight.get("status") != "ok":
        if insight or facts.recording_status in RECORDING_GONE:
            return ["insight_unavailable"]
        return ["insight_pending"]
    failures = []
    talk = insight.get("talk_seconds") or {}
    for side in ("caller", "agent"):
        minimum = rules.get(f"{side}_talk_seconds")
        if minimum:
            seconds = talk.get(side)
            if seconds is None:  # a mono recording: its sides cannot be told apart
                failures.append("talk_sides_unknown")
            elif seconds < minimum:
                failures.append(f"{side}_talk_too_short")
    spotted = {kw.get("word") for kw in insight.get("keywords") or []}
    spotted |= {f"tag:{tag}" for tag in insight.get("tags") or []}
    if any(_phrase(p) not in spotted for p in rules.get("heard") or []):
        failures.append("keyword_not_heard")
    if any(_phrase(p) in spotted for p in rules.get("not_heard") or []):
        failures.append("keyword_heard")
    return list(dict.fromkeys(failures))


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
    if needs_insight(rules):
        failures += _insight_failures(rules, facts)
    if facts.disposition in DISQUALIFYING:
        return False, failures + [f"disposition_{facts.disposition}"]
    # Held for fraud review (attribution.fraud): no payout nor conversion until approved.
    if facts.review in ("pending", "rejected"):
        return False, failures + ["held_for_review" if facts.review == "pending"
                                  else "review_rejected"]
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
