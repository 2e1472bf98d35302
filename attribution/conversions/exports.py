"""File exports for accounts that upload conversions by hand (docs/conversions.md, CSV exports).

Google click-conversion CSV::

    Parameters:TimeZone=America/New_York
    Google Click ID,Conversion Name,Conversion Time,Conversion Value,Conversion Currency
    EAIaIQobChMI-example,Qualified call,2026-03-01 13:45:00,120.00,USD

Times are written in the site's zone as ``yyyy-MM-dd HH:mm:ss`` and the zone is named by its
id on the first line, which stays right across DST changes. gbraid and wbraid conversions go
in files of their own whose first column is ``GBRAID`` or ``WBRAID`` (one id per row; one file
per id type is the safe reading of Google's templates, unconfirmed). Each conversion uses one
click id: gclid, else gbraid, else wbraid.

Microsoft offline-conversion CSV (UI template, unconfirmed)::

    Parameters:TimeZone=+0000
    Microsoft Click ID,Conversion Name,Conversion Time,Conversion Value,Conversion Currency
    EAIaIQobChMI-example,Qualified call,3/1/2026 6:45:00 PM,120.00,USD

Microsoft's line takes a fixed offset only, and one offset cannot describe a file whose
times straddle a DST change in the site's zone (the offset differs before and after). So we
write every time in UTC with ``+0000``: always correct, whatever the site's zone.

Rows are written by ``attribution.spreadsheet`` (quoting as needed, CRLF line ends, formula
starts neutralised in every cell, conversion names included). Only conversions (not
retractions) with consent and a click id are exported; a click id with characters no real
click id has (a visitor can type anything into a URL) is left out altogether.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from attribution.conversions.base import Conversion
from attribution.conversions.destination import utc
from attribution.spreadsheet import write_csv

GOOGLE_COLUMNS = ["Conversion Name", "Conversion Time", "Conversion Value", "Conversion Currency"]
GOOGLE_ID_COLUMNS = {"gclid": "Google Click ID", "gbraid": "GBRAID", "wbraid": "WBRAID"}
MICROSOFT_HEADER = ["Microsoft Click ID", "Conversion Name", "Conversion Time", "Conversion Value",
                    "Conversion Currency"]
SAFE_CLICK_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.~-]*$")


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}") from None


def _money(value: Decimal | None) -> str:
    return "" if value is None else str(value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def _exportable(conv: Conversion) -> bool:
    return conv.kind == "conversion" and conv.consent


def _write(rows: list[list[str]]) -> str:
    return write_csv(rows)


def google_id(conv: Conversion) -> tuple[str, str] | None:
    for name in ("gclid", "gbraid", "wbraid"):
        value = getattr(conv, name)
        if value:
            return (name, value) if SAFE_CLICK_ID.match(value) else None
    return None


def google_click_csvs(convs: Iterable[Conversion], zone: str) -> dict[str, str]:
    """One CSV per click-id type present (``gclid``, ``gbraid``, ``wbraid``), times in ``zone``."""
    tz = _zone(zone)
    rows: dict[str, list[list[str]]] = {}
    for conv in convs:
        click = google_id(conv) if _exportable(conv) else None
        if click is None:
            continue
        when = utc(conv.occurred_at).astimezone(tz).strftime("%Y-%m-%d %H:%M:%S")
        rows.setdefault(click[0], []).append(
            [click[1], conv.name, when, _money(conv.value), conv.currency if conv.value is not None else ""])
    return {kind: _write([[f"Parameters:TimeZone={zone}"], [GOOGLE_ID_COLUMNS[kind], *GOOGLE_COLUMNS],
                          *found])
            for kind in GOOGLE_ID_COLUMNS if (found := rows.get(kind))}


def google_click_csv(convs: Iterable[Conversion], zone: str, id_type: str = "gclid") -> str:
    """The file for one click-id type; just the two header lines when there is nothing to send."""
    if id_type not in GOOGLE_ID_COLUMNS:
        raise ValueError(f"id_type must be one of {sorted(GOOGLE_ID_COLUMNS)}")
    files = google_click_csvs(convs, zone)
    return files.get(id_type) or _write([[f"Parameters:TimeZone={zone}"],
                                         [GOOGLE_ID_COLUMNS[id_type], *GOOGLE_COLUMNS]])


def _microsoft_time(conv: Conversion) -> str:
    """``3/1/2026 6:45:00 PM`` in UTC (month/day without padding, 12-hour clock)."""
    t = utc(conv.occurred_at)
    hour = t.hour % 12 or 12
    return f"{t.month}/{t.day}/{t.year} {hour}:{t:%M:%S} {'AM' if t.hour < 12 else 'PM'}"


def microsoft_offline_csv(convs: Iterable[Conversion]) -> str:
    rows = [["Parameters:TimeZone=+0000"], MICROSOFT_HEADER]
    for conv in convs:
        if not (_exportable(conv) and conv.msclkid and SAFE_CLICK_ID.match(conv.msclkid)):
            continue
        rows.append([conv.msclkid, conv.name, _microsoft_time(conv), _money(conv.value),
                     conv.currency if conv.value is not None else ""])
    return _write(rows)
