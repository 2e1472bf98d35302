"""Static numbers (admin API): the rules live in ``attribution.static_numbers``."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request

from attribution import static_numbers
from attribution.models import StaticNumber
from dni_server.api.admin import catalog_call, get_site, limit_arg
from dni_server.api.auth import scoped, token_required, visible
from dni_server.api.body import json_object
from dni_server.api.routing_admin import check_routing_plan, routing_changed
from dni_server.api.schemas import StaticNumberListSchema, StaticNumberSchema
from dni_server.errors import NotFound
from dni_server.extensions import db
from dni_server.openapi import documented

bp = token_required(Blueprint("static_numbers", __name__))
static_schema = StaticNumberSchema()
static_update = StaticNumberSchema(partial=True)
static_list = StaticNumberListSchema()


def get_static(static_id: int) -> StaticNumber:
    row = static_numbers.get_static_number(db.session, static_id)
    if not visible(row):
        raise NotFound(f"unknown static number {static_id}", code="unknown_static_number")
    return row


def _site_id(data: dict) -> dict:
    """``site`` (an id or key, or null) replaced by ``site_id``."""
    site_ref = data.pop("site")
    data["site_id"] = get_site(site_ref).id if site_ref is not None else None
    return data


def _routes_changed() -> None:
    # Call forwarding caches the active static numbers: drop it once the change is committed.
    current_app.extensions["dni"].routes.invalidate()
    routing_changed()  # so does routing, with their plans


@bp.post("/v1/static-numbers")
@documented("Create a static number for print, radio, TV...", StaticNumberSchema, status=201,
            body=StaticNumberSchema, errors=(400, 401, 404, 409, 422))
def create_static_number():
    data = static_schema.load(json_object())
    region = data.pop("region")
    check_routing_plan(data, data.get("publisher"))
    row = catalog_call(static_numbers.create_static_number, db.session, _site_id(data), region)
    _routes_changed()
    return jsonify(static_schema.dump(row)), 201


@bp.get("/v1/static-numbers")
@documented("List static numbers", static_list, errors=(401, 422))
def list_static_numbers():
    query = scoped(static_numbers.static_numbers_query(request.args.get("status"))
                   .limit(limit_arg()), StaticNumber.publisher)
    return jsonify(static_list.dump({"static_numbers": db.session.scalars(query)}))


@bp.get("/v1/static-numbers/<int:static_id>")
@documented("Show a static number", StaticNumberSchema, errors=(401, 404))
def show_static_number(static_id: int):
    return jsonify(static_schema.dump(get_static(static_id)))


@bp.patch("/v1/static-numbers/<int:static_id>")
@documented("Update a static number", StaticNumberSchema, body=StaticNumberSchema,
            errors=(400, 401, 404, 409, 422))
def update_static_number(static_id: int):
    row = get_static(static_id)
    data = static_update.load(json_object())
    region = data.pop("region", "US")
    if "site" in data:
        _site_id(data)
    check_routing_plan(data, data.get("publisher", row.publisher))
    catalog_call(static_numbers.update_static_number, db.session, row, data, region)
    _routes_changed()
    return jsonify(static_schema.dump(row))


@bp.delete("/v1/static-numbers/<int:static_id>")
@documented("Retire a static number", StaticNumberSchema, errors=(401, 404))
def retire_static_number(static_id: int):
    row = catalog_call(static_numbers.retire_static_number, db.session,
                       get_static(static_id))
    _routes_changed()
    return jsonify(static_schema.dump(row))
