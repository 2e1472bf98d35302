"""Offline conversions (admin API): destinations, rules, the delivery log, file exports.

Credentials are write-only and encrypted at rest: every answer shows them masked (``****``
and at most the last four characters). A PATCH may send a masked value back unchanged to
keep the stored one, except when it also changes where requests go (a URL in the config):
then every credential must be given again, so a stored secret cannot be redirected.
URLs are shown with any userinfo masked; raw request and response bodies of the delivery
log are shown to admin tokens only.
"""

from __future__ import annotations

import datetime as dt

from flask import Blueprint, Response, current_app, g, jsonify, request
from marshmallow import ValidationError, fields, validate, validates_schema
from sqlalchemy import select, update

from attribution.conversions import exports, outbox
from attribution.conversions import rules as conversion_rules
from attribution.conversions.credentials import (
    CredentialBox,
    MissingKey,
    is_url_key,
)
from attribution.conversions.destination import mask
from attribution.conversions.models import (
    DESTINATION_KINDS,
    STATUSES,
    VALUE_SOURCES,
    ConversionAttempt,
    ConversionDelivery,
    ConversionDestination,
    ConversionRule,
)
from attribution.conversions.outbound import masked_url
from attribution.conversions.registry import build_destination
from attribution.models import Call
from attribution.qualification import DISPOSITIONS
from dni_server.api.admin import get_site, limit_arg
from dni_server.api.auth import deny_publishers, scoped, token_required, visible
from dni_server.api.body import json_object
from dni_server.api.reports import limit_report_rate
from dni_server.api.schemas import Loose, _money
from dni_server.converters import date_arg, id_arg
from dni_server.errors import Conflict, Invalid, NotFound
from dni_server.extensions import db
from dni_server.timefmt import iso_utc
from pools.models import Pool

bp = token_required(Blueprint("conversions", __name__))
SECRET_WORDS = ("token", "secret", "password", "key", "credential")
MASKED = "****"


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


class ActionSchema(Loose):
    destination = fields.Integer(required=True, strict=True)
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    enabled = fields.Boolean(load_default=True)


_dispositions = fields.List(fields.String(validate=validate.OneOf(sorted(DISPOSITIONS))),
                            validate=validate.Length(max=20))


class RuleUpdateSchema(Loose):
    qualified_only = fields.Boolean()
    min_duration = fields.Integer(strict=True, allow_none=True,
                                  validate=validate.Range(0, 86_400))
    dispositions_included = _dispositions
    dispositions_excluded = _dispositions
    value_source = fields.String(validate=validate.OneOf(VALUE_SOURCES))
    value = fields.Decimal(places=2, allow_none=True, validate=_money, as_string=True)
    currency = fields.String(validate=validate.Regexp(r"^[A-Z]{3}$",
                                                      error="must be an ISO 4217 code"))
    unknown_consent = fields.String(validate=validate.OneOf(conversion_rules.CONSENT_CHOICES))
    actions = fields.List(fields.Nested(ActionSchema), validate=validate.Length(max=20))
    enabled = fields.Boolean()


class RuleSchema(RuleUpdateSchema):
    site = fields.Raw(required=True)
    pool = fields.Integer(strict=True, load_default=None, allow_none=True)

    @validates_schema
    def _fixed_needs_value(self, data, **_):
        if data.get("value_source") == "fixed" and data.get("value") is None:
            raise ValidationError("a fixed value_source needs a value", "value")


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
        if isinstance(value, str) and _url_like(name, value):
            value = masked_url(value)
        elif isinstance(value, str) and (any(w in name.lower() for w in SECRET_WORDS)
                                         or value in secrets_seen):
            value = mask(value)
        out[name] = value
    return out


def _url_like(name: str, value) -> bool:
    """Config fields that say where requests go: ``*_url`` keys, and any http(s) URL."""
    return is_url_key(name) or (isinstance(value, str)
                                and value.strip().lower().startswith(("http://", "https://")))


def destination_view(row: ConversionDestination) -> dict:
    return {"id": row.id, "site_id": row.site_id, "name": row.name, "kind": row.kind,
            "config": masked_config(row), "enabled": row.enabled, "managed_by": row.managed_by,
            "created_at": iso_utc(row.created_at), "updated_at": iso_utc(row.updated_at)}


