"""Offline conversions (admin API): destinations, rules, the delivery log, file exports.

Credentials are write-only and encrypted at rest: every answer shows them masked (``****``
and at most the last four characters). A PATCH may send a masked value back unchanged to
keep the stored one, except when it also changes where requests go (a URL in the config):
then every credential must be given again, so a stored secret cannot be redirected.
URLs are shown with any userinfo masked; raw request and response bodies of the delivery
log are shown to admin tokens only.

The rules themselves live in ``attribution.conversions.admin`` (shared with the config file
and the CLI): these views parse the request, call it, commit, and show the result.
"""

from __future__ import annotations

import datetime as dt

from flask import Blueprint, Response, current_app, g, jsonify, request
from marshmallow import fields, validate
from sqlalchemy.exc import IntegrityError

from attribution.conversions import admin as service
from attribution.conversions import exports
from attribution.conversions.admin import (
    ActionSettings,
    ConversionsError,
    RuleSettings,
    WholeRule,
    url_like,
)
from attribution.conversions.credentials import CredentialBox, MissingKey
from attribution.conversions.destination import mask
from attribution.conversions.models import (
    DESTINATION_KINDS,
    ConversionAttempt,
    ConversionDelivery,
    ConversionDestination,
    ConversionRule,
)
from attribution.conversions.outbound import masked_url
from attribution.conversions.registry import build_destination
from attribution.models import Call
from dni_server.api.admin import get_site, limit_arg
from dni_server.api.auth import deny_publishers, scoped, token_required, visible
from dni_server.api.body import json_object
from dni_server.api.reports import limit_report_rate
from dni_server.api.schemas import (
    ConversionAttemptListSchema,
    ConversionAttemptSchema,
    ConversionDeliveryListSchema,
    ConversionDeliverySchema,
    ConversionDestinationListSchema,
    ConversionDestinationSchema,
    ConversionRuleListSchema,
    ConversionRuleSchema,
    Loose,
    With,
)
from dni_server.converters import date_arg, id_arg
from dni_server.errors import ApiError, Conflict, Invalid, NotFound
from dni_server.extensions import db
from dni_server.openapi import documented

bp = token_required(Blueprint("conversions", __name__))
SECRET_WORDS = ("token", "secret", "password", "key", "credential")


# -- schemas ---------------------------------------------------------------------------------


class DestinationSchema(Loose):
    site = fields.Raw(required=True)
    name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    kind = fields.String(required=True, validate=validate.OneOf(DESTINATION_KINDS))
    config = fields.Dict(load_default=dict)
    enabled = fields.Boolean(load_default=True)


class DestinationUpdateSchema(Loose):
    name = fields.String(validate=validate.Length(min=1, max=100))
    config = fields.Dict()
    enabled = fields.Boolean()


class ActionSchema(ActionSettings):
    destination = fields.Integer(required=True, strict=True)


class RuleUpdateSchema(RuleSettings):
    """A rule's settings are checked by the service's one validator (``RuleSettings``);
    the API adds its own shape of the actions."""

    actions = fields.List(fields.Nested(ActionSchema), validate=validate.Length(max=20))


class RuleSchema(RuleUpdateSchema, WholeRule):
    site = fields.Raw(required=True)
    pool = fields.Integer(strict=True, load_default=None, allow_none=True)


destination_create, destination_update = DestinationSchema(), DestinationUpdateSchema()
rule_create, rule_update = RuleSchema(), RuleUpdateSchema()


# -- views of rows ---------------------------------------------------------------------------


def credential_box() -> CredentialBox:
    return CredentialBox(current_app.extensions["dni"].settings.credentials_keys)


def plain_config(row: ConversionDestination) -> dict:
    """The stored config with its credentials decrypted (never to be shown as it is)."""
    try:
        return credential_box().open(row.config)
    except ValueError:  # a key was removed: show what can be shown, masked
        return dict(row.config or {})


