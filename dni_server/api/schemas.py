"""Request and response schemas; response schemas are whitelists of what each audience sees."""

from __future__ import annotations

import zoneinfo

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate, validates

from attribution.qualification import validate_rules as validate_qualification
from attribution.visits import MAX_COOKIE_LENGTH
from dni_server.timefmt import iso_ms, iso_utc
from pools.phones import national_digits

TEXT = 4096
_short = validate.Length(min=1, max=255)


class Loose(Schema):
    """Requests ignore unknown fields: clients may be newer than the server."""

    class Meta:
        unknown = EXCLUDE


def optional_text(max_length: int) -> fields.String:
    """A string a request may leave out or send as null."""
    return fields.String(load_default=None, allow_none=True,
                         validate=validate.Length(max=max_length))


# Amounts are decimal strings ("35.00") on the way out; the document says so, not "number".
MONEY = {"type": "string", "pattern": r"^\d{1,8}(\.\d{1,2})?$", "example": "35.00"}


def _money(value) -> None:
    if not 0 <= value <= 10_000_000:
        raise ValidationError("must be an amount from 0 to 10,000,000")


def _qualification(value) -> None:
    try:
        validate_qualification(value)
    except ValueError as exc:
        raise ValidationError(str(exc)) from None


# -- snippet API -------------------------------------------------------------------------


class AdIdsSchema(Loose):
    """Ad ids as the snippet reads them from cookies (raw values: the service keeps what has
    the platform's shape and ignores the rest), and the visitor's ad consent."""

    ga_client_id = optional_text(MAX_COOKIE_LENGTH)  # _ga, or its client id "123.456"
    ga_session_id = optional_text(MAX_COOKIE_LENGTH)  # _ga_<measurement id>, or its session id
    fbp = optional_text(MAX_COOKIE_LENGTH)  # _fbp
    # true / false: the visitor's answer; null: the site does not ask. No "yes" or "on".
    consent = fields.Boolean(load_default=None, allow_none=True, truthy={True}, falsy={False})


class SessionRequestSchema(AdIdsSchema):
    site = fields.String(required=True, validate=validate.Length(min=1, max=64))
    url = optional_text(TEXT)
    referrer = optional_text(TEXT)
    visitor_id = optional_text(128)
    session_id = optional_text(128)


class QuickLoader:
    """A schema's load, short-cut for bodies whose every field is plainly valid.

    The heartbeat runs on every page view, and marshmallow's machinery costs more than the
    rest of our code there. Bodies of strings (and booleans) within their length limits are
    taken as they are; anything else goes to the schema itself, which decides and words the
    error, so the schema stays the one definition of what is valid.
    """

    KINDS = {fields.String: str, fields.Boolean: bool}

    def __init__(self, schema: Schema):
        self.schema = schema
        self.rules = []
        for name, field in schema.fields.items():
            kind = self.KINDS.get(type(field))
            if kind is None:
                raise TypeError(f"QuickLoader cannot check {name} ({type(field).__name__})")
            lengths = [v for v in field.validators if isinstance(v, validate.Length)]
            if len(lengths) != len(field.validators):
                raise TypeError(f"QuickLoader cannot check the validators of {name}")
            low = max([v.min or 0 for v in lengths], default=0)
            high = min([v.max for v in lengths if v.max is not None], default=None)
            self.rules.append((name, kind, field.required, low, high))

    def load(self, body: dict) -> dict:
        out = {}
        for name, kind, required, low, high in self.rules:
            value = body.get(name)
            if value is None:
                if required or (name in body and not self.schema.fields[name].allow_none):
                    return self.schema.load(body)
            elif type(value) is not kind or (kind is str and not (
                    low <= len(value) and (high is None or len(value) <= high))):
                return self.schema.load(body)
            out[name] = value
        return out


class HeartbeatRequestSchema(AdIdsSchema):
    site = fields.String(required=True, validate=validate.Length(min=1, max=64))
    url = optional_text(TEXT)
    visitor_id = optional_text(128)


