"""Request and answer schemas of the webhook subscriptions API (``/v1/webhooks``)."""

from __future__ import annotations

from marshmallow import fields, validate

from attribution.webhooks.events import EVENT_TYPES
from dni_server.api.schemas import Loose, Reply, list_of
from dni_server.timefmt import iso_utc


def _utc(name: str) -> fields.Function:
    return fields.Function(lambda row: iso_utc(getattr(row, name)),
                           metadata={"type": "string", "nullable": True})


class WebhookCreateSchema(Loose):
    site = fields.Raw(required=True, metadata={"description": "site id or key"})
    url = fields.String(required=True, validate=validate.Length(min=1, max=2000))
    events = fields.List(fields.String(), required=True,
                         validate=validate.Length(min=1, max=50),
                         metadata={"description": "event types: " + ", ".join(EVENT_TYPES)})
    publisher = fields.String(load_default=None, allow_none=True,
                              validate=validate.Length(min=1, max=200),
                              metadata={"description": "only this publisher's calls"})
    enabled = fields.Boolean(load_default=True)


class WebhookUpdateSchema(Loose):
    url = fields.String(validate=validate.Length(min=1, max=2000))
    events = fields.List(fields.String(), validate=validate.Length(min=1, max=50))
    enabled = fields.Boolean(metadata={"description": "true also clears a disabled_reason"})
    rotate_secret = fields.Boolean(metadata={"description": "a new secret, shown once"})


class WebhookSubscriptionSchema(Reply):
    """A subscription; ``secret`` is in plain text only in the answer that created (or
    rotated) it, masked everywhere else."""

    id = fields.Integer()
    site = fields.Integer(attribute="site_id")
    publisher = fields.String(allow_none=True)
    url = fields.String()
    events = fields.List(fields.String())
    secret = fields.String()
    enabled = fields.Boolean()
    disabled_reason = fields.String(allow_none=True)
    failures_in_a_row = fields.Integer()
    failing_since = _utc("failing_since")
    created_at = _utc("created_at")
    updated_at = _utc("updated_at")


class WebhookAttemptSchema(Reply):
    """One POST: request (headers and body to admins), response status (and body to
    admins), timing."""

    id = fields.Integer()
    outcome = fields.String()
    detail = fields.String(allow_none=True)
    request = fields.Dict()
    response = fields.Dict()
    http_status = fields.Integer(allow_none=True)
    elapsed_ms = fields.Integer(allow_none=True)
    at = _utc("at")


class WebhookDeliverySchema(Reply):
    """One event for one subscription, and its attempts."""

    id = fields.Integer()
    subscription = fields.Integer(attribute="subscription_id")
    event_id = fields.String()
    event_type = fields.String()
    call = fields.Integer(attribute="call_id", allow_none=True)
    replay_of = fields.Integer(allow_none=True)
    status = fields.String()
    attempts = fields.Integer()
    next_attempt_at = _utc("next_attempt_at")
    last_error = fields.String(allow_none=True)
    sent_at = _utc("sent_at")
    created_at = _utc("created_at")
    log = fields.List(fields.Nested(WebhookAttemptSchema))


WebhookSubscriptionListSchema = list_of("webhooks", WebhookSubscriptionSchema)
WebhookDeliveryListSchema = list_of("deliveries", WebhookDeliverySchema)