def masked_config(row: ConversionDestination) -> dict:
    """The config with every credential masked: by key name, and any value the destination
    itself treats as secret; URLs with any userinfo masked."""
    config = plain_config(row)
    secrets_seen: list[str] = []
    try:
        secrets_seen = list(build_destination(row.kind, config)._secrets)
    except ValueError:
        pass
    out = {}
    for name, value in config.items():
        if isinstance(value, str) and url_like(name, value):
            value = masked_url(value)
        elif isinstance(value, str) and (any(w in name.lower() for w in SECRET_WORDS)
                                         or value in secrets_seen):
            value = mask(value)
        out[name] = value
    return out


# Answers are dumped with the schemas /openapi.json documents (dni_server.api.schemas).
CREDENTIALS_KEY_MISSING = (409, "a conflict, or credentials_key_missing: no "
                                "DNI_CREDENTIALS_KEYS to encrypt the credentials with")
destination_schema = ConversionDestinationSchema()
rule_schema = ConversionRuleSchema()
delivery_schema = ConversionDeliverySchema()
attempt_schema = ConversionAttemptSchema()


def destination_view(row: ConversionDestination) -> dict:
    return destination_schema.dump(With(row, config=masked_config(row)))


def rule_view(row: ConversionRule) -> dict:
    return rule_schema.dump(With(row, actions=[{"destination": int(ref), **action}
                                               for ref, action in (row.actions or {}).items()]))


def delivery_view(row: ConversionDelivery) -> dict:
    return delivery_schema.dump(row)


def attempt_view(row: ConversionAttempt, full: bool) -> dict:
    """One exchange of the log; ``full`` (admins) adds the request and response bodies."""
    return attempt_schema.dump(With(row, **shown_attempt(row, full)))


def shown_attempt(row: ConversionAttempt, full: bool) -> dict:
    """The request and response of an attempt as they may be shown.

    A response body is whatever the far end answered; only admins (who chose the
    destination) see it. Others get the status and a short error code.
    """
    request_part = dict(row.request or {})
    response_part = dict(row.response or {})
    if isinstance(request_part.get("url"), str):
        request_part["url"] = masked_url(request_part["url"])
    if full:
        return {"request": request_part, "response": response_part}
    error = response_part.get("error")
    return {"request": {"method": request_part.get("method"), "url": request_part.get("url")},
            "response": {"status": response_part.get("status"),
                         "error": error.split(":", 1)[0][:60] if isinstance(error, str) else None}}


def sees_bodies() -> bool:
    return g.principal.scope == "admin"


# -- the service's errors, as the API answers them -------------------------------------------


def call_service(fn, *args, commit: bool = False, **kwargs):
    """Run a service function (and commit its change: one commit, here at the edge),
    turning its domain errors into the one error shape."""
    try:
        result = fn(*args, **kwargs)
        if commit:
            db.session.commit()
        return result
    except ConversionsError as exc:
        db.session.rollback()
        raise ApiError(exc.message, fields=exc.fields, status=exc.status, code=exc.code) \
            from None
    except MissingKey as exc:  # no key to encrypt credentials with: nothing is stored
        db.session.rollback()
        raise Conflict(str(exc), code="credentials_key_missing") from None
    except IntegrityError:  # a concurrent request took the same name first
        db.session.rollback()
        raise Conflict("that conflicts with an existing record") from None


def changed(fn, *args, **kwargs):
    """Run a service change and commit it."""
    return call_service(fn, *args, commit=True, **kwargs)


def listed(query_for_site):
    """The rows of a list view (admin tokens only): ``?site=`` filters, ``?limit=`` bounds.

    ``query_for_site(site_id)`` builds the service's query, ``site_id`` None for every site.
    """
    deny_publishers()
    limit = limit_arg()
    site_id = get_site(request.args["site"]).id if "site" in request.args else None
    return db.session.scalars(query_for_site(site_id).limit(limit))


# -- destinations ----------------------------------------------------------------------------


def get_destination(destination_id: int) -> ConversionDestination:
    deny_publishers()
    return call_service(service.get_destination, db.session, destination_id)


@bp.post("/v1/conversions/destinations")
@documented("Add a conversion destination (google, microsoft, meta, ga4); credentials are "
            "shown masked from then on", destination_schema, status=201, body=DestinationSchema,
            errors=(400, 401, 403, 404, CREDENTIALS_KEY_MISSING, 422))
