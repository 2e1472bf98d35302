"""SQL records of buyers, routing plans, and each routed call's decisions.

A buyer's and a plan's settings are kept whole as the validated JSON contract
(``routing.spec``): the routing path reads them from a cache (``routing.directory``), never
column by column, and the API answers them back as they were given.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import BigInteger, Boolean, ForeignKey, Integer, Numeric, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from pools.models import Base, utcnow


class Buyer(Base):
    """An advertiser who pays per converted call; ``spec`` is its contract (targets, caps...)."""

    __tablename__ = "buyers"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    # None: the network's own buyer; else only that publisher's tokens and plans see it.
    publisher: Mapped[str | None] = mapped_column(String(200), default=None, index=True)
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    spec: Mapped[dict] = mapped_column(default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class RoutingPlan(Base):
    """How a number's calls are qualified (IVR) and offered to buyers (tiers)."""

    __tablename__ = "routing_plans"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    publisher: Mapped[str | None] = mapped_column(String(200), default=None, index=True)
    spec: Mapped[dict] = mapped_column(default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class CallRouting(Base):
    """One routed call's log: its IVR answers, every offer and every buyer skipped (with why),
    who won, and what it earned. Keyed like calls, by carrier and carrier call id, so it is
    written whether or not the call itself reached SQL yet."""

    __tablename__ = "call_routing"
    __table_args__ = (UniqueConstraint("provider", "provider_call_id",
                                       name="uq_call_routing_call"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    provider: Mapped[str] = mapped_column(String(16))
    provider_call_id: Mapped[str] = mapped_column(String(128))
    plan_id: Mapped[int | None] = mapped_column(ForeignKey("routing_plans.id"), default=None)
    ivr: Mapped[dict] = mapped_column(default=dict)
    offers: Mapped[list] = mapped_column(default=list)
    skipped: Mapped[list] = mapped_column(default=list)
    buyer_id: Mapped[int | None] = mapped_column(ForeignKey("buyers.id"), default=None,
                                                 index=True)
    target: Mapped[str | None] = mapped_column(String(255), default=None)
    converted: Mapped[bool] = mapped_column(Boolean, default=False)
    revenue: Mapped[Decimal] = mapped_column(Numeric(12, 2), default=Decimal("0"))
    outcome: Mapped[str | None] = mapped_column(String(32), default=None)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)
