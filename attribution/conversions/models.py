"""SQL records of offline conversions: destinations, rules, the outbox and its attempts log.

One ``ConversionDelivery`` row per call per destination is the outbox: it is written in the
same transaction that (re)qualifies the call, and the worker moves it through its states::

    pending -> sending -> sent                      (the platform took it)
                       -> retry -> sending ...      (transient failure, back-off)
                       -> failed                    (permanent, or too many attempts)
    pending/retry/failed -> skipped                 (no longer wanted, or nothing to send)
    sent -> retraction_pending -> sending -> retracted
    sent -> retraction_unsupported                  (the platform has no retraction)
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from pools.models import Base, utcnow

DESTINATION_KINDS = ("google", "microsoft", "meta", "ga4")
VALUE_SOURCES = ("fixed", "pool_revenue", "disposition")
STATUSES = ("pending", "sending", "retry", "sent", "failed", "skipped", "retracted",
            "retraction_pending", "retraction_unsupported")
DUE = ("pending", "retry", "retraction_pending")  # waiting for the worker

_bigint = BigInteger().with_variant(Integer, "sqlite")


class ConversionDestination(Base):
    """Where a site's conversions go: a platform kind and its settings (credentials included)."""

    __tablename__ = "conversion_destinations"
    __table_args__ = (UniqueConstraint("site_id", "name", name="uq_conversion_destinations_name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(16))
    config: Mapped[dict] = mapped_column(default=dict)  # never shown back unmasked
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    managed_by: Mapped[str] = mapped_column(String(8), default="api")  # "api" or "env"
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ConversionRule(Base):
    """Which calls of a site (or of one of its pools) count, and what each destination gets.

    ``actions`` maps a destination id (as a string) to ``{"name": ..., "enabled": bool}``.
    A pool's rule beats its site's rule.
    """

    __tablename__ = "conversion_rules"
    __table_args__ = (Index("ix_conversion_rules_site_pool", "site_id", "pool_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"))
    pool_id: Mapped[int | None] = mapped_column(ForeignKey("pools.id"), default=None)
    qualified_only: Mapped[bool] = mapped_column(Boolean, default=True)
    # Fire only on a pay-per-call buyer's conversion of the call (see ``rules``).
    buyer_converted_only: Mapped[bool] = mapped_column(Boolean, default=False)
    min_duration: Mapped[int | None] = mapped_column(Integer, default=None)
    dispositions_included: Mapped[list] = mapped_column(default=list)
    dispositions_excluded: Mapped[list] = mapped_column(default=list)
    value_source: Mapped[str] = mapped_column(String(16), default="pool_revenue")
    value: Mapped[Decimal | None] = mapped_column(Numeric(12, 2), default=None)
    currency: Mapped[str] = mapped_column(String(3), default="USD")
    # How a visit that never answered the consent question is treated: "granted" or "denied".
    unknown_consent: Mapped[str] = mapped_column(String(8), default="granted")
    actions: Mapped[dict] = mapped_column(default=dict)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    managed_by: Mapped[str] = mapped_column(String(8), default="api")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ConversionDelivery(Base):
    """The outbox: one call's conversion for one destination, and where its delivery stands."""

    __tablename__ = "conversion_deliveries"
    __table_args__ = (
        UniqueConstraint("call_id", "destination_id", name="uq_conversion_deliveries_call_dest"),
        Index("ix_conversion_deliveries_due", "status", "next_attempt_at"),
        Index("ix_conversion_deliveries_claim", "claim_token"),
    )

    id: Mapped[int] = mapped_column(_bigint, primary_key=True)
    call_id: Mapped[int] = mapped_column(_bigint, ForeignKey("calls.id"), index=True)
    destination_id: Mapped[int] = mapped_column(ForeignKey("conversion_destinations.id"),
                                                index=True)
    rule_id: Mapped[int | None] = mapped_column(ForeignKey("conversion_rules.id"), default=None)
    key: Mapped[str] = mapped_column(String(64))  # the platform's dedupe key
    name: Mapped[str] = mapped_column(String(200))
    value: Mapped[Decimal | None] = mapped_column(Numeric(12, 2), default=None)
    currency: Mapped[str] = mapped_column(String(3), default="USD")
    consent: Mapped[bool] = mapped_column(Boolean, default=True)
    status: Mapped[str] = mapped_column(String(24), default="pending")
    operation: Mapped[str] = mapped_column(String(16), default="conversion")  # or "retraction"
    wanted: Mapped[bool] = mapped_column(Boolean, default=True)  # does the call still count?
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    claim_token: Mapped[str | None] = mapped_column(String(32), default=None)
    lease_until: Mapped[dt.datetime | None] = mapped_column(default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    sent_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    retracted_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ConversionAttempt(Base):
    """One HTTP exchange with a platform, as it may be shown: secrets already redacted."""

    __tablename__ = "conversion_attempts"

    id: Mapped[int] = mapped_column(_bigint, primary_key=True)
    delivery_id: Mapped[int] = mapped_column(_bigint, ForeignKey("conversion_deliveries.id"),
                                             index=True)
    operation: Mapped[str] = mapped_column(String(16), default="conversion")
    outcome: Mapped[str] = mapped_column(String(16))  # sent, retry, failed, skipped
    detail: Mapped[str | None] = mapped_column(Text, default=None)
    request: Mapped[dict] = mapped_column(default=dict)  # method, redacted url, body
    response: Mapped[dict] = mapped_column(default=dict)  # status code, body (clipped)
    http_status: Mapped[int | None] = mapped_column(Integer, default=None)
    elapsed_ms: Mapped[int | None] = mapped_column(Integer, default=None)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
