"""SQL records of autoscale: each pool's policy, and every decision with its reason.

The decision log is also the memory of the worker: when a pool last changed (its cooldown)
and how many numbers were bought today (the daily limit) are read from it, so a restart
or a second worker forgets nothing.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Boolean, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from pools.models import Base, utcnow

_bigint = BigInteger().with_variant(Integer, "sqlite")


class PoolAutoscale(Base):
    """A pool's autoscale policy (``Policy``'s JSON form, its account resolved to an id)."""

    __tablename__ = "pool_autoscale"

    pool_id: Mapped[int] = mapped_column(ForeignKey("pools.id"), primary_key=True)
    policy: Mapped[dict] = mapped_column(default=dict)
    enabled: Mapped[bool] = mapped_column(Boolean, default=False)  # the worker's filter
    # The worker decides again from then; claimed with a conditional update, so one worker
    # decides for a pool at a time.
    next_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class AutoscaleDecision(Base):
    """One decision: grow, trim or hold, why, and (in apply mode) what came of it."""

    __tablename__ = "autoscale_decisions"
    __table_args__ = (Index("ix_autoscale_decisions_pool_at", "pool_id", "at"),)

    id: Mapped[int] = mapped_column(_bigint, primary_key=True)
    pool_id: Mapped[int] = mapped_column(ForeignKey("pools.id"))
    at: Mapped[dt.datetime] = mapped_column()
    action: Mapped[str] = mapped_column(String(8))  # grow, trim or hold
    numbers: Mapped[int] = mapped_column(Integer, default=0)  # decided
    size: Mapped[int] = mapped_column(Integer)  # active numbers when deciding
    expected: Mapped[float | None] = mapped_column(Float, default=None)  # after the decision
    reason: Mapped[str] = mapped_column(Text)
    mode: Mapped[str] = mapped_column(String(8))  # propose or apply
    applied: Mapped[bool] = mapped_column(Boolean, default=False)
    # Numbers bought or retired (None: not carried out yet, or never: propose and hold).
    done: Mapped[int | None] = mapped_column(Integer, default=None)
    result: Mapped[str | None] = mapped_column(Text, default=None)
