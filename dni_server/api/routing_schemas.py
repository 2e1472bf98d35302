"""Request and response schemas of pay-per-call routing: buyers and routing plans.

Requests are checked here to the field (every bad field named in the 422's ``fields``); the
rules that need the database (a plan's buyers exist and may be used by it) are checked by
``routing.admin``. What is stored is the request's JSON as loaded, defaults filled in, so
a PATCH merges into it and is checked whole again.
"""

from __future__ import annotations

import re

from marshmallow import (
    RAISE,
    ValidationError,
    fields,
    post_load,
    validate,
    validates,
    validates_schema,
)

from dni_server.api.schemas import MONEY, Loose, Reply, _money, iana_zone, list_of
from dni_server.timefmt import iso_utc
from pools.phones import InvalidNumber, normalize
from routing.eligibility import validate_filters
from routing.flow import validate_ivr

HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$|^24:00$")
SIP = re.compile(r"^sips?:[^\s@]+@[^\s]+$", re.IGNORECASE)
_name = validate.Length(min=1, max=200)
_count = validate.Range(0, 10_000_000)


class Strict(Loose):
    """A part of a buyer or plan: a misspelt key ("week" for a cap's period) would silently
    do nothing, so it is refused."""

    class Meta:
        unknown = RAISE


def _e164(value: str) -> str:
    try:
        return normalize(value, "US")
    except InvalidNumber as exc:
        raise ValidationError(str(exc)) from None


class TargetSchema(Strict):
    number = fields.String(validate=validate.Length(min=1, max=40))
    sip = fields.String(validate=validate.Length(min=5, max=255))
    weight = fields.Integer(strict=True, load_default=1, validate=validate.Range(1, 1000))
    concurrency = fields.Integer(strict=True, validate=validate.Range(1, 10_000))
    ring_seconds = fields.Integer(strict=True, load_default=30, validate=validate.Range(5, 120))

    @validates_schema
    def _one_address(self, data, **_):
        if ("number" in data) == ("sip" in data):
            raise ValidationError("give a number (E.164) or a sip URI, not both", "number")
        if "sip" in data and not SIP.match(data["sip"]):
            raise ValidationError("must be a sip: URI (sip:user@host)", "sip")

    @post_load
    def _normalize(self, data, **_):
        if "number" in data:
            data["number"] = _e164(data["number"])
        return data


class HoursSchema(Strict):
    days = fields.List(fields.Integer(strict=True, validate=validate.Range(0, 6)), required=True,
                       validate=validate.Length(min=1, max=7),
                       metadata={"description": "0 = Monday ... 6 = Sunday"})
    start = fields.String(required=True, validate=validate.Regexp(HHMM, error="HH:MM"))
    end = fields.String(required=True, validate=validate.Regexp(HHMM, error="HH:MM"),
                        metadata={"description": "at or before start: runs past midnight"})


class PeriodCounts(Strict):
    hour = fields.Integer(strict=True, validate=_count)
    day = fields.Integer(strict=True, validate=_count)
    month = fields.Integer(strict=True, validate=_count)
    total = fields.Integer(strict=True, validate=_count)


class PeriodMoney(Strict):
    hour = fields.Decimal(places=2, as_string=True, validate=_money, metadata=MONEY)
    day = fields.Decimal(places=2, as_string=True, validate=_money, metadata=MONEY)
    month = fields.Decimal(places=2, as_string=True, validate=_money, metadata=MONEY)
    total = fields.Decimal(places=2, as_string=True, validate=_money, metadata=MONEY)

    @post_load
    def _text(self, data, **_):
        return {k: str(v) for k, v in data.items()}


class CapsSchema(Strict):
    calls = fields.Nested(PeriodCounts)
    connections = fields.Nested(PeriodCounts)
    conversions = fields.Nested(PeriodCounts)
    revenue = fields.Nested(PeriodMoney)
    concurrency = fields.Integer(strict=True, validate=validate.Range(1, 10_000))
    spacing_seconds = fields.Integer(strict=True, validate=validate.Range(0, 86_400))


class ConversionSchema(Strict):
    min_duration = fields.Integer(strict=True, required=True, validate=validate.Range(0, 86_400))
    from_ = fields.String(data_key="from", load_default="answer",
                          validate=validate.OneOf(["answer", "accept"]))

    @post_load
    def _from(self, data, **_):
        if "from_" in data:
            data["from"] = data.pop("from_")
        return data


class DuplicateSchema(Strict):
    days = fields.Integer(strict=True, required=True, validate=validate.Range(1, 365))
    after = fields.String(load_default="converted",
                          validate=validate.OneOf(["connected", "converted"]))


class BuyerFraudSchema(Strict):
    """The buyer's own fraud policy (issue 16): calls riskier than ``max_risk`` (the call's
    risk score, 0-100) are not offered to it (skipped with reason ``risk``)."""

    max_risk = fields.Integer(strict=True, required=True, validate=validate.Range(0, 100))


