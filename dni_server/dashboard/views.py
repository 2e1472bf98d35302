"""Dashboard pages: each reads its filters, calls one function in attribution/, renders."""

from __future__ import annotations

import datetime as dt

from flask import Response, abort, render_template, request
from sqlalchemy import select
from werkzeug.exceptions import HTTPException

from attribution import call_log, pool_health, reports
from attribution.models import ATTRIBUTION_FIELDS, Call, PageView, StaticNumber, Visit
from dni_server.api.auth import publisher_scope, scoped, visible
from dni_server.api.reports import report_query
from dni_server.dashboard import bp, filters  # noqa: F401  (registers the template filters)
from dni_server.errors import ApiError
from dni_server.extensions import db
from pools.models import Pool, Site

SECURITY_HEADERS = {
    # All script comes from the bundle in /static; data travels in JSON islands.
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",  # pages hold private data
}
PER_PAGE = 50
CHART_ROWS = 20


@bp.after_request
def security_headers(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


@bp.errorhandler(HTTPException)
def http_error(exc: HTTPException):
    return render_template("dashboard/error.html", status=exc.code, name=exc.name,
                           message=exc.description), exc.code or 500


@bp.errorhandler(ApiError)
def api_error(exc: ApiError):
    return render_template("dashboard/error.html", status=exc.status, name="Error",
                           message=exc.message), exc.status


@bp.errorhandler(reports.ReportError)
def report_error(exc: reports.ReportError):
    return render_template("dashboard/error.html", status=400, name="Invalid report",
                           message=_report_problem(exc)), 400


def _report_problem(exc: Exception) -> str:
    if isinstance(exc, reports.ReportError):
        return "; ".join(f"{name}: {text}" for name, text in exc.fields.items())
    return exc.message if isinstance(exc, ApiError) else str(exc)


def form_args() -> dict:
    """The query string without blank fields (an empty select means "any")."""
    return {key: value for key, value in request.args.items() if value.strip()}


def _date_arg(args: dict, name: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat(args[name]) if name in args else None
    except ValueError:
        abort(400, f"{name} must be a date, YYYY-MM-DD")


# -- the report ----------------------------------------------------------------------------


def _report(args: dict):
    args.setdefault("group_by", "source")
    args.pop("metrics", None)  # the dashboard always shows every metric
    query = report_query(args)
    return query, reports.run(db.session, query)


def _row_label(row: dict) -> str:
    return " / ".join("(none)" if v is None else str(v) for v in row["dimensions"].values())


def report_chart(result: dict) -> dict:
    """Calls and qualified calls per row: in time order for days, weeks and months."""
    rows = result["rows"]
    if set(result["query"]["group_by"]) & reports.TIME_DIMENSIONS:
        rows = sorted(rows, key=_row_label)
    else:
        rows = rows[:CHART_ROWS]
    return {"type": "bar", "labels": [_row_label(r) for r in rows], "series": [
        {"label": "Calls", "data": [r["metrics"]["calls"] for r in rows]},
        {"label": "Qualified calls", "data": [r["metrics"]["qualified_calls"] for r in rows]}]}


@bp.get("/")
def report():
    args = form_args()
    error = None
    try:
        query, result = _report(dict(args))
    except (ApiError, reports.ReportError) as exc:
        error = _report_problem(exc)
        query, result = None, None
    return render_template(
        "dashboard/report.html", args=args, query=query, result=result, error=error,
        chart=report_chart(result) if result else None, dimensions=list(reports.DIMENSIONS),
        metrics=reports.ALL_METRICS), 400 if error else 200


@bp.get("/report.csv")
def report_csv():
    query, result = _report(form_args())
    name = f"attribution-{query.start}-{query.end}.csv"
    return Response(reports.to_csv(result), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


# -- calls ---------------------------------------------------------------------------------


@bp.get("/calls")
def calls():
    args = form_args()
    qualified = {"true": True, "false": False}.get(args.get("qualified", ""))
    method = args.get("method") if args.get("method") in call_log.METHODS else None
    wanted = call_log.CallFilter(
        start=_date_arg(args, "start"), end=_date_arg(args, "end"), qualified=qualified,
        method=method, source=args.get("source"), publisher=publisher_scope())
    page = int(args["page"]) if args.get("page", "").isdigit() and int(args["page"]) > 0 else 1
    rows, total = call_log.page_of_calls(db.session, wanted, page, PER_PAGE)
    pages = max(1, (total + PER_PAGE - 1) // PER_PAGE)
    return render_template("dashboard/calls.html", args=args, calls=rows, total=total,
                           page=page, pages=pages, methods=call_log.METHODS)


@bp.get("/calls/<int:call_id>")
def call(call_id: int):
    row = db.session.get(Call, call_id)
    if not visible(row):
        abort(404, "No such call.")
    visit = db.session.get(Visit, row.session_id) if row.session_id else None
    journey = db.session.scalars(select(PageView).where(
        PageView.session_id == row.session_id).order_by(PageView.viewed_at_ms)).all() \
        if row.session_id else []
    attribution = [(name, getattr(row, name)) for name in ATTRIBUTION_FIELDS
                   if getattr(row, name) not in (None, "")]
    return render_template("dashboard/call.html", call=row, visit=visit, journey=journey,
                           attribution=attribution, explanation=row.explanation or {})


# -- pools and static numbers --------------------------------------------------------------


@bp.get("/pools")
def pools():
    query = select(Pool, Site.name).join(Site, Site.id == Pool.site_id).order_by(Pool.id)
    rows = db.session.execute(scoped(query, Pool.publisher)).all()
    return render_template("dashboard/pools.html", pools=rows)


@bp.get("/pools/<int:pool_id>")
def pool(pool_id: int):
    row = db.session.get(Pool, pool_id)
    if not visible(row):
        abort(404, "No such pool.")
    args = form_args()
    today = dt.datetime.now(dt.UTC).date()
    end = _date_arg(args, "end") or today
    start = _date_arg(args, "start") or end - dt.timedelta(days=6)
    if end < start:
        abort(400, "end must not be before start")
    start_at = dt.datetime.combine(start, dt.time(), dt.UTC)
    end_at = dt.datetime.combine(end + dt.timedelta(days=1), dt.time(), dt.UTC)
    result = pool_health.health(db.session, row, start_at, end_at)
    chart = {"type": "line", "max": result["numbers"],
             "labels": [u["hour"][:13].replace("T", " ") + "h" for u in result["utilisation"]],
             "series": [{"label": "Peak leases in the hour",
                         "data": [u["peak_leases"] for u in result["utilisation"]]}]}
    return render_template("dashboard/pool.html", pool=row, health=result, chart=chart,
                           start=start, end=end)


@bp.get("/static-numbers")
def static_numbers():
    query = scoped(select(StaticNumber).order_by(StaticNumber.status, StaticNumber.id),
                   StaticNumber.publisher)
    return render_template("dashboard/static_numbers.html",
                           numbers=db.session.scalars(query).all())
