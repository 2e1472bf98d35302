"""GET /v1/reports/attribution: the report runner over HTTP, as JSON or CSV.

A report is bounded (issue 11, F7): a page of at most DNI_REPORT_MAX_ROWS rows (``limit``
and ``offset``; the answer's ``page.next`` links the next one), at most
DNI_REPORT_MAX_DAY_DIMENSIONS days x dimensions (422), DNI_REPORT_TIMEOUT_MS of SQL per
statement (503), and DNI_REPORT_RATE reports per token (429 with Retry-After).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import sys
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlencode

import redis
from flask import Blueprint, Response, current_app, g, jsonify, request

from attribution import reports
from dni_server.api.admin import get_site
from dni_server.api.auth import publisher_scope, token_required
from dni_server.api.schemas import ReportSchema
from dni_server.converters import count_arg, date_arg, id_arg
from dni_server.errors import ApiError, Invalid
from dni_server.extensions import db
from dni_server.openapi import documented
from pools.keys import report_rate_key
from pools.windows import count_in_window
from routing import reports as routing_reports

log = logging.getLogger(__name__)
MAX_COUNT = 999_999_999  # what the query string may say; the report bounds the page
bp = token_required(Blueprint("reports", __name__))
report_schema = ReportSchema()


def _date(args: Mapping, name: str, default: dt.date) -> dt.date:
    return date_arg(args, name, default)


def _list(args: Mapping, name: str, default: list[str]) -> list[str]:
    raw = args.get(name)
    return [part.strip() for part in raw.split(",") if part.strip()] if raw else default


def report_query(args: Mapping | None = None) -> reports.ReportQuery:
    """Build a ReportQuery from the query string, or ``args`` (the dashboard's cleaned form)."""
    args = request.args if args is None else args
    today = dt.datetime.now(dt.UTC).date()
    end = _date(args, "end", today)
    start = _date(args, "start", end - dt.timedelta(days=29))
    filters: dict = {}
    if "site" in args:
        filters["site"] = get_site(args["site"], lookup_only=True).id
    if "pool" in args:
        filters["pool"] = id_arg(args, "pool")
    if "qualified" in args:
        value = args["qualified"].lower()
        if value not in ("true", "false", "1", "0"):
            raise Invalid("qualified must be true or false", fields={"qualified": value})
        filters["qualified"] = value in ("true", "1")
    if "caller" in args:
        filters["caller"] = args["caller"]
    if "publisher" in args:
        filters["publisher"] = args["publisher"]
    for name in reports.INSIGHT_FILTERS & set(args):  # conversation insight: heard, tag
        filters[name] = args[name]
    if (scope := publisher_scope()) is not None:
        filters["publisher"] = scope  # a publisher sees its own calls, whatever it asks
    # Pay-per-call: by buyer and target, and what buyers paid (of its own plans, for a
    # publisher); asked for by name, the default metrics stay the attribution ones.
    routing = routing_reports.extension(db.session, publisher=scope)
    return reports.ReportQuery(start=start, end=end,
                               group_by=_list(args, "group_by", ["source", "medium"]),
                               metrics=_list(args, "metrics", list(reports.ALL_METRICS)),
                               filters=filters, extension=routing)


def report_page(args: Mapping | None = None) -> reports.Page:
    """``offset`` and ``limit`` from the query string (or ``args``)."""
    args = request.args if args is None else args
    # Only the digits are checked here: the page's bound is the report's (ReportError).
    return reports.Page(offset=count_arg(args, "offset", 0, 0, MAX_COUNT),
                        limit=count_arg(args, "limit", None, 0, MAX_COUNT))


def report_limits() -> reports.Limits:
    settings = current_app.extensions["dni"].settings
    return reports.Limits(max_rows=settings.report_max_rows,
                          max_day_dimensions=settings.report_max_day_dimensions,
                          timeout_ms=settings.report_timeout_ms)


# Reports run on threads of their own, at most REPORT_THREADS at once per worker process
# and at a lower CPU priority (Linux): the request threads gunicorn.conf.py gives each
# worker stay free, and get the CPU first, for heartbeats and call webhooks.
REPORT_THREADS = 2
REPORT_NICENESS = 10
_report_slots = threading.BoundedSemaphore(REPORT_THREADS)
_report_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _lower_priority() -> None:
    if sys.platform.startswith("linux"):  # elsewhere the call would renice the process
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), REPORT_NICENESS)


def _pool() -> ThreadPoolExecutor:
    """This process's report threads, made on first use (so after gunicorn forks)."""
    global _report_pool
    with _pool_lock:
        if _report_pool is None:
            _report_pool = ThreadPoolExecutor(REPORT_THREADS, "report",
                                              initializer=_lower_priority)
        return _report_pool


def _run_with_own_session(app, query, limits, page) -> dict:
    with app.app_context():  # its own database session, removed after
        try:
            return reports.run(db.session, query, limits, page)
        finally:
            db.session.remove()