class BuyerSchema(Loose):
    """A buyer, as created (POST) or changed (PATCH: the given fields, checked whole)."""

    name = fields.String(required=True, validate=_name)
    publisher = fields.String(allow_none=True, validate=validate.Length(max=200),
                              metadata={"description": "only this publisher's plans and "
                                        "tokens see the buyer; null: the network's"})
    timezone = fields.String(required=True, validate=iana_zone)
    paused = fields.Boolean(load_default=False)
    targets = fields.List(fields.Nested(TargetSchema), required=True,
                          validate=validate.Length(min=1, max=50))
    hours = fields.List(fields.Nested(HoursSchema), validate=validate.Length(max=50))
    caps = fields.Nested(CapsSchema, load_default=dict)
    filters = fields.Raw(metadata={"type": "array", "items": {"type": "object"}})
    conversion = fields.Nested(ConversionSchema, required=True)
    revenue = fields.Decimal(places=2, as_string=True, required=True, validate=_money,
                             metadata=MONEY)
    duplicate = fields.Nested(DuplicateSchema, allow_none=True)
    whisper = fields.String(allow_none=True, validate=validate.Length(min=1, max=500))
    accept = fields.Boolean(load_default=False)
    suppress = fields.List(fields.String(), validate=validate.Length(max=10_000), metadata={
        "description": "callers this buyer never gets: numbers or prefixes (+1900)"})
    fraud = fields.Nested(BuyerFraudSchema, allow_none=True)  # issue 16

    @validates("suppress")
    def _suppress(self, value, **_):
        from attribution.fraud.lists import parse_value  # issue 16

        for item in value:
            try:
                parse_value(item)
            except ValueError as exc:
                raise ValidationError(f"{item!r}: {exc}") from None

    @validates("filters")
    def _filters(self, value, **_):
        try:
            validate_filters(value)
        except ValueError as exc:
            raise ValidationError(str(exc)) from None

    @validates_schema
    def _accept(self, data, **_):
        if (data.get("conversion") or {}).get("from") == "accept" and not data.get("accept"):
            raise ValidationError("converting from the accept key needs accept: true",
                                  "conversion")

    @post_load
    def _canonical(self, data, **_):
        if "revenue" in data:
            data["revenue"] = str(data["revenue"])
        if "filters" in data:
            data["filters"] = validate_filters(data["filters"])
        if "suppress" in data:
            from attribution.fraud.lists import parse_value

            data["suppress"] = sorted({parse_value(v)[0] for v in data["suppress"]})
        return data


class TierSchema(Strict):
    buyers = fields.List(fields.Integer(strict=True, validate=validate.Range(1, 2**31 - 1)),
                         required=True,
                         validate=validate.Length(min=1, max=100))
    mode = fields.String(load_default="weighted",
                         validate=validate.OneOf(["weighted", "simultaneous"]))


class FallbackSchema(Strict):
    number = fields.String(allow_none=True, validate=validate.Length(min=1, max=40))
    message = fields.String(allow_none=True, validate=validate.Length(min=1, max=500))

    @post_load
    def _normalize(self, data, **_):
        if data.get("number"):
            data["number"] = _e164(data["number"])
        return data


class RecoverySchema(Strict):
    min_seconds = fields.Integer(strict=True, required=True, validate=validate.Range(1, 600))
    attempts = fields.Integer(strict=True, required=True, validate=validate.Range(1, 5))


class RoutingPlanSchema(Loose):
    """A routing plan, as created (POST) or changed (PATCH: merged, checked whole)."""

    name = fields.String(required=True, validate=_name)
    publisher = fields.String(allow_none=True, validate=validate.Length(max=200),
                              metadata={"description": "only this publisher's numbers may "
                                        "use the plan; null: any of the network's"})
    ivr = fields.Raw(load_default=list, metadata={
        "type": "array", "items": {"type": "object"},
        "description": "steps: say, press, zip, menu (see the README)"})
    tiers = fields.List(fields.Nested(TierSchema), required=True,
                        validate=validate.Length(min=1, max=10))
    fallback = fields.Nested(FallbackSchema, load_default=dict)
    recovery = fields.Nested(RecoverySchema, allow_none=True)

    @validates("ivr")
    def _ivr(self, value, **_):
        try:
            validate_ivr(value)
        except ValueError as exc:
            raise ValidationError(str(exc)) from None

    @post_load
    def _canonical(self, data, **_):
        if "ivr" in data:
            data["ivr"] = validate_ivr(data["ivr"])
        return data


# -- responses -------------------------------------------------------------------------------


def _spec(name: str, kind: dict) -> fields.Function:
    return fields.Function(lambda row: row.spec.get(name), metadata=kind | {"nullable": True})


_OBJECT, _ARRAY = {"type": "object"}, {"type": "array", "items": {"type": "object"}}


class BuyerOutSchema(Reply):
    id = fields.Integer()
    name = fields.String()
    publisher = fields.String(allow_none=True)
    paused = fields.Boolean()
    timezone = _spec("timezone", {"type": "string"})
    targets = _spec("targets", _ARRAY)
    hours = _spec("hours", _ARRAY)
    caps = _spec("caps", _OBJECT)
    filters = _spec("filters", _ARRAY)
    conversion = _spec("conversion", _OBJECT)
    revenue = _spec("revenue", MONEY)
    duplicate = _spec("duplicate", _OBJECT)
    whisper = _spec("whisper", {"type": "string"})
    accept = _spec("accept", {"type": "boolean"})
    suppress = _spec("suppress", {"type": "array", "items": {"type": "string"}})  # issue 16
    fraud = _spec("fraud", _OBJECT)  # issue 16
    created_at = fields.Function(lambda row: iso_utc(row.created_at))
    updated_at = fields.Function(lambda row: iso_utc(row.updated_at))


class RoutingPlanOutSchema(Reply):
    id = fields.Integer()
    name = fields.String()
    publisher = fields.String(allow_none=True)
    ivr = _spec("ivr", _ARRAY)
    tiers = _spec("tiers", _ARRAY)
    fallback = _spec("fallback", _OBJECT)
    recovery = _spec("recovery", _OBJECT)
    created_at = fields.Function(lambda row: iso_utc(row.created_at))
    updated_at = fields.Function(lambda row: iso_utc(row.updated_at))


BuyerListSchema = list_of("buyers", BuyerOutSchema)
RoutingPlanListSchema = list_of("routing_plans", RoutingPlanOutSchema)
