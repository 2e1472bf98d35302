"""GET /v1/reports/attribution: the report runner over HTTP, as JSON or CSV."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from flask import Blueprint, Response, jsonify, request

from attribution import reports
from dni_server.api.admin import get_site
from dni_server.api.auth import publisher_scope, token_required
from dni_server.converters import parse_id
from dni_server.errors import Invalid
from dni_server.extensions import db

bp = token_required(Blueprint("reports", __name__))


def _date(args: Mapping, name: str, default: dt.date) -> dt.date:
    raw = args.get(name)
    if raw is None:
        return default
    try:
        return dt.date.fromisoformat(raw)
    except ValueError:
        raise Invalid(f"{name} must be a date, YYYY-MM-DD", fields={name: "not a date"}) from None


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
        pool_id = parse_id(args["pool"])
        if pool_id is None:
            raise Invalid("pool must be a pool id", fields={"pool": "not an id"})
        filters["pool"] = pool_id
    if "qualified" in args:
        value = args["qualified"].lower()
        if value not in ("true", "false", "1", "0"):
            raise Invalid("qualified must be true or false", fields={"qualified": value})
        filters["qualified"] = value in ("true", "1")
    if "caller" in args:
        filters["caller"] = args["caller"]
    if "publisher" in args:
        filters["publisher"] = args["publisher"]
    if (scope := publisher_scope()) is not None:
        filters["publisher"] = scope  # a publisher sees its own calls, whatever it asks
    return reports.ReportQuery(start=start, end=end,
                               group_by=_list(args, "group_by", ["source", "medium"]),
                               metrics=_list(args, "metrics", list(reports.ALL_METRICS)),
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
