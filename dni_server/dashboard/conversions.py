"""Dashboard page: offline conversion deliveries and, for one of them, its attempts log.

Registered on ``dashboard.bp`` by importing this module before the blueprint is registered.
"""

from __future__ import annotations

from types import SimpleNamespace

from flask import abort, g, render_template, request
from sqlalchemy import select

from attribution.conversions import admin
from attribution.conversions.models import (
    STATUSES,
    ConversionAttempt,
    ConversionDelivery,
    ConversionDestination,
)
from attribution.models import Call
from dni_server.api.auth import scoped, visible
from dni_server.api.conversions import shown_attempt
from dni_server.converters import parse_id
from dni_server.dashboard import bp
from dni_server.extensions import db

PER_PAGE = 100


@bp.get("/conversions")
def conversions():
    D = ConversionDelivery
    status = request.args.get("status", "")
    query = scoped(select(D, ConversionDestination.name, ConversionDestination.kind)
                   .join(Call, Call.id == D.call_id)
                   .join(ConversionDestination, ConversionDestination.id == D.destination_id),
                   Call.publisher)
    if status in STATUSES:
        query = query.where(D.status == status)
    rows = db.session.execute(query.order_by(D.id.desc()).limit(PER_PAGE)).all()
    selected = request.args.get("delivery", "")
    attempts, chosen = [], None
    if selected:
        delivery_id = parse_id(selected)  # ASCII digits within an id's range, else no row
        chosen = db.session.get(D, delivery_id) if delivery_id is not None else None
        if chosen is None or not visible(db.session.get(Call, chosen.call_id)):
            abort(404, "No such delivery.")
        attempts = [_shown(a, g.principal.scope == "admin")
                    for a in admin.attempts_of(db.session, chosen.id)]
    return render_template("dashboard/conversions.html", rows=rows, statuses=STATUSES,
                           status=status, chosen=chosen, attempts=attempts)


def _shown(attempt: ConversionAttempt, full: bool) -> SimpleNamespace:
    """An attempt as the page may show it: bodies for admins only, userinfo masked."""
    view = shown_attempt(attempt, full)
    return SimpleNamespace(at=attempt.at, operation=attempt.operation, outcome=attempt.outcome,
                           detail=attempt.detail, http_status=attempt.http_status,
                           elapsed_ms=attempt.elapsed_ms, **view)
