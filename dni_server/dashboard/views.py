"""Dashboard pages: each reads its filters, calls one function in attribution/, renders."""

from __future__ import annotations

import datetime as dt

from flask import Response, abort, current_app, render_template, request
from sqlalchemy import select
from werkzeug.exceptions import HTTPException

from attribution import accuracy_summary, call_log, pool_health, reports, sessions, zones
from attribution.calls import shown_first_touches
from attribution.insight.queries import MAX_TEXT
from attribution.models import ATTRIBUTION_FIELDS, Call, StaticNumber, Visit
from attribution.numbers import autoscale_policies
from dni_server.api import calls as api_calls
from dni_server.api.auth import publisher_scope, scoped, visible
from dni_server.api.reports import limit_report_rate, report_query, run_report
from dni_server.converters import date_arg, parse_id
from dni_server.dashboard import bp, filters  # noqa: F401  (registers the template filters)
from dni_server.dashboard import routing as routing_pages  # (registers its pages too)
from dni_server.errors import ApiError
from dni_server.extensions import db, services
from pools.models import Pool, Site

SECURITY_HEADERS = {
    # All script comes from the bundle in /static; data travels in JSON islands.
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "media-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; "
        "frame-ancestors 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",  # pages hold private data
}
PER_PAGE = 50
CHART_ROWS = 20
CHART_SERIES = 6
DECIMAL_METRICS = filters.MONEY | filters.RATES | filters.RING_SECONDS | {"average_talk_time"}


@bp.after_request
def security_headers(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


@bp.errorhandler(HTTPException)
def http_error(exc: HTTPException):
    return render_template("dashboard/error.html", status=exc.code, name=exc.name,
                           message=exc.description), exc.code or 500


def _retry_header(exc: Exception) -> dict:
    retry_after = getattr(exc, "retry_after", None)
    return {"Retry-After": str(retry_after)} if retry_after is not None else {}


@bp.errorhandler(ApiError)
def api_error(exc: ApiError):
    return render_template("dashboard/error.html", status=exc.status, name="Error",
                           message=exc.message), exc.status, _retry_header(exc)


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
        return date_arg(args, name)
    except ApiError as exc:
        abort(400, exc.message)


# -- the report ----------------------------------------------------------------------------


REPORT_ROWS = 500  # table rows per page (at most DNI_REPORT_MAX_ROWS)


def _report(args: dict, page: reports.Page | None = None):
    """The report for the form: ``group_by`` then optionally ``then_by``, every metric.
    Counts against the token's report rate; one page of rows, totals over all."""
    limit_report_rate()
    args.setdefault("group_by", "source")
    then_by = args.pop("then_by", None)
    if then_by and then_by not in args["group_by"].split(","):
        args["group_by"] += "," + then_by
    args.pop("metrics", None)  # the dashboard always shows every metric
    query = report_query(args)
    if {"buyer", "target"} & set(query.group_by):
        # Grouped by buyer or target, routing's metrics too (buyer revenue, answer rate,
        # ring time); otherwise not, as they join every call's routing log.
        query.metrics = query.all_metrics
    return query, run_report(query, page)


def _report_page(args: dict) -> tuple[int, reports.Page]:
    """The table page asked for (junk or 0: page 1) and the rows it holds."""
    rows = min(REPORT_ROWS, current_app.extensions["dni"].settings.report_max_rows)
    number = parse_id(args.get("page", "")) or 1
    return number, reports.Page(offset=(number - 1) * rows, limit=rows)


def _report_status(exc: Exception) -> int:
    """Bad input answers 400 as ever; too many reports 429, out of time 503."""
    return exc.status if isinstance(exc, ApiError) and exc.status in (429, 503) else 400


def _row_label(row: dict, dims: list[str] | None = None) -> str:
    values = row["dimensions"] if dims is None else {d: row["dimensions"][d] for d in dims}
    return " / ".join("(none)" if v is None else str(v) for v in values.values())


def _chart_value(value):
    """Money arrives as exact text; a chart wants a number (None stays a gap)."""
    return float(value) if isinstance(value, str) else value


def chart_metric(args: dict) -> str:
    return args.get("metric") if args.get("metric") in reports.ALL_METRICS else "calls"


def report_chart(result: dict, metric: str = "calls") -> dict:
    """One metric per row. Over time (day, week, month) in time order; a time dimension with
    a second one draws a series for each of the second's busiest CHART_SERIES values."""
    rows, dims = result["rows"], result["query"]["group_by"]
    times = [d for d in dims if d in reports.TIME_DIMENSIONS][:1]
    spec = {"type": "bar", "metric": metric, "decimals": metric in DECIMAL_METRICS}
    label = filters.metric_label(metric)
    if times and len(dims) == 2:
        other = [d for d in dims if d != times[0]]
        calls, cells = {}, {}
        for row in rows:
            key = _row_label(row, other)
            calls[key] = calls.get(key, 0) + row["metrics"]["calls"]
            cells[(_row_label(row, times), key)] = _chart_value(row["metrics"][metric])
        labels = sorted({_row_label(row, times) for row in rows})
        top = sorted(calls, key=lambda key: (-calls[key], key))[:CHART_SERIES]
        missing = None if spec["decimals"] else 0
        return spec | {"type": "line", "split_by": other[0], "labels": labels, "series": [
            {"label": key, "data": [cells.get((at, key), missing) for at in labels]}
            for key in top]}
    rows = sorted(rows, key=_row_label) if times else rows[:CHART_ROWS]
    return spec | {"labels": [_row_label(r) for r in rows], "series": [
        {"label": label, "data": [_chart_value(r["metrics"][metric]) for r in rows]}]}


@bp.get("/")
def report():
    args = form_args()
    error, status, headers = None, 200, {}
    page, rows = _report_page(args)
    try:
        query, result = _report(dict(args), rows)
    except (ApiError, reports.ReportError) as exc:
        error, status = _report_problem(exc), _report_status(exc)
        headers = _retry_header(exc)
        query, result = None, None
    metric = (args["metric"] if query is not None and args.get("metric") in query.metrics
              else chart_metric(args))
    return render_template(
        "dashboard/report.html", args=args, query=query, result=result, error=error,
        chart=report_chart(result, metric) if result else None, metric=metric, page=page,
        dimensions=list(reports.DIMENSIONS), metrics=reports.ALL_METRICS), status, headers


@bp.get("/report.csv")
def report_csv():
    query, result = _report(form_args())  # the first DNI_REPORT_MAX_ROWS rows
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
        method=method, source=args.get("source"), publisher=publisher_scope(),
        keyword=_text_arg(args, "keyword"), tag=_text_arg(args, "tag"))
    page = parse_id(args.get("page", "")) or 1  # junk, 0 or a page past any offset: page 1
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
    # The journey a page at a time (?journey_page=): junk or 0 is page 1.
    journey_page = parse_id(request.args.get("journey_page", "")) or 1
    journey = sessions.journey(db.session, row.session_id, (journey_page - 1) * PER_PAGE,
                               PER_PAGE) if row.session_id else None
    attribution = [(name, getattr(row, name)) for name in ATTRIBUTION_FIELDS
                   if getattr(row, name) not in (None, "")]
    return render_template("dashboard/call.html", call=row, visit=visit, journey=journey,
                           attribution=attribution, explanation=row.explanation or {},
                           first_touch=shown_first_touches(db.session, [row])[row.id],
                           routing=routing_pages.routing_log(row),
                           insight=insight_timeline(row.insight))


