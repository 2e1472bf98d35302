"""Calls (generic carrier API, log, detail, disposition) and static numbers: admin only."""

from __future__ import annotations

import hashlib

import orjson
from flask import Blueprint, current_app, jsonify, request
from sqlalchemy import select

from attribution.calls import CallEventIn, ingest, requalify, shown_first_touches
from attribution.models import ATTRIBUTION_FIELDS, Call, StaticNumber
from dni_server.api.admin import catalog_call, get_site, limit_arg
from dni_server.api.auth import scoped, token_required, visible
from dni_server.api.body import json_object
from dni_server.api.schemas import CallRequestSchema, DispositionSchema, StaticNumberSchema
from dni_server.converters import parse_id
from dni_server.errors import Invalid, NotFound
from dni_server.extensions import db
from dni_server.timefmt import iso_utc
from pools.models import utcnow
from pools.phones import InvalidNumber, normalize

bp = token_required(Blueprint("calls", __name__))
call_request = CallRequestSchema()
disposition_request = DispositionSchema()
static_schema = StaticNumberSchema()
static_update = StaticNumberSchema(partial=True)


def call_view(call: Call, first_touch: dict | None, detail: bool = False) -> dict:
    """A call as the API shows it; the explanation only on the detail view.

    ``first_touch`` comes from ``shown_first_touches``: never another tenant's visit.
    """
    attribution = {name: getattr(call, name) for name in ATTRIBUTION_FIELDS}
    attribution.update(
        method=call.method, confidence=call.confidence, session_id=call.session_id,
        pool_id=call.pool_id, static_number_id=call.static_number_id, campaign=call.campaign,
        term=call.utm_term, content=call.utm_content, label=call.label,
        publisher=call.publisher, landing_page=call.landing_url)
    out = {
        "id": call.id, "call_id": call.provider_call_id, "provider": call.provider,
        "from": call.from_number, "to": call.to_number, "destination": call.destination,
        "started_at": iso_utc(call.started_at), "answered_at": iso_utc(call.answered_at),
        "ended_at": iso_utc(call.ended_at), "status": call.status,
        "dial_status": call.dial_status, "duration": call.duration,
        "recording_url": call.recording_url, "attribution": attribution,
        "caller": {"number": call.from_number, "valid": call.from_valid,
                   "country": call.caller_country, "region": call.caller_region,
                   "city": call.caller_city, "repeat": call.repeat_caller,
                   "first_touch": first_touch},
        "qualified": call.qualified, "qualification_failures": call.qualification_failures,
        "disposition": call.disposition,
        "disposition_value": str(call.disposition_value) if call.disposition_value is not None
        else None,
        "revenue": str(call.revenue), "payout": str(call.payout),
    }
    if detail:
        out["explanation"] = call.explanation
    return out


def call_detail(call: Call) -> dict:
    return call_view(call, shown_first_touches(db.session, [call])[call.id], detail=True)


def get_call(call_ref: str) -> Call:
    call_id = parse_id(call_ref)
    call = db.session.get(Call, call_id) if call_id is not None else None
    if call is None:
        call = db.session.scalar(select(Call).where(Call.provider_call_id == call_ref))
    if not visible(call):
        raise NotFound(f"unknown call {call_ref!r}", code="unknown_call")
    return call


