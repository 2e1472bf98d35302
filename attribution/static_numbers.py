"""Static numbers (one number per placement: a radio spot, a billboard): create, change,
retire.

The one door for these changes, whoever asks (the admin API, the CLI): plain values in, an
SQL session, ``CatalogError`` out (like ``pools.catalog``). Nothing here commits; the
caller commits, then drops its cached call routes (they list the active static numbers).
"""

from __future__ import annotations

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from attribution.models import StaticNumber
from pools.catalog import CatalogError
from pools.models import PoolNumber, utcnow
from pools.phones import InvalidNumber, normalize

PHONE_FIELDS = ("number", "destination")
TEXT_FIELDS = {"source": True, "medium": True, "campaign": False, "label": False}  # required?


def check_static_number(db: Session, values: dict, region: str = "US",
                        exclude_id: int | None = None) -> dict:
    """The one check of a static number's values: phone numbers normalised (to E.164), and
    a number neither in a pool nor another active static number. Returns the clean values."""
    clean = dict(values)
    errors = {}
    for name in PHONE_FIELDS:
        if name in clean:
            try:
                clean[name] = normalize(clean[name], region)
            except InvalidNumber as exc:
                errors[name] = str(exc)
    if errors:
        raise CatalogError("invalid phone numbers", errors)
    for name, required in TEXT_FIELDS.items():
        value = clean.get(name)
        if (required and name in clean and not value) or (value and len(value) > 255):
            errors[name] = "must be 1 to 255 characters" if required else "at most 255 characters"
    if errors:
        raise CatalogError("invalid static number", errors)
    if "number" in clean and (problem := number_in_use(db, clean["number"], exclude_id)):
        raise CatalogError(problem, {"number": problem})
    return clean


def number_in_use(db: Session, number: str, exclude_id: int | None = None) -> str | None:
    """Why ``number`` cannot be a static number, or None when it is free."""
    if db.scalar(select(PoolNumber.pool_id).where(PoolNumber.number == number,
                                                  PoolNumber.status != "retired")):
        return f"{number} is a pool number"
    other = db.scalar(select(StaticNumber.id).where(
        StaticNumber.number == number, StaticNumber.status == "active",
        StaticNumber.id != (exclude_id or 0)))
    return f"{number} is already static number {other}" if other else None


def get_static_number(db: Session, static_id: int) -> StaticNumber | None:
    return db.get(StaticNumber, static_id)


def static_numbers_query(status: str | None = None) -> Select:
    query = select(StaticNumber).order_by(StaticNumber.id)
    if status:
        query = query.where(StaticNumber.status == status)
    return query


def create_static_number(db: Session, values: dict, region: str = "US") -> StaticNumber:
    """``values``: the columns (number, destination, source, medium, site_id, ...)."""
    row = StaticNumber(**check_static_number(db, values, region))
    db.add(row)
    db.flush()
    return row


def update_static_number(db: Session, row: StaticNumber, changes: dict,
                         region: str = "US") -> StaticNumber:
    for name, value in check_static_number(db, changes, region, row.id).items():
        setattr(row, name, value)
    db.flush()
    return row


def retire_static_number(db: Session, row: StaticNumber) -> StaticNumber:
    """Retire it (calls to it are no longer credited to it); retiring twice changes nothing."""
    if row.status != "retired":
        row.status, row.retired_at = "retired", utcnow()
        db.flush()
    return row
