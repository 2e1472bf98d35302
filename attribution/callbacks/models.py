"""SQL record of a web callback: the request, its evidence, and every attempt to call."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from pools.models import Base, utcnow

# scheduled: waiting for its moment; calling: a worker placed the business leg;
# completed: the visitor was connected; failed: attempts ran out (or the business
# declined every time); canceled: the business had no number to ring.
STATUSES = ("scheduled", "calling", "completed", "failed", "canceled")
OPEN_STATUSES = ("scheduled", "calling")


class Callback(Base):
    """One visitor's request to be called back, and how the calls went."""

    __tablename__ = "callbacks"
    __table_args__ = (
        Index("ix_callbacks_due", "status", "next_attempt_at"),
        Index("ix_callbacks_site_created", "site_id", "created_at"),
        Index("ix_callbacks_session", "session_id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # "cb_" + random
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"))
    pool_id: Mapped[int | None] = mapped_column(ForeignKey("pools.id"), default=None)
    session_id: Mapped[str] = mapped_column(String(128))
    phone: Mapped[str] = mapped_column(String(16))  # E.164
    name: Mapped[str | None] = mapped_column(String(200), default=None)
    # Evidence of the request: what the visitor was shown and agreed to, where, when,
    # and who (a keyed hash of the IP address and user agent, never the raw values).
    consent_text: Mapped[str] = mapped_column(Text)
    page_url: Mapped[str | None] = mapped_column(Text, default=None)
    client_hash: Mapped[str] = mapped_column(String(64))
    requested_at: Mapped[dt.datetime] = mapped_column()
    wanted_at: Mapped[dt.datetime] = mapped_column()  # the visitor's "at", else requested_at
    calling_rule: Mapped[str] = mapped_column(String(16), default="default")
    time_zones: Mapped[list] = mapped_column(default=list)

    status: Mapped[str] = mapped_column(String(16), default="scheduled")
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Each attempt: {"at", "outcome", "business_call", "visitor_call"}.
    attempt_log: Mapped[list] = mapped_column(default=list)
    last_outcome: Mapped[str | None] = mapped_column(String(32), default=None)
    carrier: Mapped[str | None] = mapped_column(String(16), default=None)
    business_call_id: Mapped[str | None] = mapped_column(String(128), default=None)
    visitor_call_id: Mapped[str | None] = mapped_column(String(128), default=None)
    claim: Mapped[str | None] = mapped_column(String(32), default=None)
    call_id: Mapped[int | None] = mapped_column(BigInteger, default=None)  # calls.id
    flagged: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)
