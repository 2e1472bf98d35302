"""SQL records of outgoing webhooks.

``WebhookDelivery`` is the queue: one row per event per subscription, written in the
transaction that changed the call (or pool), and moved by the worker through the states
of the conversions outbox::

    pending -> sending -> sent
                       -> retry -> sending ...      (failure: back-off, Retry-After)
                       -> failed                    (gave up; replay queues a copy)

Rows of one subscription that share an ``ordering_key`` (``call:<id>``, ``pool:<id>``) are
sent in id order: a row is not claimed while an earlier one is still pending, retrying or
sending.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from pools.models import Base, utcnow

STATUSES = ("pending", "sending", "retry", "sent", "failed")
DUE = ("pending", "retry")
OPEN = ("pending", "retry", "sending")  # not settled yet: later rows of its key wait

_bigint = BigInteger().with_variant(Integer, "sqlite")


class WebhookSubscription(Base):
    """Where a site's events go. ``secret`` is sealed (``fernet:...``) and never shown again
    after the create (or rotate) answer."""

    __tablename__ = "webhook_subscriptions"

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    publisher: Mapped[str | None] = mapped_column(String(200), default=None)
    url: Mapped[str] = mapped_column(String(2000))
    events: Mapped[list] = mapped_column(default=list)
    secret: Mapped[str] = mapped_column(Text)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    disabled_reason: Mapped[str | None] = mapped_column(Text, default=None)
    failures_in_a_row: Mapped[int] = mapped_column(Integer, default=0)
    failing_since: Mapped[dt.datetime | None] = mapped_column(default=None)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class WebhookDelivery(Base):
    """One event for one subscription, and where its delivery stands. ``body`` is frozen at
    the first attempt, so every retry sends the same bytes (with a fresh signature)."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_order", "subscription_id", "ordering_key", "id"),
        Index("ix_webhook_deliveries_claim", "claim_token"),
    )

    id: Mapped[int] = mapped_column(_bigint, primary_key=True)
    subscription_id: Mapped[int] = mapped_column(ForeignKey("webhook_subscriptions.id"))
    event_id: Mapped[str] = mapped_column(String(40))  # the same for every subscription
    event_type: Mapped[str] = mapped_column(String(40))
    call_id: Mapped[int | None] = mapped_column(_bigint, default=None, index=True)
    ordering_key: Mapped[str | None] = mapped_column(String(64), default=None)
    data: Mapped[dict | None] = mapped_column(default=None)  # for events that are not a call's
    body: Mapped[str | None] = mapped_column(Text, default=None)
    replay_of: Mapped[int | None] = mapped_column(_bigint, default=None)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    claim_token: Mapped[str | None] = mapped_column(String(32), default=None)
    lease_until: Mapped[dt.datetime | None] = mapped_column(default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    sent_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class WebhookAttempt(Base):
    """One POST to a subscriber: the request as sent (signature included: it is no secret),
    the answer's status and a clipped body, and how long it took."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(_bigint, primary_key=True)
    delivery_id: Mapped[int] = mapped_column(_bigint, ForeignKey("webhook_deliveries.id"),
                                             index=True)
    outcome: Mapped[str] = mapped_column(String(16))  # sent, retry, failed
    detail: Mapped[str | None] = mapped_column(Text, default=None)
    request: Mapped[dict] = mapped_column(default=dict)
    response: Mapped[dict] = mapped_column(default=dict)
    http_status: Mapped[int | None] = mapped_column(Integer, default=None)
    elapsed_ms: Mapped[int | None] = mapped_column(Integer, default=None)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class WebhookMark(Base):
    """What was already emitted about one subject (``call:<id>``, ``pool:<id>``), so each
    change is emitted once; its row lock orders concurrent emits for the same subject."""

    __tablename__ = "webhook_marks"

    subject: Mapped[str] = mapped_column(String(64), primary_key=True)
    state: Mapped[dict] = mapped_column(default=dict)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)
