"""Creating and changing buyers and routing plans: the checks that need the database.

The request's fields are checked by the API's schemas first; here: a plan's buyers exist
and may serve it (a buyer labelled with a publisher serves only that publisher's plans),
and a number may use a plan (a plan labelled with a publisher serves only its numbers).
The caller commits.
"""

from __future__ import annotations

from sqlalchemy import select

from routing.models import Buyer, RoutingPlan

COLUMNS = ("name", "publisher", "paused")


class RoutingError(ValueError):
    """A change that cannot be made; ``fields`` names the fields at fault (a 422)."""

    def __init__(self, message: str, fields: dict):
        super().__init__(message)
        self.fields = fields


def editable(row) -> dict:
    """A buyer's or plan's fields as the API takes them: what a PATCH merges into."""
    return dict(row.spec) | {c: getattr(row, c) for c in COLUMNS if hasattr(row, c)}


def save_buyer(db, data: dict, buyer: Buyer | None = None) -> Buyer:
    """Create a buyer from checked ``data``, or replace ``buyer``'s settings with it."""
    if buyer is None:
        buyer = Buyer()
        db.add(buyer)
    elif data.get("publisher") != buyer.publisher:
        _buyer_still_fits(db, buyer, data.get("publisher"))
    for column in COLUMNS:
        setattr(buyer, column, data.get(column))
    buyer.paused = bool(data.get("paused"))
    buyer.spec = {k: v for k, v in data.items() if k not in COLUMNS and v is not None}
    db.flush()
    return buyer


def save_plan(db, data: dict, plan: RoutingPlan | None = None) -> RoutingPlan:
    """Create a plan from checked ``data``, or replace ``plan``'s settings with it."""
    publisher = data.get("publisher")
    wanted = [b for tier in data["tiers"] for b in tier["buyers"]]
    found = {b.id: b for b in db.scalars(select(Buyer).where(Buyer.id.in_(wanted)))}
    bad = {}
    for i, tier in enumerate(data["tiers"]):
        for b in tier["buyers"]:
            buyer = found.get(b)
            if buyer is None or buyer.publisher not in (None, publisher):
                bad[str(i)] = {"buyers": f"unknown buyer {b}"}
            elif tier["buyers"].count(b) > 1:
                bad[str(i)] = {"buyers": f"buyer {b} is listed twice"}
    if bad:
        raise RoutingError("some tiers name buyers that cannot be used", {"tiers": bad})
    if plan is None:
        plan = RoutingPlan()
        db.add(plan)
    elif publisher != plan.publisher:
        _plan_still_fits(db, plan, publisher)
    plan.name, plan.publisher = data["name"], publisher
    plan.spec = {k: v for k, v in data.items() if k not in ("name", "publisher")
                 and v is not None}
    db.flush()
    return plan


def plan_for_number(db, plan_id: int | None, publisher: str | None) -> int | None:
    """The plan a pool or static number of ``publisher`` may use, or RoutingError."""
    if plan_id is None:
        return None
    plan = db.get(RoutingPlan, plan_id)
    if plan is None or plan.publisher not in (None, publisher):
        raise RoutingError(f"unknown routing plan {plan_id}",
                           {"routing_plan": f"unknown routing plan {plan_id}"})
    return plan.id


def _buyer_still_fits(db, buyer: Buyer, publisher: str | None) -> None:
    for plan in db.scalars(select(RoutingPlan)):
        uses = any(buyer.id in tier["buyers"] for tier in plan.spec.get("tiers", []))
        if uses and publisher not in (None, plan.publisher):
            raise RoutingError(f"plan {plan.id} of another publisher uses this buyer",
                               {"publisher": f"plan {plan.id} uses this buyer"})


def _plan_still_fits(db, plan: RoutingPlan, publisher: str | None) -> None:
    from attribution.models import StaticNumber
    from pools.models import Pool

    if publisher is None:
        return
    for model in (Pool, StaticNumber):
        other = db.scalar(select(model.id).where(model.routing_plan_id == plan.id,
                                                 model.publisher.is_distinct_from(publisher)))
        if other is not None:
            raise RoutingError("numbers of another publisher use this plan",
                               {"publisher": f"a {model.__tablename__[:-1]} of another "
                                "publisher uses this plan"})
