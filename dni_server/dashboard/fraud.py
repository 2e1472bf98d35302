"""Dashboard page of fraud and call quality (issue 16): the publisher quality report with
its chart (each publisher's held share against the rest of the network's), and the block
list with its CSV import.

The import posts the CSV to the same service the API runs (``attribution.fraud.lists``).
Without script it is one form post and the page shows the per-row report; with
``static/fraud.js`` the file is sent in chunks of rows, so a progress bar moves as each
chunk is stored and the report grows row by row. Only admin tokens import; publishers see
their own quality row and never the block list (it holds other publishers' callers).

Registered on ``dashboard.bp`` by importing this module before the blueprint is registered.
"""

from __future__ import annotations

import datetime as dt

from flask import abort, g, jsonify, render_template, request
from sqlalchemy import select

from attribution.fraud import lists
from attribution.fraud.models import BlockEntry
from attribution.fraud.quality import quality_report
from dni_server.api.admin import get_site
from dni_server.api.auth import publisher_scope
from dni_server.converters import date_arg
from dni_server.dashboard import bp
from dni_server.errors import NotFound
from dni_server.extensions import db
from pools.models import utcnow

ENTRIES_SHOWN = 200
MAX_UPLOAD_BYTES = 2_000_000


@bp.get("/fraud")
def fraud():
    end = date_arg(request.args, "end", utcnow().date())
    start = date_arg(request.args, "start", end - dt.timedelta(days=29))
    if start > end:
        abort(400, "The start must not be after the end.")
    report = quality_report(db.session, dt.datetime.combine(start, dt.time(), dt.UTC),
                            dt.datetime.combine(end + dt.timedelta(days=1), dt.time(), dt.UTC),
                            publisher=publisher_scope())
    return render_template("dashboard/fraud.html", report=report, start=start, end=end,
                           chart=held_chart(report["publishers"]), entries=shown_entries(),
                           can_import=can_import(), imported=None)


@bp.post("/fraud/block-list/import")
def import_block_list():
    """The CSV (a form's file, or ``csv`` text from the script's chunks, ``first_row``
    numbering its first data row) added row by row; JSON for the script, else the page."""
    if not can_import():
        abort(403, "Only admin tokens change the block list.")
    upload = request.files.get("file")
    raw = upload.read(MAX_UPLOAD_BYTES + 1) if upload else request.form.get("csv", "").encode()
    if len(raw) > MAX_UPLOAD_BYTES:
        abort(413, "The file is too large: import at most 2 MB at a time.")
    text = raw.decode("utf-8-sig", "replace")
    first_row = request.form.get("first_row", "2")
    offset = int(first_row) - 2 if first_row.isdigit() and len(first_row) < 9 else 0
    try:
        outcome = lists.import_csv(db.session, text, added_by=who(), site_id_of=site_id_of)
    except ValueError as exc:
        db.session.rollback()
        if wants_json():
            return jsonify({"error": {"code": "invalid", "message": str(exc)}}), 422
        abort(422, str(exc))
    db.session.commit()
    from dni_server.api.fraud import invalidate

    invalidate()  # the pre-ring check reads the new entries at the next call
    for row in outcome["report"]:
        row["row"] += offset
    if wants_json():
        return jsonify(outcome)
    return render_template("dashboard/fraud.html", report=None, start=None, end=None,
                           chart=None, entries=shown_entries(), can_import=True,
                           imported=outcome)


def can_import() -> bool:
    return g.principal.scope == "admin"


def who() -> str:
    found = g.principal
    return f"dashboard:token:{found.token_id}" if found.token_id is not None else "dashboard:admin"


def wants_json() -> bool:
    return request.accept_mimetypes.best == "application/json"


def site_id_of(ref: str) -> int:
    try:
        return get_site(ref).id
    except NotFound:
        raise ValueError(f"unknown site {ref!r}") from None


def shown_entries() -> list[BlockEntry] | None:
    """The newest entries; None for a publisher (the list names other publishers' callers)."""
    if publisher_scope() is not None:
        return None
    return list(db.session.scalars(select(BlockEntry).order_by(BlockEntry.id.desc())
                                   .limit(ENTRIES_SHOWN)))


def held_chart(rows: list[dict]) -> dict | None:
    """Each publisher's held (flagged) share beside the rest of the network's, as an inline
    SVG's geometry: one bar per publisher, a tick at its baseline, significant ones marked."""
    if not rows:
        return None
    width, left, right, top, bar, gap = 640, 140, 56, 8, 18, 10
    rates = [(r["rates"]["flagged"]["rate"] or 0.0, r["rates"]["flagged"]["baseline"] or 0.0)
             for r in rows]
    top_rate = max(max(max(pair) for pair in rates), 0.01)
    scale = (width - left - right) / top_rate
    bars = []
    for i, (row, (rate, baseline)) in enumerate(zip(rows, rates, strict=True)):
        y = top + i * (bar + gap)
        flagged = row["rates"]["flagged"]
        bars.append({"publisher": row["publisher"] or "(network's own)", "y": y,
                     "width": round(rate * scale, 1), "rate": rate, "baseline": baseline,
                     "baseline_x": round(left + baseline * scale, 1), "sure": flagged["sure"],
                     "significant": flagged["significant"], "text_y": y + bar - 5})
    height = top + len(rows) * (bar + gap) + 24
    return {"width": width, "height": height, "left": left, "bar": bar, "bars": bars,
            "axis_y": height - 18, "top_rate": top_rate, "right_x": width - right}