def rule_view(row: ConversionRule) -> dict:
    return {"id": row.id, "site_id": row.site_id, "pool": row.pool_id,
            "qualified_only": row.qualified_only, "min_duration": row.min_duration,
            "dispositions_included": row.dispositions_included or [],
            "dispositions_excluded": row.dispositions_excluded or [],
            "value_source": row.value_source,
            "value": str(row.value) if row.value is not None else None,
            "currency": row.currency, "unknown_consent": row.unknown_consent,
            "actions": [{"destination": int(ref), **action}
                        for ref, action in (row.actions or {}).items()],
            "enabled": row.enabled, "managed_by": row.managed_by,
            "created_at": iso_utc(row.created_at)}


def delivery_view(row: ConversionDelivery) -> dict:
    return {"id": row.id, "call": row.call_id, "destination": row.destination_id,
            "key": row.key, "name": row.name,
            "value": str(row.value) if row.value is not None else None,
            "currency": row.currency, "consent": row.consent, "status": row.status,
            "operation": row.operation, "wanted": row.wanted, "attempts": row.attempts,
            "next_attempt_at": iso_utc(row.next_attempt_at), "last_error": row.last_error,
            "sent_at": iso_utc(row.sent_at), "retracted_at": iso_utc(row.retracted_at),
            "created_at": iso_utc(row.created_at), "updated_at": iso_utc(row.updated_at)}


def attempt_view(row: ConversionAttempt, full: bool) -> dict:
    """One exchange of the log; ``full`` (admins) adds the request and response bodies."""
    view = shown_attempt(row, full)
    return {"id": row.id, "operation": row.operation, "outcome": row.outcome,
            "detail": row.detail, "request": view["request"], "response": view["response"],
            "http_status": row.http_status, "elapsed_ms": row.elapsed_ms, "at": iso_utc(row.at)}


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


# -- destinations ----------------------------------------------------------------------------


def checked_config(kind: str, config: dict) -> dict:
    try:
        build_destination(kind, config)
    except ValueError as exc:
        raise Invalid("the destination's config is invalid", fields={"config": str(exc)}) \
            from None
    return config


def sealed_config(config: dict) -> dict:
    """``config`` as it is stored: credentials encrypted."""
    try:
        return credential_box().seal(config)
    except MissingKey as exc:
        raise Conflict(str(exc), code="credentials_key_missing") from None


def _kept_credentials(old: dict, given: dict) -> dict:
    """``given`` with masked credentials sent back replaced by the stored ones.

    If a URL changes (where requests, and so credentials, are sent), a masked value is
    refused: the credential must be entered again (422 naming the field).
    """
    masked = [k for k, v in given.items()
              if isinstance(v, str) and v.startswith(MASKED) and k in old]
    merged = {k: old[k] if k in masked else v for k, v in given.items()}
    moved = sorted(k for k in {**old, **merged} if _url_like(k, old.get(k) or merged.get(k))
                   and old.get(k) != merged.get(k))
    stale = [k for k in masked if not _url_like(k, old[k])]
    if moved and stale:
        raise Invalid(
            f"{', '.join(moved)} changed: enter the credentials again, stored ones are not "
            "sent to a new address",
            fields={"config": {k: "must be entered again when the URL changes"
                               for k in stale}})
    return merged


def get_destination(destination_id: int) -> ConversionDestination:
    deny_publishers()
    row = db.session.get(ConversionDestination, destination_id)
    if row is None:
        raise NotFound(f"unknown destination {destination_id}", code="unknown_destination")
    return row


def _name_taken(site_id: int, name: str, exclude: int | None = None) -> None:
    other = db.session.scalar(select(ConversionDestination.id).where(
        ConversionDestination.site_id == site_id, ConversionDestination.name == name,
        ConversionDestination.id != (exclude or 0)))
    if other:
        raise Conflict(f"the site already has a destination named {name!r}")


@bp.post("/v1/conversions/destinations")
def create_destination():
    data = destination_create.load(json_object())
    site = get_site(data["site"])
    _name_taken(site.id, data["name"])
    config = checked_config(data["kind"], data["config"])
    row = ConversionDestination(site_id=site.id, name=data["name"], kind=data["kind"],
                                config=sealed_config(config), enabled=data["enabled"],
                                managed_by="api")
    db.session.add(row)
    db.session.commit()
    return jsonify(destination_view(row)), 201


