"""Source-attribution reports as data: a ReportQuery is checked against registries of
dimensions and metrics and becomes one SQL query over a covering index (plus one for unique
callers in total and one over visits for session counts).

    ReportQuery(group_by=["source", "medium"], metrics=["calls", "qualified_calls"],
                start=date(2026, 5, 1), end=date(2026, 5, 31), filters={"qualified": True})

Rows come back as ``{"dimensions": {...}, "metrics": {...}}`` with totals over all rows.
Only the metrics asked for are computed; totals are sums of the rows, but for unique
callers (one more query). ``statements`` shows the SQL (the benchmark EXPLAINs it).

What one report may cost is bounded (``Limits``): rows come a page at a time (totals stay
over all rows: one more query when the page is not the whole report), days in the range
times dimensions grouped by is capped, and each SQL statement has a time limit.
Dates are local days in each call's site time zone (``Call.local_day``). The dashboard,
the API and the CSV export share this runner. A layer above may add dimensions and metrics
from a table of its own (``Extension``: pay-per-call's buyers, ``routing.reports``).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal

from sqlalchemy import Integer, String, and_, cast, distinct, func, select, text, true
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import UnaryExpression
from sqlalchemy.sql.operators import custom_op

from attribution.insight import queries as insight_queries
from attribution.models import Call, Visit
from attribution.spreadsheet import safe_cell, write_csv

MAX_DAYS = 3660


class ReportError(ValueError):
    """A query the registries refuse; ``fields`` names each bad parameter."""

    def __init__(self, message: str, fields: dict):
        super().__init__(message)
        self.fields = fields


class ReportTimeout(Exception):
    """A report's SQL ran past its time limit and was stopped."""

    def __init__(self, timeout_ms: int):
        super().__init__(f"the report took longer than its limit of {timeout_ms} ms")
        self.timeout_ms = timeout_ms


@dataclass(frozen=True)
class Limits:
    """What one report may cost. ``max_day_dimensions`` bounds days in the range times the
    dimensions grouped by (at least one): the groups a report can make grow with both."""

    max_rows: int = 1000  # rows per page
    max_day_dimensions: int = 3660  # ten years by one dimension, or 610 days by six
    timeout_ms: int = 5000  # per SQL statement


@dataclass(frozen=True)
class Page:
    """Which rows of a report to return, in the report's order."""

    offset: int = 0
    limit: int | None = None  # None: Limits.max_rows


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
# Conversation insight (attribution.insight.queries): the caller's share of the talk,
# bucketed; filters "heard" (a spotted keyword) and "tag" (a keyword's tag).
DIMENSIONS["talk_share"] = Dimension(insight_queries.talk_share())
INSIGHT_FILTERS = {"heard", "tag"}

# count(...) FILTER and count(column) rather than sum(CASE ...): the same numbers, and
# about a fifth less work per call for SQLite.
METRICS = {
    "calls": func.count(),  # count(*): the report indexes do not hold the id
    "qualified_calls": func.count().filter(Call.qualified),
    "unique_callers": func.count(distinct(Call.from_number)),
    "first_time_callers": func.count().filter(~Call.repeat_caller),
    "answered_calls": func.count(Call.answered_at),
    "total_talk_time": func.sum(Call.duration),
    "revenue": func.sum(Call.revenue),
    "payout": func.sum(Call.payout),
}
# Computed from the metrics above (and sessions), after the query; each needs these.
DERIVED = {"qualification_rate": ("calls", "qualified_calls"),
           "average_talk_time": ("total_talk_time", "answered_calls"),
           "margin": ("revenue", "payout"), "sessions": (), "calls_per_session": ("calls",)}
ALL_METRICS = list(METRICS) + sorted(DERIVED)
FILTERS = {"site", "pool", "qualified", "caller", "publisher"} | INSIGHT_FILTERS
# Report indexes (migration 0006) cover every metric and filter column but publisher, so a
# report reads narrow index entries in the order it groups them, never the wide call rows:
# ix_calls_report_source (source, medium, caller, day, ...), ix_calls_report_day (day,
# caller, source, medium, ...), ix_calls_report_caller (caller, day, ...), and for visits
# ix_visits_report_source and ix_visits_report_day. SQLite's planner prefers any date range
# plus a sort, even a range that is the whole table, so on SQLite the range is written
# ``+local_day`` (no index can serve it) wherever the grouping's index is the better read.


