"""Request and response schemas of carrier accounts and number provisioning (issue 19)."""

from __future__ import annotations

from marshmallow import fields, validate

from attribution.numbers.models import CARRIERS, STATES
from attribution.numbers.provisioning import MAX_COUNT
from dni_server.api.schemas import Loose, Reply, _utc, list_of

_name = validate.Length(min=1, max=100)
_country = validate.Regexp(r"^[A-Z]{2}$", error="an ISO country code (US, GB...)")
_area_code = validate.Regexp(r"^[0-9]{2,5}$", error="2 to 5 digits")
_contains = validate.Regexp(r"^[0-9A-Za-z*]{2,16}$",
                            error="2 to 16 digits, letters or * (any digit)")
_region = validate.Regexp(r"^[A-Za-z]{2,3}$", error="a state or province code (CA, ON)")


class CarrierAccountCreateSchema(Loose):
    name = fields.String(required=True, validate=_name)
    carrier = fields.String(required=True, validate=validate.OneOf(CARRIERS))
    credentials = fields.Dict(keys=fields.String(), values=fields.String(), required=True,
                              metadata={"description": "twilio: account_sid, auth_token; "
                                                       "telnyx: api_key, connection_id"})


class CarrierAccountUpdateSchema(Loose):
    name = fields.String(validate=_name)
    credentials = fields.Dict(keys=fields.String(), values=fields.String(), metadata={
        "description": "all of them; a masked secret sent back keeps the stored one"})


class SearchQuerySchema(Loose):
    country = fields.String(load_default="US", validate=_country)
    area_code = fields.String(load_default=None, validate=_area_code)
    contains = fields.String(load_default=None, validate=_contains)
    region = fields.String(load_default=None, validate=_region)
    toll_free = fields.Boolean(load_default=False)
    limit = fields.Integer(load_default=20, validate=validate.Range(min=1, max=50))


class ProvisionRequestSchema(Loose):
    account = fields.Raw(required=True, metadata={"description": "carrier account id or name"})
    count = fields.Integer(required=True, strict=True,
                           validate=validate.Range(min=1, max=MAX_COUNT))
    country = fields.String(load_default="US", validate=_country)
    area_code = fields.String(load_default=None, allow_none=True, validate=_area_code)
    contains = fields.String(load_default=None, allow_none=True, validate=_contains)
    region = fields.String(load_default=None, allow_none=True, validate=_region)
    toll_free = fields.Boolean(load_default=False)
    request_id = fields.String(load_default=None, allow_none=True,
                               validate=validate.Length(min=8, max=128), metadata={
                                   "description": "the idempotency key, if no "
                                                  "Idempotency-Key header is sent"})


class ReleaseRequestSchema(Loose):
    quarantine_hours = fields.Integer(load_default=168, strict=True,
                                      validate=validate.Range(min=0, max=90 * 24), metadata={
                                          "description": "wait at least this long before "
                                                         "releasing (default 7 days)"})


class CarrierAccountSchema(Reply):
    id = fields.Integer(required=True)
    name = fields.String(required=True)
    carrier = fields.String(required=True, metadata={"enum": list(CARRIERS)})
    credentials = fields.Dict(required=True, metadata={"description": "secrets masked"})
    created_at = _utc("created_at")
    updated_at = _utc("updated_at")


class AccountCheckSchema(Reply):
    ok = fields.Boolean(required=True)
    account = fields.String(allow_none=True)
    error = fields.String(allow_none=True)
    carrier_status = fields.Integer(allow_none=True)


class AvailableNumberSchema(Reply):
    number = fields.String(required=True)
    locality = fields.String(allow_none=True)
    region = fields.String(allow_none=True)


class ProvisionedNumberSchema(Reply):
    id = fields.Integer(required=True)
    number = fields.String(required=True)
    state = fields.String(required=True, metadata={"enum": list(STATES)})
    account_id = fields.Integer(required=True)
    pool_id = fields.Integer(allow_none=True)
    order_id = fields.Integer(allow_none=True)
    error = fields.String(allow_none=True)
    bought_at = _utc("bought_at")
    added_at = _utc("added_at")
    quarantined_at = _utc("quarantined_at")
    release_after = _utc("release_after")
    released_at = _utc("released_at")


class ProvisionReportSchema(Reply):
    order_id = fields.Integer(required=True)
    replayed = fields.Boolean(required=True, metadata={
        "description": "a retry of a request already made: nothing new was bought"})
    requested = fields.Integer(required=True)
    shortfall = fields.Integer(required=True, metadata={
        "description": "numbers asked for that were not bought"})
    numbers = fields.List(fields.Nested(ProvisionedNumberSchema), required=True)


CarrierAccountListSchema = list_of("accounts", CarrierAccountSchema)
AvailableNumberListSchema = list_of("numbers", AvailableNumberSchema)
ProvisionedNumberListSchema = list_of("numbers", ProvisionedNumberSchema)