@bp.get("/calls/<int:call_id>/recording")
def call_recording(call_id: int):
    """The call's kept recording for the page's player: the API's own endpoint, answered
    for the signed-in principal (the same visibility as the call; ranges for seeking)."""
    return api_calls.get_recording(str(call_id))


def _text_arg(args: dict, name: str) -> str | None:
    """A short text filter (spoken keyword, tag); longer than any keyword: ignored."""
    value = args.get(name, "").strip()
    return value if 0 < len(value) <= MAX_TEXT else None


TIMELINE_WIDTH = 1000  # the timeline's SVG units across the whole call
LANES = ("caller", "agent", "mixed")


def insight_timeline(insight: dict | None) -> dict | None:
    """A call's analysis laid out for the page: each side's talk as spans and each spotted
    keyword as a marker, in SVG units (0 to TIMELINE_WIDTH across the call)."""
    if not insight or insight.get("status") != "ok" or not insight.get("duration"):
        return None
    duration = float(insight["duration"])

    def x(seconds: float) -> float:
        return round(min(max(seconds, 0.0), duration) / duration * TIMELINE_WIDTH, 1)

    timeline = insight.get("timeline") or {}
    lanes = [{"side": side, "spans": [(x(start), max(round(x(end) - x(start), 1), 0.5))
                                      for start, end in timeline[side]]}
             for side in LANES if side in timeline]
    row = {lane["side"]: n for n, lane in enumerate(lanes)}
    markers = [{"word": hit["word"], "side": hit["side"], "at_seconds": hit["at_seconds"],
                "score": hit.get("score"), "means": hit.get("means"), "x": x(hit["at_seconds"]),
                "lane": row.get(hit["side"], 0)} for hit in insight.get("keywords") or []]
    return {"duration": duration, "lanes": lanes, "markers": markers, "width": TIMELINE_WIDTH,
            "data": insight}


# -- pools and static numbers --------------------------------------------------------------


