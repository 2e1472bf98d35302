"""SQL records of buyers, routing plans, and each routed call's decisions.

A buyer's and a plan's settings are kept whole as the validated JSON contract
(``routing.spec``): the routing path reads them from a cache (``routing.directory``), never
column by column, and the API answers them back as they were given.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    UniqueConstraint,
    delete,
    event,
    select,
)
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship
from sqlalchemy.orm.attributes import get_history

from attribution.models import Call
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
                                       name="uq_call_routing_call"),
                      # The report's offers, filtered by day and site (migration 0012).
                      Index("ix_call_routing_report", "local_day", "site_id", "publisher",
                            "plan_id"))

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
    # The call's own (``calls``), copied when the log is written: what reports filter on,
    # so they need not join every call. None until the call itself reached SQL.
    site_id: Mapped[int | None] = mapped_column(default=None)
    local_day: Mapped[dt.date | None] = mapped_column(Date, default=None)
    publisher: Mapped[str | None] = mapped_column(String(200), default=None)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    # ``offers`` again, a row each, for reports (written with it, never read back here).
    offer_rows: Mapped[list[CallRoutingOffer]] = relationship(lazy="noload")


class CallRoutingOffer(Base):
    """One offer of a routed call's log (``CallRouting.offers``) as a row: what the report's
    offers, answer rate and ring time count, without parsing every log's JSON."""

    __tablename__ = "call_routing_offers"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    routing_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"),
        ForeignKey("call_routing.id", ondelete="CASCADE"), index=True)
    buyer_id: Mapped[int | None] = mapped_column(default=None)
    target: Mapped[str | None] = mapped_column(String(255), default=None)
    outcome: Mapped[str | None] = mapped_column(String(32), default=None)
    ring_seconds: Mapped[float | None] = mapped_column(Float, default=None)


# -- what reports read, kept with each log ----------------------------------------------------

COPIED = ("site_id", "local_day", "publisher")  # the call's, on its routing log


@event.listens_for(Session, "before_flush")
def _report_rows(session: Session, _context, _instances) -> None:
    """Whoever writes a routing log (``routing.calls.record``, an import, a test), its
    report columns and offer rows are written with it."""
    for row in [*session.new, *session.dirty]:
        if isinstance(row, CallRouting):
            fill_report_columns(session, row)


def fill_report_columns(session: Session, row: CallRouting) -> None:
    """Copy the call's site, local day and publisher onto the log, inside the statement
    that writes it (no read of its own; None while the call is not in SQL yet, tried again
    at the log's next write); and write its offers as rows when they changed (one DELETE
    and one INSERT)."""
    if row.local_day is None:
        for name in COPIED:
            setattr(row, name, select(getattr(Call, name)).where(
                Call.provider == row.provider,
                Call.provider_call_id == row.provider_call_id).scalar_subquery())
    if row.id is not None and not get_history(row, "offers").has_changes():
        return
    if row.id is not None:
        session.execute(delete(CallRoutingOffer).where(CallRoutingOffer.routing_id == row.id))
    row.offer_rows = [CallRoutingOffer(buyer_id=o.get("buyer"), target=o.get("target"),
                                       outcome=o.get("outcome"),
                                       ring_seconds=o.get("ring_seconds"))
                      for o in row.offers or []]
