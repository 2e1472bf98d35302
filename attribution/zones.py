"""Dates and times: the range the service accepts, parsing them, and local dates in a site's
time zone (reports group and filter calls by those)."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from functools import lru_cache

# Dates a query or a carrier may name. Far inside what ``datetime`` can hold, so moving one
# by any UTC offset (at most 14 h) or by a report's default span never overflows.
EARLIEST = dt.date(1970, 1, 1)
LATEST = dt.date(2999, 12, 31)


@lru_cache(maxsize=512)
def zone(name: str | None) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(name or "UTC")
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return zoneinfo.ZoneInfo("UTC")


def local_day(moment: dt.datetime, zone_name: str | None) -> dt.date:
    return moment.astimezone(zone(zone_name)).date()


def parse_date(text) -> dt.date | None:
    """``YYYY-MM-DD`` within [EARLIEST, LATEST], else None (never an exception)."""
    if not isinstance(text, str) or not text.isascii() or len(text) > 32:
        return None
    try:
        day = dt.date.fromisoformat(text.strip())
    except ValueError:
        return None
    return day if EARLIEST <= day <= LATEST else None


def parse_datetime(text, default_zone: dt.tzinfo = dt.UTC) -> dt.datetime | None:
    """An ISO 8601 time within range, else None; without an offset it is in ``default_zone``.

    A trailing ``Z`` is UTC (older Pythons' ``fromisoformat`` refused it).
    """
    if not isinstance(text, str) or not text.isascii() or len(text) > 64:
        return None
    text = text.strip()
    try:
        moment = dt.datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z"))
                                           else text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=default_zone)
    return moment if in_range(moment) else None


def in_range(moment: dt.datetime) -> bool:
    """Whether an aware time falls on a date within [EARLIEST, LATEST] in UTC."""
    if not EARLIEST <= moment.date() <= LATEST:  # checked first: converting might overflow
        return False
    try:
        return EARLIEST <= moment.astimezone(dt.UTC).date() <= LATEST
    except (OverflowError, ValueError):
        return False
