"""Calls (generic carrier API, log, detail, disposition): admin only.

Static numbers have their own blueprint, ``dni_server.api.static_numbers``.
"""

from __future__ import annotations

import hashlib
from types import SimpleNamespace

import orjson
from flask import Blueprint, Response, current_app, jsonify, request, send_file
from sqlalchemy import select

from attribution.calls import CallEventIn, ingest, requalify, shown_first_touches
from attribution.insight.jobs import delete_recording, recording_store
from attribution.insight.queries import MAX_TEXT, insight_filters
from attribution.insight.storage import RecordingMissing
from attribution.models import Call
from dni_server.api.admin import get_site, limit_arg
from dni_server.api.auth import scoped, token_required, visible
from dni_server.api.body import json_object
from dni_server.api.schemas import (
    CallDetailSchema,
    CallListSchema,
    CallRequestSchema,
    DispositionSchema,
    With,
)
from dni_server.converters import parse_id
from dni_server.errors import Invalid, NotFound
from dni_server.extensions import db
from dni_server.openapi import documented

bp = token_required(Blueprint("calls", __name__))
call_request = CallRequestSchema()
disposition_request = DispositionSchema()
call_detail_schema = CallDetailSchema()
call_list = CallListSchema()


def call_detail(call: Call) -> dict:
    """A call as the API shows it (only the fields its schema names), with the explanation
    of its match; the first touch from ``shown_first_touches``: never another tenant's visit."""
    first_touch = shown_first_touches(db.session, [call])[call.id]
    return call_detail_schema.dump(With(call, first_touch=first_touch,
                                        routing=shown_routing(call),
                                        recording=recording_state(call)))


def recording_state(call: Call) -> SimpleNamespace:
    return SimpleNamespace(status=call.recording_status, stored=call.recording_path is not None,
                           attempts=call.recording_attempts or 0,
                           next_try_at=call.recording_next_try_at, error=call.recording_error)


def recordings():
    """The recording store (attribution.insight.jobs): the worker's, on the same folder."""
    app = current_app._get_current_object()
    return recording_store(app.extensions["dni"].settings, app.instance_path)


def shown_routing(call: Call) -> dict | None:
    """The call's pay-per-call routing log (routing.calls), for those who may see it: not a
    publisher, unless the plan is its own (buyers and their revenue are the network's)."""
    from dni_server.api.auth import publisher_scope
    from routing.calls import routing_of

    found = routing_of(db.session, call.provider, call.provider_call_id)
    if found is None:
        return None
    log, plan_publisher = found
    scope = publisher_scope()
    return log if scope is None or scope == plan_publisher else None


def text_arg(name: str) -> str | None:
    """A short text filter from the query string (``keyword``, ``tag``), or None."""
    value = request.args.get(name)
    if value is None:
        return None
    if not value.strip() or len(value) > MAX_TEXT:
        raise Invalid(f"{name} must be 1 to {MAX_TEXT} characters", fields={name: value})
    return value.strip()


def get_call(call_ref: str) -> Call:
    call_id = parse_id(call_ref)
    call = db.session.get(Call, call_id) if call_id is not None else None
    if call is None:
        call = db.session.scalar(select(Call).where(Call.provider_call_id == call_ref))
    if not visible(call):
        raise NotFound(f"unknown call {call_ref!r}", code="unknown_call")
    return call


@bp.post("/v1/calls")
@documented("Record a call from any carrier or CDR feed (200 when call_id was seen)",
            call_detail_schema, status=201, body=CallRequestSchema,
            errors=(200, 400, 401, 413, 422))
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
@documented("The calls log", call_list, errors=(401, 404, 422), query=(
    ("keyword", "only calls whose recording's analysis spotted this keyword", {"type": "string"}),
    ("tag", "only calls where a keyword with this tag was spotted", {"type": "string"})))
def list_calls():
    query = scoped(select(Call).order_by(Call.started_at.desc(), Call.id.desc())
                   .limit(limit_arg()), Call.publisher)
    if "site" in request.args:
        query = query.where(Call.site_id == get_site(request.args["site"], lookup_only=True).id)
    if "qualified" in request.args:
        query = query.where(Call.qualified.is_(request.args["qualified"] in ("1", "true")))
    if "review" in request.args:  # fraud review queue (attribution.fraud): ?review=pending
        if request.args["review"] not in ("pending", "approved", "rejected"):
            raise Invalid("review must be pending, approved or rejected",
                          fields={"review": ["unknown review state"]})
        query = query.where(Call.review_state == request.args["review"])
    query = insight_filters(query, heard_word=text_arg("keyword"), tag=text_arg("tag"))
    rows = db.session.scalars(query).all()
    first_touches = shown_first_touches(db.session, rows)
    return jsonify(call_list.dump({"calls": [With(c, first_touch=first_touches[c.id])
                                             for c in rows]}))


@bp.get("/v1/calls/<call_ref>")
@documented("A call with its attribution and the explanation of its match",
            call_detail_schema, errors=(401, 404))
def show_call(call_ref: str):
    return jsonify(call_detail(get_call(call_ref)))


@bp.post("/v1/calls/<call_ref>/disposition")
@documented("Set the advertiser's disposition (sale, spam, ...)", call_detail_schema,
            body=DispositionSchema, errors=(400, 401, 404, 422))
def set_disposition(call_ref: str):
    """The advertiser's verdict on a call (sale, spam, ...), which decides qualification."""
    call = get_call(call_ref)
    data = disposition_request.load(json_object())
    call.disposition, call.disposition_value = data["disposition"], data["value"]
    if call.disposition == "spam":  # the caller joins the site's block list (issue 16)
        from dni_server.api.fraud import spam_disposition

        spam_disposition(call)
    requalify(db.session, call)
    db.session.commit()
    return jsonify(call_detail(call))


@bp.get("/v1/calls/<call_ref>/recording")
@documented("The call's kept recording (WAV), to those who may see the call", None,
            errors=(401, 404), other_content={"audio/wav": {"schema": {
                "type": "string", "format": "binary"}}})
def get_recording(call_ref: str):
    call = get_call(call_ref)  # the same visibility as the call itself
    missing = NotFound("this call has no kept recording", code="no_recording")
    if call.recording_path is None:
        raise missing
    store = recordings()
    headers = {"Cache-Control": "private, no-store"}  # call audio is personal data
    path = store.path(call.recording_path)
    if path is not None:  # a local file: ranges for the dashboard's player
        response = send_file(path, mimetype="audio/wav", conditional=True)
        response.headers.update(headers)
        return response
    try:
        return Response(store.get(call.recording_path), mimetype="audio/wav", headers=headers)
    except RecordingMissing:
        raise missing from None


@bp.delete("/v1/calls/<call_ref>/recording")
@documented("Delete the call's kept recording (its insight stays)", call_detail_schema,
            errors=(401, 403, 404))
def remove_recording(call_ref: str):
    call = get_call(call_ref)
    delete_recording(db.session, recordings(), call)
    db.session.commit()
    return jsonify(call_detail(call))
