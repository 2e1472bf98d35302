"""Dashboard pages of pay-per-call routing: buyers with today's use of their caps and their
live calls, and routing plans with their IVR steps and tiers. (A call's routing log is on
the call's page.)

Registered on ``dashboard.bp`` by importing this module before the blueprint is registered.
"""

from __future__ import annotations

import datetime as dt

from flask import render_template
from sqlalchemy import select

from dni_server.api.auth import publisher_scope, scoped
from dni_server.dashboard import bp
from dni_server.extensions import db, services
from routing import reports
from routing.capacity import Capacity
from routing.models import Buyer, RoutingPlan


@bp.get("/buyers")
def buyers():
    s = services()
    capacity = Capacity(s.redis_admin, s.settings.redis_prefix)
    rows = reports.buyers_today(db.session, capacity, dt.datetime.now(dt.UTC),
                                publisher=publisher_scope())
    return render_template("dashboard/buyers.html", rows=rows, metrics=reports.CAP_METRICS)


@bp.get("/routing-plans")
def routing_plans():
    plans = db.session.scalars(scoped(select(RoutingPlan).order_by(RoutingPlan.id),
                                      RoutingPlan.publisher)).all()
    wanted = {b for plan in plans for tier in plan.spec.get("tiers", []) for b in tier["buyers"]}
    # A publisher's plan may use the network's buyers: named only where the token sees them.
    query = scoped(select(Buyer.id, Buyer.name).where(Buyer.id.in_(wanted)), Buyer.publisher)
    names = dict(db.session.execute(query).all())
    return render_template("dashboard/routing_plans.html", plans=plans, names=names)


def routing_log(call) -> dict | None:
    """The call's routing log as its page shows it (None: not routed, or not the token's to
    see), with the names of the buyers in it that the token may see."""
    from dni_server.api.calls import shown_routing

    log = shown_routing(call)
    if log is None:
        return None
    ids = {o["buyer"] for o in log["offers"]} | {s["buyer"] for s in log["skipped"]}
    query = scoped(select(Buyer.id, Buyer.name).where(Buyer.id.in_(ids)), Buyer.publisher)
    plan = db.session.get(RoutingPlan, log["plan"]) if log["plan"] else None
    return log | {"names": dict(db.session.execute(query).all()),
                  "plan_name": plan.name if plan else None}


from dni_server.dashboard import routing_forms as _routing_forms  # noqa: E402, F401  (on bp)
