"""Pay-per-call in the attribution reports: dimensions and metrics from each call's routing
log (``routing.models.CallRouting``), handed to ``attribution.reports`` as an ``Extension``.

    ReportQuery(group_by=["buyer"], metrics=["calls", "connected_calls", "buyer_revenue",
                "payout", "margin", "answer_rate"], start=..., end=...,
                extension=extension(db, publisher=None))

A call is counted once, under the buyer (and target) that took it: `buyer` and `target`
are empty for a call no buyer took or that was not routed. Its offers are counted apart,
each under the buyer and target it rang: `offers`, `answered_offers` (picked up, whether
then accepted or declined), `answer_rate` and `avg_ring_seconds` (seconds from the offer
to the answer, or to the end of the ringing). So a buyer who answered none of its offers is
a row too, with no calls. `margin` is revenue and buyer revenue less payout.

A publisher's token sees the routing of its own plans only: the network's buyers and their
revenue are not the publisher's to see (as on the call itself).
"""

from __future__ import annotations

from decimal import Decimal

from redis.exceptions import RedisError
from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from attribution.models import Call
from attribution.reports import Dimension, Extension
from routing.models import Buyer, CallRouting, CallRoutingOffer, RoutingPlan

ANSWERED = ("answered", "accepted", "declined")  # the buyer's line picked up
CAP_METRICS = ("calls", "connections", "conversions", "revenue")  # what the buyers page shows


def _joined(publisher: str | None):
    """Calls to their routing log: for a publisher, only the logs of its own plans."""
    on = and_(CallRouting.provider == Call.provider,
              CallRouting.provider_call_id == Call.provider_call_id)
    if publisher is not None:
        own = select(RoutingPlan.id).where(RoutingPlan.publisher == publisher)
        on = and_(on, CallRouting.plan_id.in_(own))
    return on


def extension(db: Session, publisher: str | None = None) -> Extension:
    """The routing dimensions and metrics for a report; ``publisher``: the token's scope."""
    on = _joined(publisher)
    offer = CallRoutingOffer
    own_offer = CallRoutingOffer.routing_id == CallRouting.id

    def join(stmt):
        return stmt.select_from(Call).outerjoin(CallRouting, on)

    def side_join(stmt):
        return stmt.select_from(Call).join(CallRouting, on).join(offer, own_offer)

    def side_alone(stmt):
        """The offers with no call joined: filtered on the log's copies of the call's day,
        site and publisher (``fill_report_columns``)."""
        stmt = stmt.select_from(offer).join(CallRouting, own_offer)
        if publisher is not None:
            own = select(RoutingPlan.id).where(RoutingPlan.publisher == publisher)
            stmt = stmt.where(CallRouting.plan_id.in_(own))
        return stmt

    # Margin counts buyer revenue only where some call was routed: elsewhere it is the
    # same number without the join, so a network that routes nothing pays nothing for it.
    routed = db.scalar(select(CallRouting.id).limit(1)) is not None
    derived = {"answer_rate": ("answered_offers", "offers"),
               "avg_ring_seconds": ("total_ring_seconds", "timed_offers")}
    if routed:
        derived["margin"] = ("revenue", "buyer_revenue", "payout")
    return Extension(
        dimensions={"buyer": Dimension(CallRouting.buyer_id),
                    "target": Dimension(CallRouting.target)},
        metrics={"routed_calls": func.count(CallRouting.id),
                 "connected_calls": func.count(CallRouting.buyer_id),
                 "converted_calls": func.count().filter(CallRouting.converted),
                 "buyer_revenue": func.sum(CallRouting.revenue)},
        derived=derived, derive=_derive, join=join,
        side_dimensions={"buyer": Dimension(offer.buyer_id),
                         "target": Dimension(offer.target)},
        side_metrics={"offers": func.count(),
                      "answered_offers": func.count().filter(offer.outcome.in_(ANSWERED)),
                      "total_ring_seconds": func.sum(offer.ring_seconds),
                      "timed_offers": func.count(offer.ring_seconds)},
        side_join=side_join, side_alone=side_alone,
        side_filters={"day": CallRouting.local_day, "site": CallRouting.site_id,
                      "publisher": CallRouting.publisher})


def _derive(values: dict) -> None:
    """Routing's derived metrics, from the SQL ones in ``values`` (in place)."""
    revenue = Decimal(values["buyer_revenue"] or 0).quantize(Decimal("0.01"))
    values["buyer_revenue"] = revenue
    values["margin"] = values["revenue"] + revenue - values["payout"]
    offers, timed = values["offers"], values["timed_offers"]
    values["answer_rate"] = round(values["answered_offers"] / offers, 4) if offers else None
    values["total_ring_seconds"] = round(float(values["total_ring_seconds"] or 0), 1)
    values["avg_ring_seconds"] = (round(values["total_ring_seconds"] / timed, 1)
                                  if timed else None)


# -- the dashboard's buyers page ------------------------------------------------------------


def buyers_today(db: Session, capacity, now, publisher: str | None = None) -> list[dict]:
    """Each buyer (of ``publisher``'s, or every one) with its live calls and today's counts,
    in its own zone, beside its caps: what ``Capacity.usage`` reads from Redis, one script
    per buyer. ``usage`` is None for a buyer whose counts Redis could not give."""
    query = select(Buyer).order_by(Buyer.id)
    if publisher is not None:
        query = query.where(Buyer.publisher == publisher)
    out = []
    for row in db.scalars(query):
        spec = row.spec or {}
        try:
            usage = capacity.usage(row.id, spec, now) if spec.get("targets") else None
        except RedisError:
            usage = None
        caps = spec.get("caps") or {}
        out.append({"buyer": row, "usage": usage, "caps": caps,
                    "day_caps": {m: (caps.get(m) or {}).get("day") for m in CAP_METRICS},
                    "targets": spec.get("targets") or []})
    return out
