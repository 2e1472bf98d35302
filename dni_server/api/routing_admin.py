"""The admin API of pay-per-call routing: buyers and routing plans (``routing.admin``)."""

from __future__ import annotations

import json

from flask import Blueprint, jsonify, request
from sqlalchemy import select

from dni_server.api.auth import scoped, token_required, visible
from dni_server.api.body import json_object
from dni_server.api.routing_schemas import (
    BuyerListSchema,
    BuyerOutSchema,
    BuyerSchema,
    RoutingPlanListSchema,
    RoutingPlanOutSchema,
    RoutingPlanSchema,
)
from dni_server.converters import count_arg
from dni_server.errors import Invalid, NotFound
from dni_server.extensions import db
from dni_server.openapi import documented
from routing import admin
from routing.models import Buyer, RoutingPlan

bp = token_required(Blueprint("routing_admin", __name__))
buyer_in, buyer_patch, buyer_out, buyer_list = (BuyerSchema(), BuyerSchema(partial=True),
                                                BuyerOutSchema(), BuyerListSchema())
plan_in, plan_patch, plan_out, plan_list = (RoutingPlanSchema(), RoutingPlanSchema(partial=True),
                                            RoutingPlanOutSchema(), RoutingPlanListSchema())


def limit_arg() -> int:
    return count_arg(request.args, "limit", 100, 1, 1000)


def changed(fn, *args):
    """Run a routing change and commit it; its refusals are 422s naming the fields."""
    try:
        row = fn(db.session, *args)
    except admin.RoutingError as exc:
        db.session.rollback()
        raise Invalid(str(exc), fields=exc.fields) from None
    db.session.commit()
    from dni_server.api.routing_calls import routing_directory

    routing_directory().invalidate()
    return row


def get_buyer(buyer_id: int) -> Buyer:
    row = db.session.get(Buyer, buyer_id)
    if not visible(row):
        raise NotFound(f"unknown buyer {buyer_id}", code="unknown_buyer")
    return row


def get_plan(plan_id: int) -> RoutingPlan:
    row = db.session.get(RoutingPlan, plan_id)
    if not visible(row):
        raise NotFound(f"unknown routing plan {plan_id}", code="unknown_routing_plan")
    return row


# -- buyers ------------------------------------------------------------------------------------


@bp.post("/v1/buyers")
@documented("Create a buyer (pay-per-call)", buyer_out, status=201, body=BuyerSchema,
            errors=(400, 401, 403, 422))
def create_buyer():
    row = changed(admin.save_buyer, buyer_in.load(json_object()))
    return jsonify(buyer_out.dump(row)), 201


@bp.get("/v1/buyers")
@documented("List buyers", buyer_list, errors=(401, 422))
def list_buyers():
    query = scoped(select(Buyer).order_by(Buyer.id).limit(limit_arg()), Buyer.publisher)
    return jsonify(buyer_list.dump({"buyers": db.session.scalars(query)}))


@bp.get("/v1/buyers/<int:buyer_id>")
@documented("Show a buyer", buyer_out, errors=(401, 404))
def show_buyer(buyer_id: int):
    return jsonify(buyer_out.dump(get_buyer(buyer_id)))


@bp.patch("/v1/buyers/<int:buyer_id>")
@documented("Change a buyer (the fields given; the whole is checked again)", buyer_out,
            body=BuyerSchema, errors=(400, 401, 403, 404, 422))
def update_buyer(buyer_id: int):
    row = get_buyer(buyer_id)
    changes = buyer_patch.load(json_object())
    # Checked whole: a change may break a rule that spans fields (accept and conversion).
    merged = buyer_in.load(_raw(admin.editable(row) | _given(changes)))
    return jsonify(buyer_out.dump(changed(admin.save_buyer, merged, row)))


# -- routing plans -----------------------------------------------------------------------------


@bp.post("/v1/routing-plans")
@documented("Create a routing plan (IVR, tiers of buyers, fallback)", plan_out, status=201,
            body=RoutingPlanSchema, errors=(400, 401, 403, 422))
def create_plan():
    row = changed(admin.save_plan, plan_in.load(json_object()))
    return jsonify(plan_out.dump(row)), 201


@bp.get("/v1/routing-plans")
@documented("List routing plans", plan_list, errors=(401, 422))
def list_plans():
    query = scoped(select(RoutingPlan).order_by(RoutingPlan.id).limit(limit_arg()),
                   RoutingPlan.publisher)
    return jsonify(plan_list.dump({"routing_plans": db.session.scalars(query)}))


@bp.get("/v1/routing-plans/<int:plan_id>")
@documented("Show a routing plan", plan_out, errors=(401, 404))
def show_plan(plan_id: int):
    return jsonify(plan_out.dump(get_plan(plan_id)))


@bp.patch("/v1/routing-plans/<int:plan_id>")
@documented("Change a routing plan (the fields given; the whole is checked again)", plan_out,
            body=RoutingPlanSchema, errors=(400, 401, 403, 404, 422))
def update_plan(plan_id: int):
    row = get_plan(plan_id)
    changes = plan_patch.load(json_object())
    merged = plan_in.load(_raw(admin.editable(row) | _given(changes)))
    return jsonify(plan_out.dump(changed(admin.save_plan, merged, row)))


def _given(changes: dict) -> dict:
    """The PATCH's fields (checked once), in JSON form; null clears an optional field."""
    return json.loads(json.dumps(changes, default=str))


def _raw(data: dict) -> dict:
    """Stored settings merged with a PATCH, in JSON form, to be checked whole."""
    return {k: v for k, v in json.loads(json.dumps(data, default=str)).items()
            if v is not None or k == "publisher"}


def check_routing_plan(data: dict, publisher: str | None) -> bool:
    """For a pool or static number being saved: 422 unless its ``routing_plan`` (if given)
    may serve its publisher's calls. True when the field was given (the routing map is
    then read again once the change is committed: ``routing_changed``)."""
    if "routing_plan_id" not in data:
        return False
    try:
        admin.plan_for_number(db.session, data["routing_plan_id"], publisher)
    except admin.RoutingError as exc:
        raise Invalid(str(exc), fields=exc.fields) from None
    return True


def routing_changed() -> None:
    """Read numbers' plans (the forwarding map), plans and buyers again on the next call."""
    from dni_server.api.routing_calls import routing_directory
    from dni_server.extensions import services

    services().routes.invalidate()
    routing_directory().invalidate()
