"""Outgoing webhook subscriptions (admin API): ``/v1/webhooks`` and their delivery log.

Admins create and change subscriptions; a publisher token sees only its publisher's
subscriptions and their logs (a subscription with a ``publisher`` gets only that
publisher's calls, shown as that publisher sees them through ``GET /v1/calls/<id>``). The
secret is shown once, in the answer that created or rotated it, and masked afterwards.
The rules live in ``attribution.webhooks.subscriptions``; these views parse, call, commit
and dump.
"""

from __future__ import annotations

from flask import Blueprint, current_app, g, jsonify, request
from sqlalchemy import select

from attribution.conversions.credentials import CredentialBox, MissingKey
from attribution.conversions.outbound import masked_url
from attribution.webhooks import subscriptions as service
from attribution.webhooks.models import STATUSES, WebhookDelivery, WebhookSubscription
from attribution.webhooks.subscriptions import WebhookError
from dni_server.api.admin import get_site, limit_arg
from dni_server.api.auth import scoped, token_required, visible
from dni_server.api.body import json_object
from dni_server.api.schemas import With
from dni_server.api.webhook_schemas import (
    WebhookCreateSchema,
    WebhookDeliveryListSchema,
    WebhookDeliverySchema,
    WebhookSubscriptionListSchema,
    WebhookSubscriptionSchema,
    WebhookUpdateSchema,
)
from dni_server.errors import ApiError, Conflict, Invalid, NotFound
from dni_server.extensions import db
from dni_server.openapi import documented

bp = token_required(Blueprint("webhook_subscriptions", __name__))
create_schema, update_schema = WebhookCreateSchema(), WebhookUpdateSchema()
subscription_schema = WebhookSubscriptionSchema()
delivery_schema = WebhookDeliverySchema()
KEY_MISSING = (409, "a conflict, or credentials_key_missing: no DNI_CREDENTIALS_KEYS to "
                    "encrypt the secret with")


def credential_box() -> CredentialBox:
    return CredentialBox(current_app.extensions["dni"].settings.credentials_keys)


def allow_hosts() -> tuple[str, ...]:
    return current_app.extensions["dni"].settings.outbound_allow_hosts


def subscription_view(row: WebhookSubscription, secret: str | None = None) -> dict:
    """``secret``: the plain secret, given only by the create and rotate answers."""
    return subscription_schema.dump(With(
        row, url=masked_url(row.url),
        secret=secret or service.masked_secret(credential_box(), row)))


def shown_attempt(row, full: bool) -> With:
    """An attempt; request headers and bodies, and response bodies, only for admins."""
    request_part, response_part = dict(row.request or {}), dict(row.response or {})
    if not full:
        error = response_part.get("error")
        request_part = {"method": request_part.get("method"), "url": request_part.get("url")}
        response_part = {"status": response_part.get("status"),
                         "error": error.split(":", 1)[0][:60] if isinstance(error, str)
                         else None}
    return With(row, request=request_part, response=response_part)


def delivery_view(row: WebhookDelivery, attempts: list, full: bool) -> dict:
    return delivery_schema.dump(With(row, log=[shown_attempt(a, full) for a in attempts]))


def changed(fn, *args, **kwargs):
    """Run a service change and commit it, its errors in the one error shape."""
    try:
        result = fn(*args, **kwargs)
        db.session.commit()
        return result
    except WebhookError as exc:
        db.session.rollback()
        raise ApiError(exc.message, fields=exc.fields, status=exc.status, code=exc.code) \
            from None
    except MissingKey as exc:
        db.session.rollback()
        raise Conflict(str(exc), code="credentials_key_missing") from None


def get_subscription(subscription_id: int) -> WebhookSubscription:
    """A subscription the token may see; any other is as unknown."""
    row = db.session.get(WebhookSubscription, subscription_id)
    if not visible(row):
        raise NotFound(f"unknown webhook {subscription_id}", code="unknown_webhook")
    return row


# -- subscriptions ---------------------------------------------------------------------------


@bp.post("/v1/webhooks")
@documented("Subscribe a URL to events of a site (optionally only one publisher's calls); "
            "the answer shows the signing secret, this once", subscription_schema, status=201,
            body=WebhookCreateSchema, errors=(400, 401, 403, 404, KEY_MISSING, 422))
