"""Dashboard page: offline conversion deliveries and, for one of them, its attempts log.

Registered on ``dashboard.bp`` by importing this module before the blueprint is registered.
"""

from __future__ import annotations

from flask import abort, render_template, request
from sqlalchemy import select

from attribution.conversions.models import (
    STATUSES,
    ConversionAttempt,
    ConversionDelivery,
    ConversionDestination,
)
from attribution.models import Call
from dni_server.api.auth import scoped, visible
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
    if selected.isdigit():
        chosen = db.session.get(D, int(selected))
        if chosen is None or not visible(db.session.get(Call, chosen.call_id)):
            abort(404, "No such delivery.")
        attempts = db.session.scalars(select(ConversionAttempt).where(
            ConversionAttempt.delivery_id == chosen.id).order_by(ConversionAttempt.id)).all()
    return render_template("dashboard/conversions.html", rows=rows, statuses=STATUSES,
                           status=status, chosen=chosen, attempts=attempts)
