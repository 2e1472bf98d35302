"""The calls log as the dashboard pages through it: filters, newest first, and a total."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from attribution.insight.queries import insight_filters
from attribution.models import Call

METHODS = ("session", "session_expired", "static", "fallback", "unattributed")


@dataclass
class CallFilter:
    start: dt.date | None = None  # local days in each call's site zone, as reports use
    end: dt.date | None = None
    qualified: bool | None = None
    method: str | None = None
    source: str | None = None
    publisher: str | None = None  # a publisher login sees only its own calls
    keyword: str | None = None  # spotted in the recording (attribution.insight.queries)
    tag: str | None = None  # a spotted keyword's tag


def _where(stmt, f: CallFilter):
    if f.start is not None:
        stmt = stmt.where(Call.local_day >= f.start)
    if f.end is not None:
        stmt = stmt.where(Call.local_day <= f.end)
    if f.qualified is not None:
        stmt = stmt.where(Call.qualified.is_(f.qualified))
    if f.method:
        stmt = stmt.where(Call.method == f.method)
    if f.source:
        stmt = stmt.where(Call.source == f.source)
    if f.publisher is not None:
        stmt = stmt.where(Call.publisher == f.publisher)
    return insight_filters(stmt, heard_word=f.keyword, tag=f.tag)


def page_of_calls(db: Session, f: CallFilter, page: int = 1, per_page: int = 50
                  ) -> tuple[list[Call], int]:
    """One page of calls matching ``f`` (newest first) and how many match in all."""
    total = db.scalar(_where(select(func.count()).select_from(Call), f)) or 0
    stmt = _where(select(Call), f).order_by(Call.started_at.desc(), Call.id.desc())
    rows = db.scalars(stmt.offset((max(page, 1) - 1) * per_page).limit(per_page)).all()
    return list(rows), total