def create_webhook():
    data = create_schema.load(json_object())
    site = get_site(data["site"])
    row, secret = changed(service.create, db.session, credential_box(), site_id=site.id,
                          url=data["url"], events=data["events"],
                          publisher=data["publisher"], enabled=data["enabled"],
                          allow_hosts=allow_hosts())
    return jsonify(subscription_view(row, secret)), 201


@bp.get("/v1/webhooks")
@documented("List webhook subscriptions (query: site, limit); secrets masked",
            WebhookSubscriptionListSchema, errors=(401, 404, 422))
def list_webhooks():
    query = select(WebhookSubscription).order_by(WebhookSubscription.id)
    if "site" in request.args:
        query = query.where(WebhookSubscription.site_id ==
                            get_site(request.args["site"], lookup_only=True).id)
    rows = db.session.scalars(scoped(query, WebhookSubscription.publisher).limit(limit_arg()))
    return jsonify(webhooks=[subscription_view(r) for r in rows])


@bp.get("/v1/webhooks/<int:subscription_id>")
@documented("Show a webhook subscription (secret masked)", subscription_schema,
            errors=(401, 404))
def show_webhook(subscription_id: int):
    return jsonify(subscription_view(get_subscription(subscription_id)))


@bp.patch("/v1/webhooks/<int:subscription_id>")
@documented("Change a subscription's url, events or enabled (enabling clears the reason it "
            "was disabled); rotate_secret answers a new secret, this once",
            subscription_schema, body=WebhookUpdateSchema,
            errors=(400, 401, 403, 404, KEY_MISSING, 422))
def update_webhook(subscription_id: int):
    row = get_subscription(subscription_id)
    data = update_schema.load(json_object())
    secret = changed(service.update, db.session, credential_box(), row, data,
                     allow_hosts=allow_hosts())
    return jsonify(subscription_view(row, secret))


@bp.delete("/v1/webhooks/<int:subscription_id>")
@documented("Delete a subscription, its queue and its delivery log", subscription_schema,
            errors=(401, 403, 404))
def delete_webhook(subscription_id: int):
    row = get_subscription(subscription_id)
    view = subscription_view(row)
    changed(service.remove, db.session, row)
    return jsonify(view)


# -- deliveries ------------------------------------------------------------------------------


@bp.get("/v1/webhooks/<int:subscription_id>/deliveries")
@documented("A subscription's deliveries, newest first, each with its attempts (request, "
            "response status, timing); query: status, limit", WebhookDeliveryListSchema,
            errors=(401, 404, 422))
def list_webhook_deliveries(subscription_id: int):
    row = get_subscription(subscription_id)
    status = request.args.get("status")
    if status is not None and status not in STATUSES:
        raise Invalid("unknown status", fields={"status": f"one of {', '.join(STATUSES)}"})
    rows = list(db.session.scalars(service.deliveries_query(row.id, status)
                                   .limit(limit_arg(default=50, maximum=500))))
    attempts = service.attempts_of(db.session, [r.id for r in rows])
    full = g.principal.scope == "admin"
    return jsonify(deliveries=[delivery_view(r, attempts[r.id], full) for r in rows])


@bp.post("/v1/webhooks/<int:subscription_id>/deliveries/<int:delivery_id>/replay")
@documented("Send a delivery's event again (same event id) as a new delivery",
            delivery_schema, status=202, errors=(401, 403, 404, 409))
def replay_webhook_delivery(subscription_id: int, delivery_id: int):
    row = get_subscription(subscription_id)
    delivery = db.session.get(WebhookDelivery, delivery_id)
    if delivery is None or delivery.subscription_id != row.id:
        raise NotFound(f"unknown delivery {delivery_id}", code="unknown_delivery")
    copy = changed(service.replay, db.session, row, delivery)
    return jsonify(delivery_view(copy, [], True)), 202


# -- the payload's call view, for the worker --------------------------------------------------


def call_renderer(app):
    """For the worker: a call as a subscriber may see it through ``GET /v1/calls/<id>``
    (publisher-scoped when the subscription has a publisher)."""
    from attribution.models import Call
    from dni_server.api.calls import call_detail
    from dni_server.tokens import Principal

    def render(_session, call_id: int, publisher: str | None) -> dict | None:
        with app.app_context():
            g.principal = (Principal("publisher", publisher) if publisher
                           else Principal("read_only"))
            call = db.session.get(Call, call_id)
            if not visible(call):
                return None
            return call_detail(call)

    return render
