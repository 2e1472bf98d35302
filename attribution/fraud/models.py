"""SQL records of the fraud defences: the block list and each site's policy (migration 0013).

The signals themselves, the score and the review live on the call (``attribution.models.Call``:
``fraud_signals``, ``risk_score``, ``fraud_action``, ``review_state``...).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from pools.models import Base, utcnow


class BlockEntry(Base):
    """A caller kept out: a full number or a prefix (country code, area code, area code and
    exchange), for the whole network (``site_id`` None) or one site, until ``expires_at``."""

    __tablename__ = "block_list"
    __table_args__ = (Index("ix_block_list_value", "value"),
                      Index("ix_block_list_site", "site_id"))

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    value: Mapped[str] = mapped_column(String(20))  # E.164 ("+14155550100") or prefix ("+1415")
    kind: Mapped[str] = mapped_column(String(8))  # number | prefix
    reason: Mapped[str | None] = mapped_column(Text, default=None)
    site_id: Mapped[int | None] = mapped_column(ForeignKey("sites.id"), default=None)
    expires_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    added_by: Mapped[str] = mapped_column(String(200))  # "token:3", "disposition:call:42"
    source: Mapped[str] = mapped_column(String(16), default="api")  # api|import|disposition
    call_id: Mapped[int | None] = mapped_column(BigInteger, default=None)  # the spam call
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class FraudPolicy(Base):
    """A site's thresholds and signal settings (only those that differ from the defaults)."""

    __tablename__ = "fraud_policies"

    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), primary_key=True)
    settings: Mapped[dict] = mapped_column(default=dict)
    updated_by: Mapped[str | None] = mapped_column(String(200), default=None)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)
