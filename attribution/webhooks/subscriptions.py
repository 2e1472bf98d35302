"""Webhook subscriptions (the admin service): validation, secrets, replay, the log's queries.

The secret is generated here (``secrets``), returned once to the caller that created (or
rotated) it, and stored sealed with the conversions' ``CredentialBox`` (Fernet, keys from
``DNI_CREDENTIALS_KEYS``): with no key configured nothing is stored (``MissingKey``).
Views commit; nothing here does.
"""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Iterable
from urllib.parse import urlsplit

from sqlalchemy import delete, exists, func, or_, select
from sqlalchemy import update as sql_update
from sqlalchemy.orm import Session
from sqlalchemy.orm.util import identity_key

from attribution.conversions.credentials import CredentialBox
from attribution.conversions.destination import mask
from attribution.conversions.outbound import AddressGuard, checked_url, refusal
from attribution.models import StaticNumber
from attribution.webhooks.events import EVENT_TYPES
from attribution.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookSubscription
from pools.models import Pool, Site, utcnow

SECRET_PREFIX = "whsec_"
MAX_EVENTS = 50


class WebhookError(Exception):
    """A request the service refuses; ``status`` and ``code`` say how the API answers."""

    def __init__(self, message: str, *, status: int = 422, code: str = "invalid",
                 fields: dict | None = None):
        super().__init__(message)
        self.message, self.status, self.code, self.fields = message, status, code, fields


def invalid(field: str, message: str) -> WebhookError:
    return WebhookError(message, fields={field: message})


# -- validation ------------------------------------------------------------------------------


def check_url(value: object, allow_hosts: Iterable[str] = ()) -> str:
    """An https URL to a public host; plain http only to a host the operator allows
    (``DNI_OUTBOUND_ALLOW_HOSTS``). Names are resolved and checked again at each send."""
    if not isinstance(value, str) or not value.strip():
        raise invalid("url", "an https URL is required")
    value = value.strip()
    try:
        checked_url(value)
    except ValueError as exc:
        raise invalid("url", str(exc)) from None
    parts = urlsplit(value)
    host = parts.hostname or ""
    exempt = AddressGuard(allow_hosts).exempt(host)
    if parts.scheme != "https" and not exempt:
        raise invalid("url", "must be an https URL (http only for hosts in "
                             "DNI_OUTBOUND_ALLOW_HOSTS)")
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        address = None
    if address is not None and not exempt and (why := refusal(address)):
        raise invalid("url", f"{host} is a {why} address: webhooks only go to public "
                             "addresses")
    if len(value) > 2000:
        raise invalid("url", "at most 2000 characters")
    return value


def check_events(value: object) -> list[str]:
    """Known event types, each once, in the order given."""
    if not isinstance(value, list) or not value:
        raise invalid("events", f"a non-empty list of: {', '.join(EVENT_TYPES)}")
    if len(value) > MAX_EVENTS or not all(isinstance(v, str) for v in value):
        raise invalid("events", "a list of event type names")
    unknown = [v for v in value if v not in EVENT_TYPES]
    if unknown:
        raise invalid("events", f"unknown event types {unknown}; known: "
                                f"{', '.join(EVENT_TYPES)}")
    return list(dict.fromkeys(value))


def check_publisher(db: Session, site_id: int, publisher: object) -> str | None:
    """A publisher with a pool or a static number on the site (its calls are its own)."""
    if publisher is None:
        return None
    if not isinstance(publisher, str) or not publisher.strip() or len(publisher) > 200:
        raise invalid("publisher", "a publisher name (1 to 200 characters) or null")
    if not db.scalar(select(or_(
            exists().where(Pool.site_id == site_id, Pool.publisher == publisher),
            exists().where(StaticNumber.site_id == site_id,
                           StaticNumber.publisher == publisher)))):
        raise invalid("publisher", "this publisher has no pool or static number on the site")
    return publisher


# -- secrets ---------------------------------------------------------------------------------


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def seal(box: CredentialBox, secret: str) -> str:
    """The secret as stored (raises ``MissingKey`` when no key is configured)."""
    return box.seal({"secret": secret})["secret"]


def open_secret(box: CredentialBox, row: WebhookSubscription) -> str:
    return box.open({"secret": row.secret})["secret"]


def reseal(db: Session, box: CredentialBox) -> int:
    """Re-encrypt secrets sealed with an older key (after a rotation of
    ``DNI_CREDENTIALS_KEYS``) with the first one; returns rows changed."""
    if not box.ready:
        return 0
    changed = 0
    for row in db.scalars(select(WebhookSubscription).order_by(WebhookSubscription.id)):
        if not box.stale({"secret": row.secret}):
            continue
        try:
            row.secret = seal(box, open_secret(box, row))
        except ValueError:  # no configured key opens it: left alone
            continue
        changed += 1
    return changed


