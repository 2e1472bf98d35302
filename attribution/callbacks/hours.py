"""When a number may be called back: pure functions of the number and the moment.

Calls go out only between 08:00 and 21:00 in the called person's local time, the zone
read from the number with ``phonenumbers``' time-zone data. A number that spans several
zones (a country-wide or toll-free number) may be called only when it is inside the
window in every one of them: the latest-opening zone opens it, the earliest-closing zone
closes it. Where no moment suits every zone (a toll-free +1 number reaches from Guam to
Hawaii), the caller's fallback zone (the site's) decides alone.

Florida is stricter. Its Telephone Solicitation Act (Florida Statutes s. 501.059(8)(a),
as amended by SB 1120 in 2021) allows calls only from 8 a.m. to 8 p.m. in the called
person's time zone, and at most 3 calls in 24 hours on the same subject. A callback the
visitor asked for is arguably not a solicitation, but the stricter rule costs little and
is the safe reading. A Florida number is recognised by its area code.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass
from functools import lru_cache

import phonenumbers
from phonenumbers import timezone as number_zones

DAY = dt.timedelta(days=1)


@dataclass(frozen=True)
class CallingRule:
    """When a number may be called: local opening and closing times, and at most
    ``per_day`` attempts in any 24 hours (None: no such limit)."""

    name: str
    opens: dt.time = dt.time(8, 0)
    closes: dt.time = dt.time(21, 0)
    per_day: int | None = None


DEFAULT_RULE = CallingRule("default")
FLORIDA_RULE = CallingRule("US-FL", closes=dt.time(20, 0), per_day=3)
# Florida's area codes (NANPA), overlays included.
FLORIDA_AREA_CODES = frozenset({
    "239", "305", "321", "324", "352", "386", "407", "448", "561", "645", "656", "689",
    "727", "728", "754", "772", "786", "813", "850", "863", "904", "941", "954"})


def rule_for(e164: str) -> CallingRule:
    """The calling rule of the number's place."""
    if e164.startswith("+1") and e164[2:5] in FLORIDA_AREA_CODES:
        return FLORIDA_RULE
    return DEFAULT_RULE


@lru_cache(maxsize=4096)
def zones_for(e164: str) -> tuple[str, ...]:
    """The number's time zones as ``phonenumbers`` knows them; () when unknown."""
    try:
        parsed = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return ()
    names = number_zones.time_zones_for_number(parsed)
    out = []
    for name in names:
        try:
            zoneinfo.ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            continue  # "Etc/Unknown", or a zone this system's database lacks
        out.append(name)
    return tuple(out)


def _local(moment: dt.datetime, zone: str) -> dt.datetime:
    return moment.astimezone(zoneinfo.ZoneInfo(zone))


def is_open(moment: dt.datetime, zones: tuple[str, ...], rule: CallingRule) -> bool:
    """Whether ``moment`` (aware) is inside the calling window in every zone."""
    for zone in zones:
        local = _local(moment, zone).time()
        if not rule.opens <= local < rule.closes:
            return False
    return True


def _openings(after: dt.datetime, zone: str, rule: CallingRule, days: int):
    """The zone's openings (UTC) from the day of ``after`` on, for ``days`` days."""
    tz = zoneinfo.ZoneInfo(zone)
    first = _local(after, zone).date() - DAY
    for offset in range(days + 1):
        day = first + offset * DAY
        # A wall time skipped by a DST change moves forward (fold 0, then normalised).
        local = dt.datetime.combine(day, rule.opens, tz)
        yield local.astimezone(dt.UTC)


def next_opening(now: dt.datetime, zones: tuple[str, ...], rule: CallingRule,
                 days: int = 8) -> dt.datetime | None:
    """``now`` if the window is open in every zone, else the earliest moment it is; None
    if no moment within ``days`` suits every zone."""
    if not zones or is_open(now, zones, rule):
        return now
    candidates = sorted({moment for zone in zones
                         for moment in _openings(now, zone, rule, days) if moment > now})
    return next((c for c in candidates if is_open(c, zones, rule)), None)


def closes_at(moment: dt.datetime, zones: tuple[str, ...], rule: CallingRule) -> dt.datetime:
    """When the open window around ``moment`` ends: the earliest-closing zone's closing."""
    ends = []
    for zone in zones:
        local = _local(moment, zone)
        ends.append(dt.datetime.combine(local.date(), rule.closes, local.tzinfo).astimezone(dt.UTC))
    return min(ends) if ends else moment + DAY


@dataclass(frozen=True)
class Slot:
    """When a callback may be placed: ``at`` (UTC) and whether that is later than asked
    (``deferred``), with the rule and zones that decided it."""

    at: dt.datetime
    deferred: bool
    rule: str
    zones: tuple[str, ...]


def calling_slot(e164: str, wanted: dt.datetime, fallback_zone: str = "UTC",
                 attempts: tuple[dt.datetime, ...] = ()) -> Slot:
    """The earliest moment at or after ``wanted`` that the number may be called, given the
    ``attempts`` already made (for a per-day limit)."""
    rule = rule_for(e164)
    zones = zones_for(e164) or (fallback_zone,)
    at = wanted
    if rule.per_day is not None:
        at = max(at, day_limit_clear(attempts, rule.per_day, at))
    opening = next_opening(at, zones, rule)
    if opening is None:  # no moment suits every zone: the site's zone decides
        zones = (fallback_zone,)
        opening = next_opening(at, zones, rule) or at
    if rule.per_day is not None and opening != at:
        opening = max(opening, day_limit_clear(attempts, rule.per_day, opening))
    return Slot(opening, opening > wanted, rule.name, zones)


def day_limit_clear(attempts: tuple[dt.datetime, ...], per_day: int,
                    at: dt.datetime) -> dt.datetime:
    """The earliest moment at or after ``at`` with fewer than ``per_day`` attempts in the
    24 hours before it."""
    recent = sorted(a for a in attempts if a > at - DAY)
    if len(recent) < per_day:
        return at
    return recent[len(recent) - per_day] + DAY
