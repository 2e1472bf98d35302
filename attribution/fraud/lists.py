"""The block list: entries (a number or a prefix), matching a caller, and the service the
API and dispositions use. Matching is pure and reads the cached map
(``attribution.fraud.directory``), never SQL.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from attribution.fraud.models import BlockEntry
from attribution.zones import parse_datetime
from pools.phones import InvalidNumber, normalize

E164_DIGITS = re.compile(r"^\+[1-9]\d{0,14}$")


def parse_value(raw: object) -> tuple[str, str]:
    """(value, kind) of a block-list entry: a valid E.164 number ("number"), or "+" and
    the leading digits of numbers ("prefix": "+1" a country, "+1900" an area code,
    "+1415555" an area code and exchange). ValueError says what is wrong."""
    if not isinstance(raw, str):
        raise ValueError("value must be a string such as +14155550100 or +1900")
    text = re.sub(r"[\s().-]", "", raw.strip())
    if not E164_DIGITS.match(text):
        raise ValueError("value must be + and 1 to 15 digits (a number or a prefix)")
    try:
        return normalize(text), "number"
    except InvalidNumber:
        return text, "prefix"


def entry_dict(entry: BlockEntry) -> dict:
    """What the cached map keeps of an entry (JSON-able)."""
    return {"id": entry.id, "value": entry.value, "kind": entry.kind, "reason": entry.reason,
            "site_id": entry.site_id,
            "expires_at": entry.expires_at.isoformat() if entry.expires_at else None}


def match(caller: str | None, blocks: dict[str, list[dict]], site_id: int | None,
          now: dt.datetime) -> dict | None:
    """The most specific live entry covering ``caller`` for a call to ``site_id``: the
    full number first, then ever shorter prefixes; a site's entry only on its own calls."""
    if not caller or not caller.startswith("+"):
        return None
    moment = now.isoformat()
    for end in range(len(caller), 1, -1):
        for entry in blocks.get(caller[:end], ()):
            if entry["site_id"] not in (None, site_id):
                continue
            if entry["expires_at"] and entry["expires_at"] <= moment:
                continue
            return entry
    return None


def add(db: Session, *, value: str, site_id: int | None, reason: str | None,
        expires_at: dt.datetime | None, added_by: str, source: str = "api",
        call_id: int | None = None) -> BlockEntry:
    """A new entry (the caller commits). ``value`` as given: parsed here."""
    value, kind = parse_value(value)
    entry = BlockEntry(value=value, kind=kind, reason=reason, site_id=site_id,
                       expires_at=expires_at, added_by=added_by, source=source, call_id=call_id)
    db.add(entry)
    db.flush()
    return entry


def from_spam_disposition(db: Session, call, added_by: str) -> BlockEntry | None:
    """A ``spam`` disposition puts the caller on the call's site's list (audited: who, when,
    which call); once per caller and site. Callers without a valid number are skipped."""
    if not call.from_valid or call.site_id is None:
        return None
    existing = db.scalar(select(BlockEntry).where(BlockEntry.value == call.from_number,
                                                  BlockEntry.site_id == call.site_id))
    if existing is not None:
        return None
    return add(db, value=call.from_number, site_id=call.site_id,
               reason=f"spam disposition on call {call.id}", expires_at=None,
               added_by=added_by, source="disposition", call_id=call.id)


MAX_IMPORT_ROWS = 10_000
IMPORT_COLUMNS = ("value", "reason", "expires_at", "site")


def import_csv(db: Session, text: str, *, added_by: str, site_id_of) -> dict:
    """Entries from a CSV (a header row naming ``value`` and any of ``reason``,
    ``expires_at``, ``site``), each row checked on its own: the good ones are added, the
    others reported with why; a number already on the same list is reported, not doubled.
    ``site_id_of(ref)`` gives a site's id or raises ValueError. The caller commits."""
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip().lower() for h in reader.fieldnames or []]
    if "value" not in header:
        raise ValueError("the first row must name the columns, value among them")
    if unknown := set(header) - set(IMPORT_COLUMNS):
        raise ValueError(f"unknown columns: {', '.join(sorted(unknown))}")
    reader.fieldnames = header
    existing = {(e.value, e.site_id) for e in db.scalars(select(BlockEntry))}
    report, added = [], 0
    for line, row in enumerate(reader, start=2):  # row 1 is the header
        if line - 1 > MAX_IMPORT_ROWS:
            raise ValueError(f"at most {MAX_IMPORT_ROWS} rows at a time")
        # A spreadsheet keeps "+1415" as text with a leading apostrophe.
        raw = (row.get("value") or "").strip().lstrip("'")
        try:
            value, _kind = parse_value(raw)
            site_id = site_id_of(row["site"].strip()) if (row.get("site") or "").strip() else None
            expires = (row.get("expires_at") or "").strip()
            expires_at = parse_datetime(expires) if expires else None
            if expires and expires_at is None:
                raise ValueError("expires_at must be an ISO 8601 time")
            reason = (row.get("reason") or "").strip()[:500] or None
        except ValueError as exc:
            report.append({"row": line, "value": raw[:40], "status": "error", "error": str(exc)})
            continue
        if (value, site_id) in existing:
            report.append({"row": line, "value": value, "status": "duplicate"})
            continue
        entry = add(db, value=value, site_id=site_id, reason=reason, expires_at=expires_at,
                    added_by=added_by, source="import")
        existing.add((value, site_id))
        added += 1
        report.append({"row": line, "value": value, "status": "added", "id": entry.id})
    return {"rows": len(report), "added": added,
            "errors": sum(r["status"] == "error" for r in report), "report": report}