@bp.get("/pools")
def pools():
    query = select(Pool, Site.name).join(Site, Site.id == Pool.site_id).order_by(Pool.id)
    rows = db.session.execute(scoped(query, Pool.publisher)).all()
    # The worker models each active pool's last week (seconds each): the list only reads it.
    summaries = accuracy_summary.stored(services().redis_admin,
                                        [pool.id for pool, _ in rows if pool.active],
                                        services().pools.prefix)
    return render_template("dashboard/pools.html", pools=rows, summaries=summaries,
                           days=accuracy_summary.RECENT_DAYS,
                           every=accuracy_summary.REFRESH_SECONDS // 60)


@bp.get("/pools/<int:pool_id>")
def pool(pool_id: int):
    row = db.session.get(Pool, pool_id)
    if not visible(row):
        abort(404, "No such pool.")
    args = form_args()
    # Days and hours are the site's, like the report's days.
    local = zones.zone(row.site.timezone if row.site else None)
    end = _date_arg(args, "end") or dt.datetime.now(local).date()
    start = _date_arg(args, "start") or end - dt.timedelta(days=6)
    if end < start:
        abort(400, "end must not be before start")
    start_at = dt.datetime.combine(start, dt.time(), local)
    end_at = dt.datetime.combine(end + dt.timedelta(days=1), dt.time(), local)
    result = pool_health.health(db.session, row, start_at, end_at)
    hours = [dt.datetime.fromisoformat(u["hour"]).astimezone(local) for u in result["utilisation"]]
    chart = {"type": "line", "max": result["numbers"],
             "labels": [f"{hour:%Y-%m-%d %H}h" for hour in hours],
             "series": [{"label": "Peak leases in the hour",
                         "data": [u["peak_leases"] for u in result["utilisation"]]}]}
    busiest = result["recommendation"]["busiest_hour"]
    accuracy = result["accuracy"]
    return render_template("dashboard/pool.html", pool=row, health=result, chart=chart,
                           start=start, end=end, zone=local.key,
                           busiest=busiest and dt.datetime.fromisoformat(busiest),
                           accuracy=accuracy, curve=accuracy_chart(accuracy, result["numbers"]),
                           change=size_change(accuracy, result["numbers"], end_at - start_at),
                           autoscale=autoscale_policies.stored(db.session, row.id),
                           decisions=autoscale_policies.decisions(db.session, row.id, 10))


def accuracy_chart(accuracy: dict, current: int) -> dict | None:
    """The accuracy curve as an inline SVG's geometry (no script needed to draw it)."""
    curve = accuracy["curve"]
    if len(curve) < 2:
        return None
    width, height, left, right, top, bottom = 640, 260, 48, 16, 16, 36
    sizes = [p["numbers"] for p in curve]
    low = min(min(p["expected_accuracy"] for p in curve), accuracy["accuracy_target"])
    floor = max(0.0, int(low * 10) / 10)  # the axis starts at a tenth below the curve

    def x(size: float) -> float:
        return round(left + (size - sizes[0]) / ((sizes[-1] - sizes[0]) or 1)
                     * (width - left - right), 1)

    def y(share: float) -> float:
        return round(top + (1 - share) / ((1 - floor) or 1) * (height - top - bottom), 1)

    points = [{"x": x(p["numbers"]), "y": y(p["expected_accuracy"]), **p} for p in curve]
    marks = [{"kind": kind, "numbers": n, "x": x(n)}
             for kind, n in (("current", current), ("recommended",
                                                    accuracy["recommended_numbers"]))
             if n is not None and sizes[0] <= n <= sizes[-1]]
    ticks = [{"share": share, "y": y(share)} for share in
             [floor + i * (1 - floor) / 4 for i in range(5)]]
    size_ticks = [{"numbers": n, "x": x(n)} for n in
                  sorted({sizes[0], sizes[len(sizes) // 2], sizes[-1]})]
    return {"width": width, "height": height, "left": left, "right": width - right,
            "top": top, "bottom": height - bottom, "points": points, "marks": marks,
            "ticks": ticks, "size_ticks": size_ticks,
            "polyline": " ".join(f"{p['x']},{p['y']}" for p in points),
            "target_y": y(accuracy["accuracy_target"])}


def size_change(accuracy: dict, current: int, span: dt.timedelta) -> str | None:
    """One sentence: what moving to the recommended size would change, in calls a week."""
    recommended = accuracy["recommended_numbers"]
    if recommended is None or accuracy["expected_at_current_size"] is None:
        return None
    at = {p["numbers"]: p["expected_accuracy"] for p in accuracy["curve"]}
    per_week = accuracy["calls"] * dt.timedelta(days=7) / span
    difference = abs(at[recommended] - at[current]) * per_week
    count = round(difference)
    calls = (f"about {count} more call{'s' if count > 1 else ''}" if count
             else "less than one more call")
    target = f"{accuracy['accuracy_target'] * 100:g}%"
    if recommended > current:
        return (f"With {recommended - current} more numbers, {calls} a week would be "
                f"credited to the right visit ({at[recommended]:.1%} of calls instead of "
                f"{at[current]:.1%}).")
    if recommended < current:
        return (f"With {current - recommended} fewer numbers the pool would still credit "
                f"{target} of calls to the right visit; {calls.replace('more', 'fewer')} a "
                f"week would be.")
    return f"The pool has the {recommended} numbers its {target} target needs."


@bp.get("/static-numbers")
def static_numbers():
    query = scoped(select(StaticNumber).order_by(StaticNumber.status, StaticNumber.id),
                   StaticNumber.publisher)
    return render_template("dashboard/static_numbers.html",
                           numbers=db.session.scalars(query).all())
