"""Idempotent bulk writes that work the same on SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import func
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session


def dialect_insert(db: Session, table):
    name = db.get_bind().dialect.name
    if name == "postgresql":
        return postgresql.insert(table)
    if name == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"no upsert for the {name} dialect")


def greatest(db: Session, a, b):
    """The larger of two values (SQLite spells GREATEST as a two-argument max)."""
    return func.max(a, b) if db.get_bind().dialect.name == "sqlite" else func.greatest(a, b)


def insert_ignoring_duplicates(db: Session, table, rows: list[dict], unique: list[str]) -> None:
    """Insert rows, skipping any whose unique key is already there."""
    if rows:
        stmt = dialect_insert(db, table).on_conflict_do_nothing(index_elements=unique)
        db.execute(stmt, same_keys(rows))


def same_keys(rows: list[dict]) -> list[dict]:
    """Give every row every key: a bulk insert takes its columns from the first row."""
    keys = set().union(*rows)
    return [{key: row.get(key) for key in keys} for row in rows]
