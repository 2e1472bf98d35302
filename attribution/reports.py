"""Source-attribution reports as data: a ReportQuery is checked against registries of
dimensions and metrics and becomes one SQL query (plus one over visits for session counts).

    ReportQuery(group_by=["source", "medium"], metrics=["calls", "qualified_calls"],
                start=date(2026, 5, 1), end=date(2026, 5, 31), filters={"qualified": True})

Rows come back as ``{"dimensions": {...}, "metrics": {...}}`` with totals over all rows.
Dates are local days in each call's site time zone (``Call.local_day``). The dashboard,
the API and the CSV export share this runner.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal

from sqlalchemy import Integer, case, cast, distinct, func, select
from sqlalchemy.orm import Session

from attribution.models import Call, Visit

MAX_DAYS = 3660


class ReportError(ValueError):
    """A query the registries refuse; ``fields`` names each bad parameter."""

    def __init__(self, message: str, fields: dict):
        super().__init__(message)
        self.fields = fields


@dataclass(frozen=True)
class Dimension:
    call_column: object
    visit_column: object | None = None  # None: sessions cannot be counted by it


def _week(column, dialect: str):
    """The Monday starting the week of a date column, as ISO text."""
    if dialect == "postgresql":
        return func.to_char(func.date_trunc("week", column), "YYYY-MM-DD")
    # SQLite: %w is 0 on Sunday; step back to that week's Monday.
    back = (cast(func.strftime("%w", column), Integer) + 6) % 7
    return func.date(column, func.printf("-%d days", back))


def _month(column, dialect: str):
    if dialect == "postgresql":
        return func.to_char(column, "YYYY-MM")
    return func.strftime("%Y-%m", column)


DIMENSIONS = {
    "source": Dimension(Call.source, Visit.source),
    "medium": Dimension(Call.medium, Visit.medium),
    "campaign": Dimension(Call.campaign, Visit.utm_campaign),
    "term": Dimension(Call.utm_term, Visit.utm_term),
    "keyword": Dimension(Call.keyword, Visit.keyword),
    "content": Dimension(Call.utm_content, Visit.utm_content),
    "landing_page": Dimension(Call.landing_path, Visit.landing_path),
    "referrer_domain": Dimension(Call.referrer_domain, Visit.referrer_domain),
    "device_type": Dimension(Call.device_type, Visit.device_type),
    "browser": Dimension(Call.browser, Visit.browser),
    "os": Dimension(Call.os, Visit.os),
    "visitor_country": Dimension(Call.country, Visit.country),
    "visitor_region": Dimension(Call.region, Visit.region),
    "caller_region": Dimension(Call.caller_region),
    "caller_country": Dimension(Call.caller_country),
    "pool": Dimension(Call.pool_id),
    "tracking_number": Dimension(Call.to_number),
    "label": Dimension(Call.label),
    "publisher": Dimension(Call.publisher),
    "method": Dimension(Call.method),
    "site": Dimension(Call.site_id, Visit.site_id),
    "day": Dimension(Call.local_day, Visit.local_day),
    "week": Dimension(Call.local_day, Visit.local_day),
    "month": Dimension(Call.local_day, Visit.local_day),
}
TIME_DIMENSIONS = {"day", "week", "month"}

answered = case((Call.answered_at.is_not(None), 1), else_=0)
METRICS = {
    "calls": func.count(Call.id),
    "qualified_calls": func.sum(case((Call.qualified, 1), else_=0)),
    "unique_callers": func.count(distinct(Call.from_number)),
    "first_time_callers": func.sum(case((Call.repeat_caller, 0), else_=1)),
    "answered_calls": func.sum(answered),
    "total_talk_time": func.sum(func.coalesce(Call.duration, 0)),
    "revenue": func.sum(Call.revenue),
    "payout": func.sum(Call.payout),
}
# Computed from the metrics above (and sessions), after the query.
DERIVED = {"qualification_rate", "average_talk_time", "margin", "sessions", "calls_per_session"}
ALL_METRICS = list(METRICS) + sorted(DERIVED)
FILTERS = {"site", "pool", "qualified", "caller", "publisher"}


@dataclass
class ReportQuery:
    start: dt.date
    end: dt.date
    group_by: list[str] = field(default_factory=lambda: ["source", "medium"])
    metrics: list[str] = field(default_factory=lambda: list(ALL_METRICS))
    filters: dict = field(default_factory=dict)

    def check(self) -> None:
        errors = {}
        if bad := [d for d in self.group_by if d not in DIMENSIONS]:
            errors["group_by"] = f"unknown dimensions {bad}; known: {sorted(DIMENSIONS)}"
        elif len(set(self.group_by)) != len(self.group_by) or len(self.group_by) > 6:
            errors["group_by"] = "at most six dimensions, each once"
        if bad := [m for m in self.metrics if m not in ALL_METRICS]:
            errors["metrics"] = f"unknown metrics {bad}; known: {ALL_METRICS}"
        if self.end < self.start:
            errors["end"] = "must not be before start"
        elif (self.end - self.start).days > MAX_DAYS:
            errors["end"] = f"a report covers at most {MAX_DAYS} days"
        if bad := set(self.filters) - FILTERS:
            errors["filters"] = f"unknown filters {sorted(bad)}"
        if self.filters.get("caller") not in (None, "first_time", "repeat"):
            errors["caller"] = "must be first_time or repeat"
        if errors:
            raise ReportError("invalid report", errors)

    @property
    def sessions_possible(self) -> bool:
        return all(DIMENSIONS[d].visit_column is not None for d in self.group_by) and not (
            {"pool", "qualified", "caller", "publisher"} & set(self.filters))


def _grouping(name: str, column, dialect: str):
    if name == "week":
        return _week(column, dialect)
    if name == "month":
        return _month(column, dialect)
    return column


def run(db: Session, query: ReportQuery) -> dict:
    """Run the report; returns {"rows": [...], "totals": {...}, "query": {...}}."""
    query.check()
    dialect = db.get_bind().dialect.name
    keys = [_grouping(d, DIMENSIONS[d].call_column, dialect).label(d) for d in query.group_by]
    stmt = select(*keys, *(expr.label(name) for name, expr in METRICS.items()))
    stmt = _filtered(stmt, query).group_by(*keys).order_by(func.count(Call.id).desc(), *keys)
    rows = db.execute(stmt).all()
    totals_row = db.execute(_filtered(
        select(*(expr.label(name) for name, expr in METRICS.items())), query)).one()

    sessions, total_sessions = {}, None
    if query.sessions_possible and {"sessions", "calls_per_session"} & set(query.metrics):
        sessions, total_sessions = _sessions(db, query, dialect)

    out_rows = []
    for row in rows:
        dims = {d: _plain(getattr(row, d)) for d in query.group_by}
        key = tuple(dims.values())
        out_rows.append({"dimensions": dims, "metrics": _metrics(
            row, query, sessions.get(key, 0) if query.sessions_possible else None)})
    return {
        "rows": out_rows,
        "totals": _metrics(totals_row, query, total_sessions),
        "query": {"start": query.start.isoformat(), "end": query.end.isoformat(),
                  "group_by": query.group_by, "metrics": query.metrics,
                  "filters": query.filters},
    }


def _filtered(stmt, query: ReportQuery):
    f = query.filters
    stmt = stmt.where(Call.local_day >= query.start, Call.local_day <= query.end)
    if f.get("site") is not None:
        stmt = stmt.where(Call.site_id == f["site"])
    if f.get("pool") is not None:
        stmt = stmt.where(Call.pool_id == f["pool"])
    if f.get("publisher") is not None:
        stmt = stmt.where(Call.publisher == f["publisher"])
    if f.get("qualified") is not None:
        stmt = stmt.where(Call.qualified.is_(bool(f["qualified"])))
    if f.get("caller") == "first_time":
        stmt = stmt.where(Call.repeat_caller.is_(False))
    elif f.get("caller") == "repeat":
        stmt = stmt.where(Call.repeat_caller.is_(True))
    return stmt


def _sessions(db: Session, query: ReportQuery, dialect: str) -> tuple[dict, int]:
    keys = [_grouping(d, DIMENSIONS[d].visit_column, dialect).label(d) for d in query.group_by]
    base = select(func.count()).select_from(Visit).where(
        Visit.local_day >= query.start, Visit.local_day <= query.end)
    if query.filters.get("site") is not None:
        base = base.where(Visit.site_id == query.filters["site"])
    total = db.execute(base).scalar_one()
    stmt = base.add_columns(*keys).group_by(*keys)
    return {tuple(_plain(v) for v in row[1:]): row[0] for row in db.execute(stmt)}, total


def _plain(value):
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def _metrics(row, query: ReportQuery, sessions: int | None) -> dict:
    calls = row.calls or 0
    values = {name: getattr(row, name) or 0 for name in METRICS}
    values["revenue"] = Decimal(values["revenue"] or 0).quantize(Decimal("0.01"))
    values["payout"] = Decimal(values["payout"] or 0).quantize(Decimal("0.01"))
    values["margin"] = values["revenue"] - values["payout"]
    values["qualification_rate"] = round(values["qualified_calls"] / calls, 4) if calls else None
    answered_calls = values["answered_calls"]
    values["average_talk_time"] = (round(values["total_talk_time"] / answered_calls, 1)
                                   if answered_calls else None)
    values["sessions"] = sessions
    values["calls_per_session"] = (round(calls / sessions, 4) if sessions else None)
    out = {}
    for name in query.metrics:
        value = values[name]
        out[name] = str(value) if isinstance(value, Decimal) else value
    return out


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value) -> str:
    """A cell a spreadsheet shows as text: data starting like a formula is neutralised."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def to_csv(report: dict) -> str:
    """The report as CSV (UTF-8 with a BOM so spreadsheets read it as UTF-8), totals last."""
    import csv
    import io

    dims, metrics = report["query"]["group_by"], report["query"]["metrics"]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(dims + metrics)
    for row in report["rows"]:
        writer.writerow([csv_safe(row["dimensions"][d]) for d in dims]
                        + ["" if row["metrics"][m] is None else row["metrics"][m]
                           for m in metrics])
    totals = report["totals"]
    writer.writerow(["Total"] + [""] * (len(dims) - 1)
                    + ["" if totals[m] is None else totals[m] for m in metrics])
    return "\ufeff" + out.getvalue()
