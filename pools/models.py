"""SQL records of sites, pools, their numbers and every lease ever made.

SQL is the system of record for configuration and lease history; Redis holds only the
live state of each pool and is rebuilt from these tables when it comes back empty.
Lease times are integer milliseconds since the epoch: exact, cheap to compare, and the
same on SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, registry, relationship


class UTCDateTime(TypeDecorator):
    """A timezone-aware UTC datetime on every engine (SQLite stores it naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given where UTC is required")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Base(DeclarativeBase):
    registry = registry(type_annotation_map={dt.datetime: UTCDateTime(), dict: JSON, list: JSON})


class Site(Base):
    """A publisher's website, identified on pages by its public key."""

    __tablename__ = "sites"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    domains: Mapped[list] = mapped_column(default=list)
    keyword_params: Mapped[list] = mapped_column(default=list)
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    # Call insight (attribution.insight): keywords listened for in its calls' recordings,
    # and how many days a recording is kept (None: until deleted through the API).
    insight_keywords: Mapped[list | None] = mapped_column(default=None)
    recording_retention_days: Mapped[int | None] = mapped_column(Integer, default=None)
    # Enabled outgoing-webhook subscriptions (kept by attribution.webhooks): read with the
    # site a call already loads, so a site without any costs its calls no query.
    webhook_subscriptions: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    pools: Mapped[list[Pool]] = relationship(back_populates="site", order_by="Pool.id")


class Pool(Base):
    """Tracking numbers shown in place of one swap target on one site."""

    __tablename__ = "pools"

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    target: Mapped[str] = mapped_column(String(16))
    destination: Mapped[str] = mapped_column(String(16))
    fallback: Mapped[str] = mapped_column(String(16))
    lease_seconds: Mapped[int] = mapped_column(Integer, default=300)
    max_lease_seconds: Mapped[int] = mapped_column(Integer, default=4 * 3600)
    cooldown_seconds: Mapped[int] = mapped_column(Integer, default=60)
    attribution_window_seconds: Mapped[int] = mapped_column(Integer, default=2 * 3600)
    exhaustion_policy: Mapped[str] = mapped_column(String(16), default="fallback")
    priority: Mapped[int] = mapped_column(Integer, default=0)
    rules: Mapped[list] = mapped_column(default=list)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # What happens to the calls its numbers receive (see attribution.qualification).
    record_calls: Mapped[bool] = mapped_column(Boolean, default=False)
    qualification: Mapped[dict] = mapped_column(default=dict)
    revenue: Mapped[Decimal] = mapped_column(Numeric(12, 2), default=Decimal("0"))
    payout: Mapped[Decimal] = mapped_column(Numeric(12, 2), default=Decimal("0"))
    publisher: Mapped[str | None] = mapped_column(String(200), default=None)
    # A pay-per-call plan (routing.models.RoutingPlan) offers the calls to buyers instead of
    # forwarding them to ``destination``. No ORM foreign key: pools/ knows nothing of routing/.
    routing_plan_id: Mapped[int | None] = mapped_column(Integer, default=None)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    site: Mapped[Site] = relationship(back_populates="pools")
    numbers: Mapped[list[PoolNumber]] = relationship(
        back_populates="pool", order_by="PoolNumber.id"
    )


class PoolNumber(Base):
    """One tracking number of a pool; ``status`` is active, retiring or retired."""

    __tablename__ = "pool_numbers"
    __table_args__ = (
        # A number serves one pool at a time; once retired it may join another.
        Index(
            "uq_pool_numbers_live_number",
            "number",
            unique=True,
            sqlite_where=text("status != 'retired'"),
            postgresql_where=text("status != 'retired'"),
        ),
        Index("ix_pool_numbers_number", "number"),  # matching looks numbers up at any status
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    pool_id: Mapped[int] = mapped_column(ForeignKey("pools.id"), index=True)
    number: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="active")
    added_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    retired_at: Mapped[dt.datetime | None] = mapped_column(default=None)

    pool: Mapped[Pool] = relationship(back_populates="numbers")


class Lease(Base):
    """One holding of a number by a session, copied from the pool's event stream."""

    __tablename__ = "leases"
    __table_args__ = (
        UniqueConstraint("pool_id", "number", "started_at_ms", "session_id", name="uq_leases_start"),
        # Matching asks "who held number N at time T": number first, then time.
        Index("ix_leases_number_start", "number", "started_at_ms"),
        Index("ix_leases_session", "session_id"),
        Index("ix_leases_pool_open", "pool_id", "ended_at_ms"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    pool_id: Mapped[int] = mapped_column(ForeignKey("pools.id"))
    number: Mapped[str] = mapped_column(String(16))
    session_id: Mapped[str] = mapped_column(String(128))
    started_at_ms: Mapped[int] = mapped_column(BigInteger)
    last_renewed_at_ms: Mapped[int] = mapped_column(BigInteger)
    expires_at_ms: Mapped[int] = mapped_column(BigInteger)
    ended_at_ms: Mapped[int | None] = mapped_column(BigInteger, default=None)
    end_reason: Mapped[str | None] = mapped_column(String(16), default=None)


class PoolExhaustion(Base):
    """A visitor who was shown the fallback because the pool had no number to give."""

    __tablename__ = "pool_exhaustions"
    __table_args__ = (
        UniqueConstraint("pool_id", "session_id", "at_ms", name="uq_pool_exhaustions"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    pool_id: Mapped[int] = mapped_column(ForeignKey("pools.id"), index=True)
    session_id: Mapped[str] = mapped_column(String(128))
    at_ms: Mapped[int] = mapped_column(BigInteger)