def create_destination():
    data = destination_create.load(json_object())
    site = get_site(data["site"])
    row = changed(service.create_destination, db.session, credential_box(), site_id=site.id,
                  name=data["name"], kind=data["kind"], config=data["config"],
                  enabled=data["enabled"])
    return jsonify(destination_view(row)), 201


@bp.get("/v1/conversions/destinations")
@documented("List conversion destinations (query: site); credentials masked", ConversionDestinationListSchema,
            errors=(401, 403, 404))
def list_destinations():
    return jsonify(destinations=[destination_view(r) for r in listed(service.destinations_query)])


@bp.get("/v1/conversions/destinations/<int:destination_id>")
@documented("Show a destination (credentials masked)", destination_schema,
            errors=(401, 403, 404))
def show_destination(destination_id: int):
    return jsonify(destination_view(get_destination(destination_id)))


@bp.patch("/v1/conversions/destinations/<int:destination_id>")
@documented("Update a destination; a masked credential sent back keeps the stored one",
            destination_schema, body=DestinationUpdateSchema,
            errors=(400, 401, 403, 404, CREDENTIALS_KEY_MISSING, 422))
def update_destination(destination_id: int):
    row = get_destination(destination_id)
    data = destination_update.load(json_object())
    changed(service.update_destination, db.session, credential_box(), row, data)
    return jsonify(destination_view(row))


@bp.delete("/v1/conversions/destinations/<int:destination_id>")
@documented("Delete a destination that has no deliveries", destination_schema,
            errors=(401, 403, 404, 409))
def delete_destination(destination_id: int):
    row = get_destination(destination_id)
    view = destination_view(row)  # the row is gone after the commit
    changed(service.delete_destination, db.session, row)
    return jsonify(view)


# -- rules -----------------------------------------------------------------------------------


def get_rule(rule_id: int) -> ConversionRule:
    deny_publishers()
    return call_service(service.get_rule, db.session, rule_id)


def _settings(data: dict) -> dict:
    return {k: v for k, v in data.items() if k not in ("site", "pool", "actions")}


@bp.post("/v1/conversions/rules")
@documented("Add a conversion rule for a site or one of its pools", rule_schema, status=201, body=RuleSchema,
            errors=(400, 401, 403, 404, 422))
def create_rule():
    data = rule_create.load(json_object())
    site = get_site(data["site"])
    row = changed(service.create_rule, db.session, site_id=site.id, pool_id=data["pool"],
                  settings=_settings(data), actions=data.get("actions"))
    return jsonify(rule_view(row)), 201


@bp.get("/v1/conversions/rules")
@documented("List conversion rules (query: site)", ConversionRuleListSchema,
            errors=(401, 403, 404))
def list_rules():
    return jsonify(rules=[rule_view(r) for r in listed(service.rules_query)])


@bp.get("/v1/conversions/rules/<int:rule_id>")
@documented("Show a conversion rule", rule_schema,
            errors=(401, 403, 404))
def show_rule(rule_id: int):
    return jsonify(rule_view(get_rule(rule_id)))


@bp.patch("/v1/conversions/rules/<int:rule_id>")
@documented("Update a conversion rule", rule_schema, body=RuleUpdateSchema,
            errors=(400, 401, 403, 404, 422))
def update_rule(rule_id: int):
    row = get_rule(rule_id)
    data = rule_update.load(json_object())
    changed(service.update_rule, db.session, row, _settings(data), data.get("actions"))
    return jsonify(rule_view(row))


@bp.delete("/v1/conversions/rules/<int:rule_id>")
@documented("Delete a conversion rule", rule_schema,
            errors=(401, 403, 404))
def delete_rule(rule_id: int):
    row = get_rule(rule_id)
    view = rule_view(row)
    changed(service.delete_rule, db.session, row)
    return jsonify(view)


# -- deliveries ------------------------------------------------------------------------------


def get_delivery(delivery_id: int) -> ConversionDelivery:
    """A delivery the token may see (its call's publisher); others are as unknown."""
    row, call = call_service(service.get_delivery, db.session, delivery_id)
    if not visible(call):
        raise NotFound(f"unknown delivery {delivery_id}", code="unknown_delivery")
    return row


@bp.get("/v1/conversions/deliveries")
@documented("The outbox: one row per call per destination (query: status, destination, "
            "call, limit)", ConversionDeliveryListSchema,
            errors=(401, 422))
