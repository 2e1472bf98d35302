"""Dashboard page: outgoing webhook subscriptions, their recent deliveries and, for one
delivery, its attempts log.

Registered on ``dashboard.bp`` by importing this module before the blueprint is registered.
"""

from __future__ import annotations

from flask import abort, g, render_template, request
from sqlalchemy import select

from attribution.conversions.outbound import masked_url
from attribution.webhooks import subscriptions as service
from attribution.webhooks.models import STATUSES, WebhookDelivery, WebhookSubscription
from dni_server.api.auth import scoped, visible
from dni_server.api.webhook_subscriptions import shown_attempt
from dni_server.converters import parse_id
from dni_server.dashboard import bp
from dni_server.extensions import db

PER_PAGE = 100


@bp.get("/webhooks")
def webhooks():
    S, D = WebhookSubscription, WebhookDelivery
    subscriptions = list(db.session.scalars(scoped(select(S), S.publisher).order_by(S.id)))
    shown_ids = [s.id for s in subscriptions]
    status = request.args.get("status", "")
    query = select(D).where(D.subscription_id.in_(shown_ids))
    if status in STATUSES:
        query = query.where(D.status == status)
    deliveries = list(db.session.scalars(query.order_by(D.id.desc()).limit(PER_PAGE)))
    chosen, attempts = None, []
    if selected := request.args.get("delivery", ""):
        delivery_id = parse_id(selected)  # ASCII digits within an id's range, else no row
        chosen = db.session.get(D, delivery_id) if delivery_id is not None else None
        if chosen is None or not visible(db.session.get(S, chosen.subscription_id)):
            abort(404, "No such delivery.")
        full = g.principal.scope == "admin"
        attempts = [shown_attempt(a, full)
                    for a in service.attempts_of(db.session, [chosen.id])[chosen.id]]
    urls = {s.id: masked_url(s.url) for s in subscriptions}
    return render_template("dashboard/webhooks.html", subscriptions=subscriptions, urls=urls,
                           deliveries=deliveries, statuses=STATUSES, status=status,
                           chosen=chosen, attempts=attempts)