def number_entry(entry, now_ms: int) -> dict:
    """One swap instruction; hand-built because it is on the heartbeat path.

    ``expires_in`` (seconds) lets the snippet judge expiry without trusting the visitor's
    clock, which may be minutes off.
    """
    out = {
        "target": entry.target,
        "number": entry.number,
        "expires_at": iso_ms(entry.expires_at_ms) if entry.expires_at_ms else None,
        "expires_in": max(0, (entry.expires_at_ms - now_ms) // 1000)
        if entry.expires_at_ms else None,
        "fallback": entry.fallback,
        "target_national": national_digits(entry.target),
        "number_national": national_digits(entry.number),
    }
    if entry.reason:
        out["reason"] = entry.reason
    return out


def session_answer(answer, now_ms: int) -> dict:
    return {
        "session_id": answer.session_id,
        "visitor_id": answer.visitor_id or None,
        "numbers": [number_entry(e, now_ms) for e in answer.numbers],
        "renew_in": answer.renew_in,
    }


# -- admin API ---------------------------------------------------------------------------


class SiteSchema(Loose):
    id = fields.Integer(dump_only=True)
    key = fields.String(dump_only=True)
    name = fields.String(required=True, validate=_short)
    domains = fields.List(fields.String(validate=_short), load_default=list,
                          validate=validate.Length(max=100))
    keyword_params = fields.List(fields.String(validate=validate.Length(min=1, max=64)),
                                 load_default=list, validate=validate.Length(max=20))
    timezone = fields.String(load_default="UTC")
    created_at = fields.Function(lambda site: iso_utc(site.created_at), dump_only=True)

    @validates("timezone")
    def _timezone(self, value, **_):
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValidationError(f"unknown time zone {value!r} (use an IANA name)") from None


class MoneyRules(Loose):
    """Fields shared by pools and static numbers: recording, qualification, money."""

    record_calls = fields.Boolean()
    qualification = fields.Raw(validate=_qualification)
    revenue = fields.Decimal(places=2, validate=_money, as_string=True, metadata=MONEY)
    payout = fields.Decimal(places=2, validate=_money, as_string=True, metadata=MONEY)
    publisher = fields.String(allow_none=True, validate=validate.Length(max=200))


class PoolSettingsSchema(MoneyRules):
    """Fields a pool can be created or updated with."""

    name = fields.String(validate=_short)
    destination = fields.String(validate=validate.Length(min=1, max=40))
    fallback = fields.String(validate=validate.Length(min=1, max=40))
    lease_seconds = fields.Integer(strict=True, validate=validate.Range(30, 86_400))
    max_lease_seconds = fields.Integer(strict=True, validate=validate.Range(60, 7 * 86_400))
    cooldown_seconds = fields.Integer(strict=True, validate=validate.Range(0, 86_400))
    attribution_window_seconds = fields.Integer(strict=True, validate=validate.Range(0, 30 * 86_400))
    exhaustion_policy = fields.String(validate=validate.OneOf(["fallback", "reuse_cooling"]))
    priority = fields.Integer(strict=True, validate=validate.Range(-1000, 1000))
    rules = fields.Raw()


class PoolCreateSchema(PoolSettingsSchema):
    site = fields.Raw(required=True)
    name = fields.String(required=True, validate=_short)
    target = fields.String(required=True, validate=validate.Length(min=1, max=40))
    destination = fields.String(required=True, validate=validate.Length(min=1, max=40))
    numbers = fields.List(fields.Raw(), load_default=list, validate=validate.Length(max=10_000))
    region = fields.String(load_default="US", validate=validate.Length(equal=2))


class NumbersSchema(Loose):
    numbers = fields.List(fields.Raw(), required=True, validate=validate.Length(min=1, max=10_000))
    region = fields.String(load_default="US", validate=validate.Length(equal=2))


class PoolSchema(Schema):
    id = fields.Integer()
    site_id = fields.Integer()
    name = fields.String()
    target = fields.String()
    destination = fields.String()
    fallback = fields.String()
    lease_seconds = fields.Integer()
    max_lease_seconds = fields.Integer()
    cooldown_seconds = fields.Integer()
    attribution_window_seconds = fields.Integer()
    exhaustion_policy = fields.String()
    priority = fields.Integer()
    rules = fields.Raw()
    record_calls = fields.Boolean()
    qualification = fields.Raw()
    revenue = fields.Decimal(as_string=True, metadata=MONEY)
    payout = fields.Decimal(as_string=True, metadata=MONEY)
    publisher = fields.String(allow_none=True)
    active = fields.Boolean()
    created_at = fields.Function(lambda pool: iso_utc(pool.created_at))


class PoolNumberSchema(Schema):
    number = fields.String()
    status = fields.String()
    added_at = fields.Function(lambda row: iso_utc(row.added_at))
    retired_at = fields.Function(lambda row: iso_utc(row.retired_at))


class VisitSchema(Schema):
    session_id = fields.String()
    site_id = fields.Integer()
    visitor_id = fields.String()
    created_at = fields.Function(lambda v: iso_utc(v.created_at))
    landing_url = fields.String()
    landing_path = fields.String()
    referrer = fields.String()
    referrer_domain = fields.String()
    source = fields.String()
    medium = fields.String()
    keyword = fields.String()
    utm_source = fields.String()
    utm_medium = fields.String()
    utm_campaign = fields.String()
    utm_term = fields.String()
    utm_content = fields.String()
    utm_id = fields.String()
    utm_source_platform = fields.String()
    utm_creative_format = fields.String()
    utm_marketing_tactic = fields.String()
    gclid = fields.String()
    gbraid = fields.String()
    wbraid = fields.String()
    msclkid = fields.String()
    fbclid = fields.String()
    ttclid = fields.String()
    li_fat_id = fields.String()
    dclid = fields.String()
    ga_client_id = fields.String()
    ga_session_id = fields.String()
    fbp = fields.String()
    ad_consent = fields.Boolean()
    device_type = fields.String()
    browser = fields.String()
    browser_version = fields.String()
    os = fields.String()
    os_version = fields.String()
    country = fields.String()
    region = fields.String()
    city = fields.String()
    fallback_reason = fields.String()


# -- calls and static numbers ------------------------------------------------------------


class CallRequestSchema(Loose):
    call_id = fields.String(required=True, validate=validate.Length(min=1, max=128))
    from_ = fields.String(required=True, data_key="from", validate=validate.Length(min=1, max=64))
    to = fields.String(required=True, validate=validate.Length(min=1, max=64))
    started_at = fields.AwareDateTime(required=True, format="iso")
    duration = fields.Integer(strict=True, load_default=None, allow_none=True,
                              validate=validate.Range(0, 7 * 86_400))
    status = fields.String(load_default="completed", validate=validate.OneOf(
        ["ringing", "in-progress", "completed", "busy", "no-answer", "failed", "canceled"]))
    recording_url = fields.Url(load_default=None, allow_none=True, schemes={"http", "https"})
    caller_country = optional_text(2)
    caller_region = optional_text(64)
    caller_city = optional_text(128)


class DispositionSchema(Loose):
    disposition = fields.String(required=True, validate=validate.OneOf(sorted(
        ["sale", "qualified_lead", "appointment", "lead", "voicemail", "other", "spam",
         "not_a_lead", "wrong_number", "duplicate"])))
    value = fields.Decimal(load_default=None, allow_none=True, places=2, validate=_money,
                           as_string=True)


class StaticNumberSchema(MoneyRules):
    id = fields.Integer(dump_only=True)
    site = fields.Raw(load_only=True, load_default=None, allow_none=True)
    site_id = fields.Integer(dump_only=True, allow_none=True)
    number = fields.String(required=True, validate=validate.Length(min=1, max=40))
    destination = fields.String(required=True, validate=validate.Length(min=1, max=40))
    source = fields.String(required=True, validate=_short)
    medium = fields.String(required=True, validate=_short)
    campaign = fields.String(allow_none=True, validate=validate.Length(max=255))
    label = fields.String(allow_none=True, validate=validate.Length(max=255))
    timezone = fields.String(load_default="UTC")
    region = fields.String(load_only=True, load_default="US", validate=validate.Length(equal=2))
    status = fields.String(dump_only=True)
    created_at = fields.Function(lambda row: iso_utc(row.created_at), dump_only=True)
    retired_at = fields.Function(lambda row: iso_utc(row.retired_at), dump_only=True)


class TokenSchema(Loose):
    id = fields.Integer(dump_only=True)
    name = fields.String(required=True, validate=_short)
    scope = fields.String(required=True, validate=validate.OneOf(["admin", "read_only",
                                                                  "publisher"]))
    publisher = fields.String(load_default=None, allow_none=True,
                              validate=validate.Length(min=1, max=200))
    created_at = fields.Function(lambda row: iso_utc(row.created_at), dump_only=True)
    revoked_at = fields.Function(lambda row: iso_utc(row.revoked_at), dump_only=True)