@bp.get("/v1/conversions/destinations")
def list_destinations():
    deny_publishers()
    query = select(ConversionDestination).order_by(ConversionDestination.id).limit(limit_arg())
    if "site" in request.args:
        query = query.where(ConversionDestination.site_id == get_site(request.args["site"]).id)
    return jsonify(destinations=[destination_view(r) for r in db.session.scalars(query)])


@bp.get("/v1/conversions/destinations/<int:destination_id>")
def show_destination(destination_id: int):
    return jsonify(destination_view(get_destination(destination_id)))


@bp.patch("/v1/conversions/destinations/<int:destination_id>")
def update_destination(destination_id: int):
    row = get_destination(destination_id)
    data = destination_update.load(json_object())
    if "name" in data:
        _name_taken(row.site_id, data["name"], row.id)
        row.name = data["name"]
    if "config" in data:
        # A masked value sent back means "keep what is stored" (unless a URL changes).
        config = _kept_credentials(plain_config(row), data["config"])
        row.config = sealed_config(checked_config(row.kind, config))
    if "enabled" in data:
        row.enabled = data["enabled"]
    db.session.commit()
    return jsonify(destination_view(row))


@bp.delete("/v1/conversions/destinations/<int:destination_id>")
def delete_destination(destination_id: int):
    row = get_destination(destination_id)
    if db.session.scalar(select(ConversionDelivery.id).where(
            ConversionDelivery.destination_id == row.id).limit(1)):
        raise Conflict("the destination has deliveries; disable it instead (enabled: false)")
    for rule in db.session.scalars(select(ConversionRule).where(
            ConversionRule.site_id == row.site_id)):
        if str(row.id) in (rule.actions or {}):
            rule.actions = {k: v for k, v in rule.actions.items() if k != str(row.id)}
    view = destination_view(row)
    db.session.delete(row)
    db.session.commit()
    return jsonify(view)


# -- rules -----------------------------------------------------------------------------------


def get_rule(rule_id: int) -> ConversionRule:
    deny_publishers()
    row = db.session.get(ConversionRule, rule_id)
    if row is None:
        raise NotFound(f"unknown rule {rule_id}", code="unknown_rule")
    return row


def _actions(site_id: int, actions: list[dict]) -> dict:
    known = set(db.session.scalars(select(ConversionDestination.id).where(
        ConversionDestination.site_id == site_id)))
    out = {}
    for i, action in enumerate(actions):
        if action["destination"] not in known:
            raise Invalid("unknown destination in actions", fields={"actions": {
                str(i): {"destination": f"no destination {action['destination']} on this site"}}})
        out[str(action["destination"])] = {"name": action["name"], "enabled": action["enabled"]}
    return out


def _apply_rule(row: ConversionRule, data: dict) -> None:
    for name, value in data.items():
        if name == "actions":
            row.actions = _actions(row.site_id, value)
        elif name not in ("site", "pool"):
            setattr(row, name, value)
    if row.value_source == "fixed" and row.value is None:
        raise Invalid("a fixed value_source needs a value", fields={"value": "required"})


@bp.post("/v1/conversions/rules")
def create_rule():
    data = rule_create.load(json_object())
    site = get_site(data["site"])
    pool_id = data["pool"]
    if pool_id is not None:
        pool = db.session.get(Pool, pool_id)
        if pool is None or pool.site_id != site.id:
            raise Invalid("unknown pool", fields={"pool": f"no pool {pool_id} on this site"})
    row = ConversionRule(site_id=site.id, pool_id=pool_id, managed_by="api")
    _apply_rule(row, data)
    db.session.add(row)
    db.session.commit()
    return jsonify(rule_view(row)), 201


@bp.get("/v1/conversions/rules")
def list_rules():
    deny_publishers()
    query = select(ConversionRule).order_by(ConversionRule.id).limit(limit_arg())
    if "site" in request.args:
        query = query.where(ConversionRule.site_id == get_site(request.args["site"]).id)
    return jsonify(rules=[rule_view(r) for r in db.session.scalars(query)])


@bp.get("/v1/conversions/rules/<int:rule_id>")
def show_rule(rule_id: int):
    return jsonify(rule_view(get_rule(rule_id)))


@bp.patch("/v1/conversions/rules/<int:rule_id>")
def update_rule(rule_id: int):
    row = get_rule(rule_id)
    _apply_rule(row, rule_update.load(json_object()))
    db.session.commit()
    return jsonify(rule_view(row))