@bp.post("/v1/calls")
def create_call():
    """A call from any carrier or CDR feed; the same call_id twice is one call."""
    raw = json_object()
    data = call_request.load(raw)
    digest = hashlib.sha256(orjson.dumps(raw, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]
    event = CallEventIn(
        provider="api", provider_call_id=data["call_id"], event_key=f"{data['call_id']}:{digest}",
        kind="api", occurred_at=data["started_at"], from_raw=data["from_"], to_raw=data["to"],
        status=data["status"], duration=data["duration"], recording_url=data["recording_url"],
        caller_country=data["caller_country"], caller_region=data["caller_region"],
        caller_city=data["caller_city"], answered_at=data["started_at"]
        if data["status"] == "completed" and data["duration"] else None, payload=raw)
    existed = db.session.scalar(select(Call.id).where(Call.provider == "api",
                                                      Call.provider_call_id == data["call_id"]))
    call, _ = ingest(db.session, event, pools=current_app.extensions["dni"].pools)
    db.session.commit()
    return jsonify(call_detail(call)), 200 if existed else 201


@bp.get("/v1/calls")
def list_calls():
    query = scoped(select(Call).order_by(Call.started_at.desc(), Call.id.desc())
                   .limit(limit_arg()), Call.publisher)
    if "site" in request.args:
        query = query.where(Call.site_id == get_site(request.args["site"], lookup_only=True).id)
    if "qualified" in request.args:
        query = query.where(Call.qualified.is_(request.args["qualified"] in ("1", "true")))
    rows = db.session.scalars(query).all()
    first_touches = shown_first_touches(db.session, rows)
    return jsonify(calls=[call_view(c, first_touches[c.id]) for c in rows])


@bp.get("/v1/calls/<call_ref>")
def show_call(call_ref: str):
    return jsonify(call_detail(get_call(call_ref)))


@bp.post("/v1/calls/<call_ref>/disposition")
def set_disposition(call_ref: str):
    """The advertiser's verdict on a call (sale, spam, ...), which decides qualification."""
    call = get_call(call_ref)
    data = disposition_request.load(json_object())
    call.disposition, call.disposition_value = data["disposition"], data["value"]
    requalify(db.session, call)
    db.session.commit()
    return jsonify(call_detail(call))


# -- static numbers ------------------------------------------------------------------------


def get_static(static_id: int) -> StaticNumber:
    row = db.session.get(StaticNumber, static_id)
    if not visible(row):
        raise NotFound(f"unknown static number {static_id}", code="unknown_static_number")
    return row


def normalised_numbers(data: dict, region: str) -> dict:
    errors = {}
    for name in ("number", "destination"):
        if name in data:
            try:
                data[name] = normalize(data[name], region)
            except InvalidNumber as exc:
                errors[name] = str(exc)
    if errors:
        raise Invalid("invalid phone numbers", fields=errors)
    return data


def _number_in_use(number: str, exclude_id: int | None = None) -> str | None:
    from pools.models import PoolNumber

    if db.session.scalar(select(PoolNumber.pool_id).where(PoolNumber.number == number,
                                                          PoolNumber.status != "retired")):
        return f"{number} is a pool number"
    other = db.session.scalar(select(StaticNumber.id).where(
        StaticNumber.number == number, StaticNumber.status == "active",
        StaticNumber.id != (exclude_id or 0)))
    return f"{number} is already static number {other}" if other else None


@bp.post("/v1/static-numbers")
def create_static_number():
    data = static_schema.load(json_object())
    data = normalised_numbers(data, data.pop("region"))
    site_ref = data.pop("site")
    if site_ref is not None:
        data["site_id"] = get_site(site_ref).id
    if problem := _number_in_use(data["number"]):
        raise Invalid(problem, fields={"number": problem})
    row = catalog_call(lambda: _add(StaticNumber(**data)))
    current_app.extensions["dni"].routes.invalidate()
    return jsonify(static_schema.dump(row)), 201


def _add(row):
    db.session.add(row)
    db.session.flush()
    return row


@bp.get("/v1/static-numbers")
def list_static_numbers():
    query = scoped(select(StaticNumber).order_by(StaticNumber.id).limit(limit_arg()),
                   StaticNumber.publisher)
    if status := request.args.get("status"):
        query = query.where(StaticNumber.status == status)
    return jsonify(static_numbers=static_schema.dump(db.session.scalars(query), many=True))


@bp.get("/v1/static-numbers/<int:static_id>")
def show_static_number(static_id: int):
    return jsonify(static_schema.dump(get_static(static_id)))


@bp.patch("/v1/static-numbers/<int:static_id>")
def update_static_number(static_id: int):
    row = get_static(static_id)
    data = static_update.load(json_object())
    data = normalised_numbers(data, data.pop("region", "US"))
    if "site" in data:
        site_ref = data.pop("site")
        data["site_id"] = get_site(site_ref).id if site_ref is not None else None
    if "number" in data and (problem := _number_in_use(data["number"], row.id)):
        raise Invalid(problem, fields={"number": problem})
    for name, value in data.items():
        setattr(row, name, value)
    db.session.commit()
    current_app.extensions["dni"].routes.invalidate()
    return jsonify(static_schema.dump(row))


@bp.delete("/v1/static-numbers/<int:static_id>")
def retire_static_number(static_id: int):
    row = get_static(static_id)
    if row.status != "retired":
        row.status, row.retired_at = "retired", utcnow()
        db.session.commit()
    current_app.extensions["dni"].routes.invalidate()
    return jsonify(static_schema.dump(row))