def _nothing(_values: dict) -> None:
    return None


@dataclass(frozen=True)
class Extension:
    """More dimensions and metrics, from a table a layer above knows (this module does not):
    ``join`` adds it to a statement over calls (an outer join: every call keeps its row).
    ``side_metrics`` are counted over other rows (each offer of a call, say) by a statement
    of their own, ``side_join``, grouped by the same dimensions, with ``side_dimensions`` in
    place of the extension's (an offer's buyer, not the call's); its groups are joined to
    the call groups by key, and a group found only there is a row too. ``side_alone`` is
    that statement over the extension's tables only, without calls, used when every filter
    asked for has a copy there (``side_filters``: filter name, and "day" for the local day,
    to its column): a join to every call in the range is then saved. ``derived`` names
    what each derived metric needs (a name in DERIVED is redefined) and ``derive`` fills
    them in, after the module's own."""

    dimensions: dict = field(default_factory=dict)  # name -> Dimension
    metrics: dict = field(default_factory=dict)  # name -> aggregate, with ``join``
    derived: dict = field(default_factory=dict)
    derive: Callable[[dict], None] = _nothing
    join: Callable | None = None  # select -> select
    side_dimensions: dict = field(default_factory=dict)
    side_metrics: dict = field(default_factory=dict)
    side_join: Callable | None = None
    side_alone: Callable | None = None
    side_filters: dict = field(default_factory=dict)


@dataclass
class ReportQuery:
    start: dt.date
    end: dt.date
    group_by: list[str] = field(default_factory=lambda: ["source", "medium"])
    metrics: list[str] = field(default_factory=lambda: list(ALL_METRICS))
    filters: dict = field(default_factory=dict)
    extension: Extension | None = None  # more dimensions and metrics, from a layer above

    @property
    def dimensions(self) -> dict:
        return DIMENSIONS | (self.extension.dimensions if self.extension else {})

    @property
    def all_metrics(self) -> list[str]:
        ext = self.extension or Extension()
        names = list(METRICS) + list(ext.metrics) + list(ext.side_metrics)
        return names + sorted((set(DERIVED) | set(ext.derived)) - set(names))

    @property
    def derived(self) -> dict:
        return DERIVED | (self.extension.derived if self.extension else {})

    def aggregate(self, name: str):
        ext = self.extension or Extension()
        for registry in (METRICS, ext.metrics):
            if name in registry:
                return registry[name]
        raise KeyError(name)

    def check(self, limits: Limits | None = None) -> None:
        limits = limits or Limits()
        errors = {}
        known = self.dimensions
        if bad := [d for d in self.group_by if d not in known]:
            errors["group_by"] = f"unknown dimensions {bad}; known: {sorted(known)}"
        elif len(set(self.group_by)) != len(self.group_by) or len(self.group_by) > 6:
            errors["group_by"] = "at most six dimensions, each once"
        if bad := [m for m in self.metrics if m not in self.all_metrics]:
            errors["metrics"] = f"unknown metrics {bad}; known: {self.all_metrics}"
        if self.end < self.start:
            errors["end"] = "must not be before start"
        elif (self.end - self.start).days > MAX_DAYS:
            errors["end"] = f"a report covers at most {MAX_DAYS} days"
        elif "group_by" not in errors and self.day_dimensions > limits.max_day_dimensions:
            errors["range"] = (
                f"{self.day_dimensions} days x dimensions is over the limit of "
                f"{limits.max_day_dimensions} (days in the range times the dimensions "
                "grouped by, at least one): shorten the range or group by fewer dimensions")
        if bad := set(self.filters) - FILTERS:
            errors["filters"] = f"unknown filters {sorted(bad)}"
        if self.filters.get("caller") not in (None, "first_time", "repeat"):
            errors["caller"] = "must be first_time or repeat"
        for name in INSIGHT_FILTERS & set(self.filters):
            value = self.filters[name]
            if not isinstance(value, str) or not 0 < len(value.strip()) <= insight_queries.MAX_TEXT:
                errors[name] = f"must be 1 to {insight_queries.MAX_TEXT} characters"
        if errors:
            raise ReportError("invalid report", errors)

    @property
    def day_dimensions(self) -> int:
        """Days in the range times dimensions (at least one): what ``Limits`` bounds."""
        return ((self.end - self.start).days + 1) * max(1, len(self.group_by))

    @property
    def sessions_possible(self) -> bool:
        return all(d in DIMENSIONS and DIMENSIONS[d].visit_column is not None
                   for d in self.group_by) and not (
            {"pool", "qualified", "caller", "publisher", *INSIGHT_FILTERS} & set(self.filters))

    @property
    def wants_sessions(self) -> bool:
        return self.sessions_possible and bool({"sessions", "calls_per_session"}
                                               & set(self.metrics))

    @property
    def _wanted(self) -> set[str]:
        wanted = {"calls"}
        derived = self.derived
        for name in self.metrics:
            wanted.update(derived.get(name, (name,)))
        return wanted

    @property
    def sql_metrics(self) -> list[str]:
        """The SQL metrics the asked-for metrics need ("calls" always: rows sort by it)."""
        ext = self.extension or Extension()
        wanted = self._wanted
        return [name for name in (*METRICS, *ext.metrics) if name in wanted]

    @property
    def side_metrics(self) -> list[str]:
        """The extension's side metrics the asked-for metrics need."""
        ext = self.extension or Extension()
        return [name for name in ext.side_metrics if name in self._wanted]

    @property
    def joins(self) -> bool:
        """Whether the rows need the extension's table joined to calls."""
        ext = self.extension
        return ext is not None and ext.join is not None and bool(
            set(self.group_by) & set(ext.dimensions)
            or set(self.sql_metrics) & set(ext.metrics))


