"""Request and response schemas of the fraud API: block list, review, a call's signals."""

from __future__ import annotations

from marshmallow import ValidationError, fields, validate, validates

from attribution.fraud.lists import parse_value
from dni_server.api.schemas import MONEY, Loose, Reply
from dni_server.timefmt import iso_utc


def _utc(name: str) -> fields.Function:
    return fields.Function(lambda row: iso_utc(getattr(row, name)), allow_none=True,
                           metadata={"type": "string", "format": "date-time"})


class BlockEntryInSchema(Loose):
    value = fields.String(required=True, metadata={
        "description": "a number (+14155550100) or a prefix: +1 a country, +1900 an area "
                       "code, +1415555 an area code and exchange"})
    reason = fields.String(load_default=None, allow_none=True,
                           validate=validate.Length(max=500))
    site = fields.Raw(load_default=None, allow_none=True, metadata={
        "description": "a site id or key: the entry applies to its calls only; "
                       "absent: the whole network"})
    expires_at = fields.AwareDateTime(load_default=None, allow_none=True,
                                      metadata={"description": "absent: never expires"})

    @validates("value")
    def _value(self, value, **_kwargs):
        try:
            parse_value(value)
        except ValueError as exc:
            raise ValidationError(str(exc)) from None


class BlockEntrySchema(Reply):
    id = fields.Integer()
    value = fields.String()
    kind = fields.String(metadata={"description": "number | prefix"})
    reason = fields.String(allow_none=True)
    site_id = fields.Integer(allow_none=True)
    expires_at = _utc("expires_at")
    added_by = fields.String()
    source = fields.String(metadata={"description": "api | import | disposition"})
    call_id = fields.Integer(allow_none=True)
    created_at = _utc("created_at")


class BlockListSchema(Reply):
    entries = fields.List(fields.Nested(BlockEntrySchema))


class ReviewInSchema(Loose):
    decision = fields.String(required=True, validate=validate.OneOf(["approve", "reject"]))
    reason = fields.String(load_default=None, allow_none=True,
                           validate=validate.Length(max=500))


class FraudStateSchema(Reply):
    """A call's signals ({name, value, fired}), its score's named contributions, what was
    done before it rang, and its review."""

    call_id = fields.Integer(attribute="id")
    risk_score = fields.Integer(allow_none=True)
    action = fields.String(attribute="fraud_action", allow_none=True, metadata={
        "description": "none, flag, challenge (challenge_passed, challenge_failed) or block"})
    signals = fields.Function(lambda c: (c.fraud_signals or {}).get("signals", []))
    contributions = fields.Function(lambda c: (c.fraud_signals or {}).get("contributions", []))
    review = fields.Function(lambda c: None if c.review_state is None else {
        "state": c.review_state, "reason": c.review_reason, "by": c.reviewed_by,
        "at": iso_utc(c.reviewed_at)}, allow_none=True)
    qualified = fields.Boolean()
    payout = fields.Decimal(as_string=True, metadata=MONEY)


class PolicyInSchema(Loose):
    settings = fields.Dict(required=True, metadata={
        "description": "flag, challenge, block (0-101), burst_calls, burst_minutes, "
                       "cross_days, instant_seconds, hug_seconds, expected_countries, "
                       "challenge_text; what is left out keeps its default"})


class PolicySchema(Reply):
    site_id = fields.Integer()
    settings = fields.Dict(metadata={"description": "the site's own settings"})
    effective = fields.Dict(metadata={"description": "with the defaults filled in"})


class QualityRateSchema(Reply):
    rate = fields.Float(allow_none=True)
    baseline = fields.Float(allow_none=True, metadata={
        "description": "the rest of the network's rate"})
    p_value = fields.Float()
    sure = fields.Float(metadata={"description": "1 - p_value"})
    significant = fields.Boolean(metadata={
        "description": "worse than the network's with p < 0.01 (and 20 calls or more)"})


class HuggingSchema(Reply):
    observed = fields.Integer(metadata={"description": "calls ending 0-5 s past a threshold"})
    expected = fields.Integer(metadata={"description": "calls ending 6-11 s past it"})
    ratio = fields.Float(allow_none=True)
    p_value = fields.Float()
    significant = fields.Boolean()


class PublisherQualitySchema(Reply):
    publisher = fields.String(allow_none=True)
    calls = fields.Integer()
    rates = fields.Dict(keys=fields.String(), values=fields.Nested(QualityRateSchema))
    threshold_hugging = fields.Nested(HuggingSchema)
    flag = fields.List(fields.String(), metadata={
        "description": "the rates significantly worse than the network's"})


class QualityReportSchema(Reply):
    start = fields.String()
    end = fields.String()
    calls = fields.Integer()
    publishers = fields.List(fields.Nested(PublisherQualitySchema))


class ImportRowSchema(Reply):
    row = fields.Integer(metadata={"description": "the CSV line (1 is the header)"})
    value = fields.String()
    status = fields.String(metadata={"description": "added | duplicate | error"})
    error = fields.String()
    id = fields.Integer()


class ImportReportSchema(Reply):
    rows = fields.Integer()
    added = fields.Integer()
    errors = fields.Integer()
    report = fields.List(fields.Nested(ImportRowSchema))