def run_report(query: reports.ReportQuery, page: reports.Page | None = None) -> dict:
    """Run a report within the configured limits (ReportError for a query or page over
    them); running out of time is a 503 naming the limit, as is a worker already running
    REPORT_THREADS reports."""
    if not _report_slots.acquire(blocking=False):
        raise ApiError("this worker is running as many reports as it may; try again shortly",
                       status=503, code="reports_busy", fields={"reports_at_once": REPORT_THREADS},
                       retry_after=2)
    try:
        app = current_app._get_current_object()
        return _pool().submit(_run_with_own_session, app, query, report_limits(), page).result()
    except reports.ReportTimeout as exc:
        raise ApiError(
            f"the report ran past DNI_REPORT_TIMEOUT_MS ({exc.timeout_ms} ms) and was "
            "stopped: shorten the range, group by fewer dimensions or filter more",
            status=503, code="report_timeout",
            fields={"timeout_ms": exc.timeout_ms}) from None
    finally:
        _report_slots.release()


def _rate_key() -> str:
    """Who the rate limit counts: the token's id, or a hash of the bootstrap admin token."""
    settings = current_app.extensions["dni"].settings
    token_id = g.principal.token_id
    if token_id is not None:
        who = f"token:{token_id}"
    else:
        who = "bootstrap:" + hashlib.sha256((settings.admin_token or "").encode()).hexdigest()[:16]
    return report_rate_key(who, settings.redis_prefix)


def limit_report_rate() -> None:
    """Count one report (or export) against the caller's token; 429 past DNI_REPORT_RATE.

    Shared by every worker through Redis. When Redis cannot answer, the report runs: the
    statement timeout still bounds it."""
    services = current_app.extensions["dni"]
    count, seconds = services.settings.report_rate
    if not count:
        return
    try:
        used, ttl = count_in_window(services.redis_admin, _rate_key(), seconds)
    except redis.RedisError as exc:
        log.warning("report rate limit skipped: redis unavailable (%s)", exc.__class__.__name__)
        return
    if used <= count:
        return
    retry_after = max(1, ttl)
    raise ApiError(f"at most {count} reports per {seconds} s per token (DNI_REPORT_RATE); "
                   f"try again in {retry_after} s", status=429, code="rate_limited",
                   fields={"limit": f"{count}/{seconds}"}, retry_after=retry_after)


def next_page_url(result: dict) -> str | None:
    """The URL of the page after ``result``'s, or None on the last page."""
    next_offset = result["page"]["next_offset"]
    if next_offset is None:
        return None
    args = request.args.to_dict() | {"offset": next_offset, "limit": result["page"]["limit"]}
    return request.base_url + "?" + urlencode(args)


REPORT_PARAMETERS = tuple((name, text, {"type": "string"}) for name, text in (
    ("start", "first local day, YYYY-MM-DD (default: 29 days before end)"),
    ("end", "last local day, YYYY-MM-DD (default: today)"),
    ("group_by", "comma-separated dimensions, e.g. source,medium, day, or buyer,target"),
    ("metrics", "comma-separated metrics (default: all but the pay-per-call ones, "
                "connected_calls, converted_calls, buyer_revenue, offers, answer_rate, "
                "avg_ring_seconds..., which are asked for by name)"),
    ("site", "site id or key"), ("pool", "pool id"), ("qualified", "true or false"),
    ("caller", "first_time or repeat"), ("publisher", "publisher label"),
    ("heard", "a keyword spotted in the call's recording"), ("tag", "a spotted keyword's tag"),
    ("format", "json (default) or csv"),
    ("limit", "rows per page (default and maximum: DNI_REPORT_MAX_ROWS)"),
    ("offset", "rows to skip (page.next_offset of the page before)"),
))


@bp.get("/v1/reports/attribution")
@documented("Source-attribution report (JSON rows of dimensions and metrics, or CSV)",
            report_schema, query=REPORT_PARAMETERS, errors=(
                401, (404, "unknown site"),
                (422, "a bad parameter, or over DNI_REPORT_MAX_ROWS per page or "
                      "DNI_REPORT_MAX_DAY_DIMENSIONS"),
                (429, "over DNI_REPORT_RATE for this token (see Retry-After)"),
                (503, "ran past DNI_REPORT_TIMEOUT_MS (report_timeout), the worker runs its "
                      "most reports at once (reports_busy), or the database is away")),
            other_content={"text/csv": {"schema": {"type": "string"}}})
def attribution_report():
    limit_report_rate()
    query = report_query()
    page = report_page()
    fmt = request.args.get("format", "json")
    if fmt not in ("json", "csv"):
        raise Invalid("format must be json or csv", fields={"format": fmt})
    try:
        result = run_report(query, page)
    except reports.ReportError as exc:
        raise Invalid(str(exc), fields=exc.fields) from None
    next_url = next_page_url(result)
    if fmt == "csv":
        name = f"attribution-{query.start}-{query.end}.csv"
        headers = {"Content-Disposition": f'attachment; filename="{name}"'}
        if next_url:
            headers["Link"] = f'<{next_url}>; rel="next"'
        return Response(reports.to_csv(result), mimetype="text/csv", headers=headers)
    result["page"]["next"] = next_url
    return jsonify(report_schema.dump(result))