@bp.delete("/v1/conversions/rules/<int:rule_id>")
def delete_rule(rule_id: int):
    row = get_rule(rule_id)
    view = rule_view(row)
    db.session.execute(update(ConversionDelivery).where(ConversionDelivery.rule_id == row.id)
                       .values(rule_id=None))
    db.session.delete(row)
    db.session.commit()
    return jsonify(view)


# -- deliveries ------------------------------------------------------------------------------


def _int_arg(name: str) -> int | None:
    return id_arg(request.args, name)


def get_delivery(delivery_id: int) -> ConversionDelivery:
    row = db.session.get(ConversionDelivery, delivery_id)
    if row is None or not visible(db.session.get(Call, row.call_id)):
        raise NotFound(f"unknown delivery {delivery_id}", code="unknown_delivery")
    return row


@bp.get("/v1/conversions/deliveries")
def list_deliveries():
    D = ConversionDelivery
    query = scoped(select(D).join(Call, Call.id == D.call_id), Call.publisher)
    if status := request.args.get("status"):
        if status not in STATUSES:
            raise Invalid("unknown status", fields={"status": f"one of {', '.join(STATUSES)}"})
        query = query.where(D.status == status)
    if (destination := _int_arg("destination")) is not None:
        query = query.where(D.destination_id == destination)
    if (call := _int_arg("call")) is not None:
        query = query.where(D.call_id == call)
    rows = db.session.scalars(query.order_by(D.id.desc()).limit(limit_arg()))
    return jsonify(deliveries=[delivery_view(r) for r in rows])


@bp.get("/v1/conversions/deliveries/<int:delivery_id>")
def show_delivery(delivery_id: int):
    return jsonify(delivery_view(get_delivery(delivery_id)))


@bp.get("/v1/conversions/deliveries/<int:delivery_id>/attempts")
def list_attempts(delivery_id: int):
    row = get_delivery(delivery_id)
    attempts = db.session.scalars(select(ConversionAttempt).where(
        ConversionAttempt.delivery_id == row.id).order_by(ConversionAttempt.id))
    full = sees_bodies()
    return jsonify(attempts=[attempt_view(a, full) for a in attempts])


@bp.post("/v1/conversions/deliveries/<int:delivery_id>/retry")
def retry_delivery(delivery_id: int):
    row = get_delivery(delivery_id)
    if not outbox.retry(row):
        raise Conflict(f"only a failed delivery can be retried; this one is {row.status}")
    db.session.commit()
    return jsonify(delivery_view(row))


# -- file exports ----------------------------------------------------------------------------


def _date(name: str, default: dt.date) -> dt.date:
    return date_arg(request.args, name, default)


def _export(kind: str):
    deny_publishers()
    if "site" not in request.args:
        raise Invalid("site is required", fields={"site": "required"})
    site = get_site(request.args["site"])
    end = _date("end", dt.datetime.now(dt.UTC).date())
    start = _date("start", end - dt.timedelta(days=29))
    if start > end:
        raise Invalid("start must not be after end", fields={"start": "after end"})
    most = current_app.extensions["dni"].settings.report_max_day_dimensions
    if (end - start).days + 1 > most:
        raise Invalid(f"an export covers at most {most} days (DNI_REPORT_MAX_DAY_DIMENSIONS)",
                      fields={"range": f"at most {most} days"})
    limit_report_rate()  # exports share the token's report budget
    name = request.args.get("name") or None
    return site, start, end, outbox.conversions_between(db.session, site, start, end, kind, name)


def _csv(text: str, filename: str) -> Response:
    return Response(text, mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


@bp.get("/v1/conversions/export/google.csv")
def export_google():
    id_type = request.args.get("id_type", "gclid")
    if id_type not in exports.GOOGLE_ID_COLUMNS:
        raise Invalid("unknown id_type", fields={"id_type": "gclid, gbraid or wbraid"})
    site, start, end, convs = _export("google")
    text = exports.google_click_csv(convs, site.timezone, id_type)
    return _csv(text, f"google-{id_type}-{site.key}-{start}-{end}.csv")


@bp.get("/v1/conversions/export/microsoft.csv")
def export_microsoft():
    site, start, end, convs = _export("microsoft")
    return _csv(exports.microsoft_offline_csv(convs), f"microsoft-{site.key}-{start}-{end}.csv")