def list_deliveries():
    query = call_service(service.deliveries_query, status=request.args.get("status"),
                         destination_id=id_arg(request.args, "destination"),
                         call_id=id_arg(request.args, "call"))
    rows = db.session.scalars(scoped(query, Call.publisher).limit(limit_arg()))
    return jsonify(deliveries=[delivery_view(r) for r in rows])


@bp.get("/v1/conversions/deliveries/<int:delivery_id>")
@documented("Show one delivery", delivery_schema,
            errors=(401, 404))
def show_delivery(delivery_id: int):
    return jsonify(delivery_view(get_delivery(delivery_id)))


@bp.get("/v1/conversions/deliveries/<int:delivery_id>/attempts")
@documented("A delivery's attempts log: request (secrets masked), response, status, "
            "elapsed", ConversionAttemptListSchema,
            errors=(401, 404))
def list_attempts(delivery_id: int):
    row = get_delivery(delivery_id)
    full = sees_bodies()
    return jsonify(attempts=[attempt_view(a, full)
                             for a in service.attempts_of(db.session, row.id)])


@bp.post("/v1/conversions/deliveries/<int:delivery_id>/retry")
@documented("Queue a failed delivery again", delivery_schema,
            errors=(401, 403, 404, 409))
def retry_delivery(delivery_id: int):
    row = changed(service.retry_delivery, get_delivery(delivery_id))
    return jsonify(delivery_view(row))


# -- file exports ----------------------------------------------------------------------------


TEXT = {"type": "string"}
CSV = {"text/csv": {"schema": TEXT}}
EXPORT_PARAMETERS = (
    ("site", "site id or key (required)", TEXT),
    ("start", "first local day, YYYY-MM-DD (default: 29 days before end)", TEXT),
    ("end", "last local day, YYYY-MM-DD (default: today)", TEXT),
    ("name", "conversion name (default: the rule's action name for the site's first "
             "destination of this kind)", TEXT))
EXPORT_ERRORS = (
    401, 403, (404, "unknown site"),
    (422, "a bad parameter, or a range over DNI_REPORT_MAX_DAY_DIMENSIONS days"),
    (429, "over DNI_REPORT_RATE for this token: exports share the report budget (see "
          "Retry-After)"))


def _date(name: str, default: dt.date) -> dt.date:
    return date_arg(request.args, name, default)


def _export(kind: str):
    deny_publishers()
    if "site" not in request.args:
        raise Invalid("site is required", fields={"site": "required"})
    site = get_site(request.args["site"])
    end = _date("end", dt.datetime.now(dt.UTC).date())
    start = _date("start", end - dt.timedelta(days=29))
    most = current_app.extensions["dni"].settings.report_max_day_dimensions
    call_service(service.check_export_range, start, end, most)
    limit_report_rate()  # exports share the token's report budget
    name = request.args.get("name") or None
    return site, start, end, service.export_conversions(db.session, site, start, end, kind,
                                                        name)


def _csv(text: str, filename: str) -> Response:
    return Response(text, mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


@bp.get("/v1/conversions/export/google.csv")
@documented("The google offline-conversion CSV file for a date range", None,
            query=EXPORT_PARAMETERS + (("id_type", "gclid (default), gbraid or wbraid", TEXT),),
            errors=EXPORT_ERRORS, other_content=CSV)
def export_google():
    id_type = request.args.get("id_type", "gclid")
    if id_type not in exports.GOOGLE_ID_COLUMNS:
        raise Invalid("unknown id_type", fields={"id_type": "gclid, gbraid or wbraid"})
    site, start, end, convs = _export("google")
    text = exports.google_click_csv(convs, site.timezone, id_type)
    return _csv(text, f"google-{id_type}-{site.key}-{start}-{end}.csv")


@bp.get("/v1/conversions/export/microsoft.csv")
@documented("The microsoft offline-conversion CSV file for a date range", None,
            query=EXPORT_PARAMETERS, errors=EXPORT_ERRORS, other_content=CSV)
def export_microsoft():
    site, start, end, convs = _export("microsoft")
    return _csv(exports.microsoft_offline_csv(convs), f"microsoft-{site.key}-{start}-{end}.csv")