def _grouping(name: str, column, dialect: str):
    if name == "week":
        return _week(column, dialect)
    if name == "month":
        return _month(column, dialect)
    return column


def _unindexed(column):
    """``+column``: the same value, which SQLite cannot look up in an index."""
    return UnaryExpression(column, operator=custom_op("+"), type_=column.type)


def _day(column, dialect: str, grouped_by_source: bool):
    return _unindexed(column) if dialect == "sqlite" and grouped_by_source else column


def statements(query: ReportQuery, dialect: str) -> dict:
    """The SQL a report runs: "rows", and when asked for, "callers" (unique callers over
    all rows: not a sum of the rows'), "sessions" (visits per group) and "side" (an
    extension's side metrics per group)."""
    by_source = query.group_by[:1] == ["source"]
    dims = query.dimensions
    keys = [_grouping(d, dims[d].call_column, dialect).label(d) for d in query.group_by]
    stmt = select(*keys, *(query.aggregate(name).label(name) for name in query.sql_metrics))
    day = _day(Call.local_day, dialect, by_source)
    if query.joins:
        stmt = query.extension.join(stmt)
        if dialect == "sqlite":
            # A join reads each call's row: by day, nearly the order rows were written in,
            # never in a grouping's order, which jumps about the table (several times slower).
            stmt = stmt.with_hint(Call, "INDEXED BY ix_calls_report_day", "sqlite")
            day = Call.local_day
    stmt = _filtered(stmt, query, day)
    out = {"rows": stmt.group_by(*keys).order_by(func.count().desc(), *keys)}
    if query.side_metrics:
        out["side"] = _side(query, dialect, grouped=True)
    if "unique_callers" in query.sql_metrics and query.group_by:
        # Grouping by caller streams through the caller index; count(DISTINCT) would sort.
        callers = _filtered(select(Call.from_number), query, _day(Call.local_day, dialect, True))
        out["callers"] = select(func.count()).select_from(
            callers.group_by(Call.from_number).subquery())
    if query.wants_sessions:
        groups = [_grouping(d, DIMENSIONS[d].visit_column, dialect) for d in query.group_by]
        keys = [group.label(d) for group, d in zip(groups, query.group_by, strict=True)]
        # Each key again as text, never NULL: what the page's rows are joined on (run()).
        joins = [_join_key(group).label("join_" + d)
                 for group, d in zip(groups, query.group_by, strict=True)]
        out["sessions"] = _visits(query, dialect, func.count().label("sessions"), *keys,
                                  *joins).group_by(*keys)
    return out