def masked_secret(box: CredentialBox, row: WebhookSubscription) -> str:
    """The secret as it may be shown after creation: its prefix and last four characters."""
    try:
        return SECRET_PREFIX + mask(open_secret(box, row))
    except ValueError:  # its key was removed
        return SECRET_PREFIX + "****"


# -- changes ---------------------------------------------------------------------------------


def create(db: Session, box: CredentialBox, *, site_id: int, url: object, events: object,
           publisher: object = None, enabled: bool = True,
           allow_hosts: Iterable[str] = ()) -> tuple[WebhookSubscription, str]:
    """A new subscription and its secret in plain text (to be shown this once)."""
    row = WebhookSubscription(
        site_id=site_id, url=check_url(url, allow_hosts), events=check_events(events),
        publisher=check_publisher(db, site_id, publisher), enabled=bool(enabled),
        failures_in_a_row=0)
    secret = new_secret()
    row.secret = seal(box, secret)
    db.add(row)
    db.flush()
    recount(db, site_id)
    return row, secret


def update(db: Session, box: CredentialBox, row: WebhookSubscription, changes: dict,
           allow_hosts: Iterable[str] = ()) -> str | None:
    """Apply ``changes`` (url, events, enabled, rotate_secret); returns a new secret when
    one was asked for. Enabling clears the failure run and the reason it was disabled."""
    if "url" in changes:
        row.url = check_url(changes["url"], allow_hosts)
    if "events" in changes:
        row.events = check_events(changes["events"])
    if "enabled" in changes:
        if changes["enabled"] and not row.enabled:
            row.disabled_reason, row.failures_in_a_row, row.failing_since = None, 0, None
        elif not changes["enabled"] and row.enabled:
            row.disabled_reason = "disabled through the API"
        row.enabled = bool(changes["enabled"])
    secret = None
    if changes.get("rotate_secret"):
        secret = new_secret()
        row.secret = seal(box, secret)
    row.updated_at = utcnow()
    db.flush()
    recount(db, row.site_id)
    return secret


def remove(db: Session, row: WebhookSubscription) -> None:
    """Delete a subscription with its queue and log."""
    delivery_ids = select(WebhookDelivery.id).where(WebhookDelivery.subscription_id == row.id)
    db.execute(delete(WebhookAttempt).where(WebhookAttempt.delivery_id.in_(delivery_ids)))
    db.execute(delete(WebhookDelivery).where(WebhookDelivery.subscription_id == row.id))
    db.delete(row)
    db.flush()
    recount(db, row.site_id)


def recount(db: Session, site_id: int) -> None:
    """Store the site's number of enabled subscriptions on the site row, in the change's
    transaction: emits read it from the site their call already loaded, so calls of sites
    without subscriptions cost no query (``events.subscriptions_for``)."""
    enabled = (select(func.count(WebhookSubscription.id))
               .where(WebhookSubscription.site_id == site_id, WebhookSubscription.enabled)
               .scalar_subquery())
    db.execute(sql_update(Site).where(Site.id == site_id).values(webhook_subscriptions=enabled)
               .execution_options(synchronize_session=False))
    site = db.identity_map.get(identity_key(Site, site_id))
    if site is not None:
        db.expire(site, ["webhook_subscriptions"])


def replay(db: Session, subscription: WebhookSubscription,
           delivery: WebhookDelivery) -> WebhookDelivery:
    """Queue the same event again (same id and, once sent, the same body) as a new delivery.

    A replay is sent as soon as possible, outside the call's order: it repeats an event the
    receiver may already have, which it recognises by the event id.
    """
    if not subscription.enabled:
        raise WebhookError("the subscription is disabled: enable it first", status=409,
                           code="conflict")
    copy = WebhookDelivery(
        subscription_id=delivery.subscription_id, event_id=delivery.event_id,
        event_type=delivery.event_type, call_id=delivery.call_id, ordering_key=None,
        data=delivery.data, body=delivery.body, replay_of=delivery.id, status="pending",
        attempts=0, next_attempt_at=utcnow())
    db.add(copy)
    db.flush()
    return copy


# -- reading ---------------------------------------------------------------------------------


def deliveries_query(subscription_id: int, status: str | None = None):
    query = select(WebhookDelivery).where(WebhookDelivery.subscription_id == subscription_id)
    if status is not None:
        query = query.where(WebhookDelivery.status == status)
    return query.order_by(WebhookDelivery.id.desc())


def attempts_of(db: Session, delivery_ids: list[int]) -> dict[int, list[WebhookAttempt]]:
    out: dict[int, list[WebhookAttempt]] = {i: [] for i in delivery_ids}
    if delivery_ids:
        for attempt in db.scalars(select(WebhookAttempt).where(
                WebhookAttempt.delivery_id.in_(delivery_ids)).order_by(WebhookAttempt.id)):
            out[attempt.delivery_id].append(attempt)
    return out
