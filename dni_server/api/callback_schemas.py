"""Request and answer schemas of the web callback API (``dni_server.api.callbacks``)."""

from __future__ import annotations

from marshmallow import fields, validate

from dni_server.api.schemas import Loose, Reply

TEXT = 2048


class CallbackRequestSchema(Loose):
    site = fields.String(required=True, validate=validate.Length(min=1, max=64),
                         metadata={"description": "the site's public key"})
    session_id = fields.String(required=True, validate=validate.Length(min=1, max=128),
                               metadata={"description": "the snippet's session"})
    phone = fields.String(required=True, validate=validate.Length(min=1, max=40), metadata={
        "description": "the visitor's number: E.164, or national (read as a US number)"})
    consent = fields.String(required=True, validate=validate.Length(min=1, max=TEXT), metadata={
        "description": "the consent text shown to the visitor beside the form, as shown"})
    url = fields.String(load_default=None, allow_none=True,
                        validate=validate.Length(max=TEXT),
                        metadata={"description": "the page the request was made on"})
    name = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=200))
    at = fields.AwareDateTime(load_default=None, allow_none=True, metadata={
        "description": "when to call (ISO 8601 with an offset); default now. Outside "
                       "calling hours the call is placed at the next opening"})


class CallbackAnswerSchema(Reply):
    id = fields.String(required=True)
    status = fields.String(required=True)
    at = fields.String(required=True, metadata={"description": "when the call is due (UTC)"})
    deferred = fields.Boolean(required=True, metadata={
        "description": "true when ``at`` is later than asked: outside calling hours"})
    reason = fields.String(allow_none=True, required=True, metadata={
        "description": "outside_calling_hours when deferred, else null"})


class CallbackAttemptSchema(Reply):
    at = fields.String(required=True)
    outcome = fields.String(allow_none=True, required=True)


class CallbackStatusSchema(Reply):
    id = fields.String(required=True)
    status = fields.String(required=True, metadata={
        "description": "scheduled, calling, completed, failed or canceled"})
    at = fields.String(allow_none=True, required=True,
                       metadata={"description": "the next attempt (UTC), null when over"})
    attempts = fields.Integer(required=True)
    last_outcome = fields.String(allow_none=True, required=True)
    history = fields.List(fields.Nested(CallbackAttemptSchema), required=True)


class CallbackAdminSchema(CallbackStatusSchema):
    """A callback as the admin API and dashboard show it."""

    site_id = fields.Integer(required=True)
    pool_id = fields.Integer(allow_none=True, required=True)
    session_id = fields.String(required=True)
    phone = fields.String(required=True)
    name = fields.String(allow_none=True, required=True)
    page_url = fields.String(allow_none=True, required=True)
    consent_text = fields.String(required=True)
    requested_at = fields.String(required=True)
    calling_rule = fields.String(required=True)
    call_id = fields.Integer(allow_none=True, required=True)
    flagged = fields.Boolean(required=True)


class CallbackListSchema(Reply):
    callbacks = fields.List(fields.Nested(CallbackAdminSchema), required=True)