def _side(query: ReportQuery, dialect: str, grouped: bool):
    """The extension's side metrics, grouped like the rows (with each key again as text, to
    join on), or in total."""
    ext = query.extension
    metrics = [ext.side_metrics[name].label(name) for name in query.side_metrics]
    columns = ext.side_filters
    alone = (ext.side_alone is not None and "day" in columns
             and set(query.group_by) <= set(ext.side_dimensions)
             and set(query.filters) <= set(columns))

    def joined(stmt):
        if alone:
            return _filtered_on(ext.side_alone(stmt), query, columns)
        return _filtered(ext.side_join(stmt), query, Call.local_day)

    if not grouped:
        return joined(select(*metrics))
    dims = query.dimensions | ext.side_dimensions
    groups = [_grouping(d, dims[d].call_column, dialect) for d in query.group_by]
    keys = [group.label(d) for group, d in zip(groups, query.group_by, strict=True)]
    joins = [_join_key(group).label("join_" + d)
             for group, d in zip(groups, query.group_by, strict=True)]
    return joined(select(*keys, *joins, *metrics)).group_by(*keys)


def _filtered_on(stmt, query: ReportQuery, columns: dict):
    """``_filtered`` on an extension's own copies of the call's columns (``side_filters``)."""
    stmt = stmt.where(columns["day"] >= query.start, columns["day"] <= query.end)
    for name, value in query.filters.items():
        if value is not None:
            stmt = stmt.where(columns[name] == value)
    return stmt


def _with_side(rows, side, query: ReportQuery):
    """Every group of the rows and of the side statement (a full join on the keys), in the
    report's order: a page is cut from this."""
    dims = query.group_by
    main = rows.order_by(None).subquery("call_rows")
    other = side.subquery("side_rows")
    on = and_(true(), *(other.c["join_" + d] == _join_key(main.c[d]) for d in dims))
    keys = [func.coalesce(main.c[d], other.c[d]).label(d) for d in dims]
    stmt = select(*keys, *(main.c[name] for name in query.sql_metrics),
                  *(other.c[name] for name in query.side_metrics))
    return (stmt.select_from(main.join(other, on, full=True))
            .order_by(func.coalesce(main.c.calls, 0).desc(), *keys))


def _visits(query: ReportQuery, dialect: str, *columns):
    day = _day(Visit.local_day, dialect, query.group_by[:1] == ["source"])
    stmt = select(*columns).select_from(Visit).where(day >= query.start, day <= query.end)
    if query.filters.get("site") is not None:
        stmt = stmt.where(Visit.site_id == query.filters["site"])
    return stmt


NULL_KEY = "\x1f(none)"  # stands for NULL in a join key: no dimension value looks like it


def _join_key(column):
    """A group's key as text with NULL spelled out, so that equal keys join, NULL too."""
    return func.coalesce(cast(column, String), NULL_KEY)


def _with_sessions(rows, sessions, dims: list[str]):
    """The page of ``rows`` with each row's visit count beside it: the database matches
    them (a page, not every group, comes back to Python)."""
    page = rows.subquery("page_rows")
    groups = sessions.subquery("visit_groups")
    on = and_(true(), *(groups.c["join_" + d] == _join_key(page.c[d]) for d in dims))
    return (select(page, groups.c.sessions).select_from(page.outerjoin(groups, on))
            .order_by(page.c.calls.desc(), *(page.c[d] for d in dims)))


def totals_statement(query: ReportQuery):
    """Totals when the rows come a page at a time: the same metrics, nothing grouped."""
    stmt = select(*(query.aggregate(name).label(name) for name in query.sql_metrics))
    if query.joins:
        stmt = query.extension.join(stmt)
    return _filtered(stmt, query, Call.local_day)


