"""Dashboard page of web callbacks: the newest, with their status and attempts.

Registered on ``dashboard.bp`` by importing this module before the blueprint is registered.
"""

from __future__ import annotations

from flask import render_template, request
from sqlalchemy import select

from attribution.callbacks.models import STATUSES, Callback
from dni_server.api.auth import publisher_scope
from dni_server.dashboard import bp
from dni_server.extensions import db
from pools.models import Pool, Site

PER_PAGE = 100


@bp.get("/callbacks")
def callbacks():
    """Newest first, optionally one status; a publisher sees its own pools' callbacks."""
    status = request.args.get("status", "")
    query = (select(Callback, Site.name).join(Site, Site.id == Callback.site_id)
             .order_by(Callback.created_at.desc(), Callback.id).limit(PER_PAGE))
    if status in STATUSES:
        query = query.where(Callback.status == status)
    scope = publisher_scope()
    if scope is not None:
        query = query.join(Pool, Pool.id == Callback.pool_id).where(Pool.publisher == scope)
    rows = db.session.execute(query).all()
    return render_template("dashboard/callbacks.html", rows=rows, statuses=STATUSES,
                           status=status)
