"""GET /v1/reports/attribution: the report runner over HTTP, as JSON or CSV."""

from __future__ import annotations

import datetime as dt

from flask import Blueprint, Response, jsonify, request

from attribution import reports
from dni_server.api.admin import get_site
from dni_server.api.auth import admin_only, publisher_scope
from dni_server.errors import Invalid
from dni_server.extensions import db

bp = admin_only(Blueprint("reports", __name__))


def _date(name: str, default: dt.date) -> dt.date:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        return dt.date.fromisoformat(raw)
    except ValueError:
        raise Invalid(f"{name} must be a date, YYYY-MM-DD", fields={name: "not a date"}) from None


def _list(name: str, default: list[str]) -> list[str]:
    raw = request.args.get(name)
    return [part.strip() for part in raw.split(",") if part.strip()] if raw else default


def report_query() -> reports.ReportQuery:
    """Build a ReportQuery from the query string (shared with the dashboard)."""
    today = dt.datetime.now(dt.UTC).date()
    end = _date("end", today)
    start = _date("start", end - dt.timedelta(days=29))
    filters: dict = {}
    if "site" in request.args:
        filters["site"] = get_site(request.args["site"], lookup_only=True).id
    if "pool" in request.args:
        if not request.args["pool"].isdigit():
            raise Invalid("pool must be a pool id", fields={"pool": "not an id"})
        filters["pool"] = int(request.args["pool"])
    if "qualified" in request.args:
        value = request.args["qualified"].lower()
        if value not in ("true", "false", "1", "0"):
            raise Invalid("qualified must be true or false", fields={"qualified": value})
        filters["qualified"] = value in ("true", "1")
    if "caller" in request.args:
        filters["caller"] = request.args["caller"]
    if "publisher" in request.args:
        filters["publisher"] = request.args["publisher"]
    if (scope := publisher_scope()) is not None:
        filters["publisher"] = scope  # a publisher sees its own calls, whatever it asks
    return reports.ReportQuery(start=start, end=end,
                               group_by=_list("group_by", ["source", "medium"]),
                               metrics=_list("metrics", list(reports.ALL_METRICS)),
                               filters=filters)


@bp.get("/v1/reports/attribution")
def attribution_report():
    query = report_query()
    fmt = request.args.get("format", "json")
    if fmt not in ("json", "csv"):
        raise Invalid("format must be json or csv", fields={"format": fmt})
    try:
        result = reports.run(db.session, query)
    except reports.ReportError as exc:
        raise Invalid(str(exc), fields=exc.fields) from None
    if fmt == "csv":
        name = f"attribution-{query.start}-{query.end}.csv"
        return Response(reports.to_csv(result), mimetype="text/csv",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})
    return jsonify(result)