def plan(db: Session, stmt) -> list[str]:
    """The database's plan for ``stmt``, one line per step (EXPLAIN QUERY PLAN on SQLite)."""
    dialect = db.get_bind().dialect
    sql = str(stmt.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
    if dialect.name == "sqlite":
        return [row[-1] for row in db.execute(text("EXPLAIN QUERY PLAN " + sql))]
    return [row[0] for row in db.execute(text("EXPLAIN " + sql))]


def run(db: Session, query: ReportQuery, limits: Limits | None = None,
        page: Page | None = None) -> dict:
    """Run the report; returns {"rows": [...], "totals": {...}, "query": {...},
    "page": {"offset", "limit", "next_offset"}} (next_offset None on the last page).

    Raises ReportError for a query or page over the limits, ReportTimeout when its SQL
    runs out of time (the session is rolled back then)."""
    limits, page = limits or Limits(), page or Page()
    query.check(limits)
    limit = _checked_page(page, limits)
    stmts = statements(query, db.get_bind().dialect.name)
    with time_limit(db, limits.timeout_ms):
        rows_stmt = stmts["rows"]
        if "side" in stmts:
            rows_stmt = _with_side(rows_stmt, stmts["side"], query)
        rows_stmt = rows_stmt.limit(limit + 1).offset(page.offset)
        if "sessions" in stmts:
            rows_stmt = _with_sessions(rows_stmt, stmts["sessions"], query.group_by)
        rows = db.execute(rows_stmt).mappings().all()
        next_offset = page.offset + limit if len(rows) > limit else None
        rows = rows[:limit]
        if page.offset == 0 and next_offset is None:
            totals = _totals(rows, query)  # every row is on this page
        else:
            totals = dict(db.execute(totals_statement(query)).mappings().one())
            if "side" in stmts:
                dialect = db.get_bind().dialect.name
                totals |= db.execute(_side(query, dialect, grouped=False)).mappings().one()
        if "callers" in stmts:
            totals["unique_callers"] = db.execute(stmts["callers"]).scalar_one()

        total_sessions = None
        if "sessions" in stmts:
            total_sessions = db.execute(_visits(query, db.get_bind().dialect.name,
                                                func.count())).scalar_one()

    out_rows = []
    for row in rows:
        dims = {d: _plain(row[d]) for d in query.group_by}
        out_rows.append({"dimensions": dims, "metrics": _metrics(
            row, query, (row.get("sessions") or 0) if query.sessions_possible else None)})
    return {
        "rows": out_rows,
        "totals": _metrics(totals, query, total_sessions),
        "query": {"start": query.start.isoformat(), "end": query.end.isoformat(),
                  "group_by": query.group_by, "metrics": query.metrics,
                  "filters": query.filters},
        "page": {"offset": page.offset, "limit": limit, "next_offset": next_offset},
    }


def _checked_page(page: Page, limits: Limits) -> int:
    """The page's row count, after checking it against the limits."""
    limit = limits.max_rows if page.limit is None else page.limit
    errors = {}
    if not 1 <= limit <= limits.max_rows:
        errors["limit"] = f"must be between 1 and {limits.max_rows} (rows per page)"
    if page.offset < 0:
        errors["offset"] = "must not be negative"
    if errors:
        raise ReportError("invalid page", errors)
    return limit


# SQLite calls the progress handler every this many virtual machine steps (well under a
# millisecond of work), so a report stops soon after its deadline.
PROGRESS_STEPS = 10_000
QUERY_CANCELED = "57014"  # PostgreSQL's SQLSTATE for a statement_timeout


@contextmanager
def time_limit(db: Session, timeout_ms: int) -> Iterator[None]:
    """Stop the SQL run inside after ``timeout_ms`` (each statement on PostgreSQL, all of
    them together on SQLite); raises ReportTimeout after rolling the session back."""
    connection = db.connection()
    if connection.dialect.name == "postgresql":
        # SET LOCAL ends with the transaction; set back to the defaults once done. No
        # nested loops: on a fresh table's estimates the planner may join a page to its
        # visit counts by aggregating the visits again for every row; a hash join does it
        # once. A join that must loop (an extension's rows from each call's JSON) then costs
        # so much on paper that JIT compiling would start: seconds for a small report.
        connection.exec_driver_sql(f"SET LOCAL statement_timeout = {int(timeout_ms)}")
        connection.exec_driver_sql("SET LOCAL enable_nestloop = off")
        connection.exec_driver_sql("SET LOCAL jit = off")
        try:
            yield
        except OperationalError as exc:
            if getattr(exc.orig, "sqlstate", None) != QUERY_CANCELED:
                raise
            db.rollback()
            raise ReportTimeout(timeout_ms) from None
        connection.exec_driver_sql("SET LOCAL statement_timeout TO DEFAULT")
        connection.exec_driver_sql("SET LOCAL enable_nestloop TO DEFAULT")
        connection.exec_driver_sql("SET LOCAL jit TO DEFAULT")
        return
    raw = connection.connection.driver_connection
    deadline = time.monotonic() + timeout_ms / 1000
    expired = False

    def past_deadline() -> bool:
        nonlocal expired
        expired = time.monotonic() > deadline
        return expired  # true: SQLite interrupts the statement

    raw.set_progress_handler(past_deadline, PROGRESS_STEPS)
    try:
        yield
    except OperationalError:
        # Off before the rollback hands the connection back to the pool for others.
        raw.set_progress_handler(None, PROGRESS_STEPS)
        if not expired:
            raise
        db.rollback()
        raise ReportTimeout(timeout_ms) from None
    finally:
        raw.set_progress_handler(None, PROGRESS_STEPS)


def _totals(rows, query: ReportQuery) -> dict:
    """Totals over all rows: every SQL metric but unique callers is a sum of the rows'."""
    if not query.group_by:
        return dict(rows[0])  # no grouping: the one row is the total
    return {name: sum((row[name] or 0 for row in rows), 0)
            for name in query.sql_metrics + query.side_metrics}


def _filtered(stmt, query: ReportQuery, day):
    f = query.filters
    stmt = stmt.where(day >= query.start, day <= query.end)
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
    return insight_queries.insight_filters(stmt, heard_word=f.get("heard"), tag=f.get("tag"))


def _plain(value):
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def _metrics(row, query: ReportQuery, sessions: int | None) -> dict:
    ext = query.extension or Extension()
    values = {name: row.get(name) or 0
              for name in (*METRICS, *ext.metrics, *ext.side_metrics)}
    calls = values["calls"]
    values["revenue"] = Decimal(values["revenue"] or 0).quantize(Decimal("0.01"))
    values["payout"] = Decimal(values["payout"] or 0).quantize(Decimal("0.01"))
    values["margin"] = values["revenue"] - values["payout"]
    values["qualification_rate"] = round(values["qualified_calls"] / calls, 4) if calls else None
    answered_calls = values["answered_calls"]
    values["average_talk_time"] = (round(values["total_talk_time"] / answered_calls, 1)
                                   if answered_calls else None)
    values["sessions"] = sessions
    values["calls_per_session"] = (round(calls / sessions, 4) if sessions else None)
    ext.derive(values)
    out = {}
    for name in query.metrics:
        value = values[name]
        out[name] = str(value) if isinstance(value, Decimal) else value
    return out


def csv_safe(value) -> str:
    """A cell a spreadsheet shows as text: formula starts neutralised (``spreadsheet``)."""
    return str(safe_cell("" if value is None else str(value)))


def _metric_cell(value):
    """A metric as a number cell (Decimals travel as text in the report: ``-15.00``)."""
    if isinstance(value, str):
        try:
            return Decimal(value)
        except ArithmeticError:
            return value  # not a number: written as (neutralised) text
    return "" if value is None else value


def to_csv(report: dict) -> str:
    """The report as CSV (UTF-8 with a BOM so spreadsheets read it as UTF-8), totals last.

    Written by ``attribution.spreadsheet``, like every CSV the product hands out.
    """
    dims, metrics = report["query"]["group_by"], report["query"]["metrics"]
    totals = report["totals"]
    rows = [dims + metrics]
    rows += [[row["dimensions"][d] for d in dims] + [_metric_cell(row["metrics"][m])
                                                     for m in metrics]
             for row in report["rows"]]
    rows.append(["Total"] + [""] * (len(dims) - 1) + [_metric_cell(totals[m]) for m in metrics])
    return write_csv(rows, bom=True)
