"""SQL records of carrier accounts, purchase requests and the numbers bought through them.

A provisioned number moves through its states, each change committed before the next step
so that a crash leaves a row saying what to check::

    buying -> bought -> added            (confirmed by the carrier, then in the pool)
           -> failed                     (the carrier refused; nothing bought)
    added -> quarantined -> released     (retired from its pool, released at the carrier)

A ``buying`` or ``bought`` row left behind by a crash is what the worker reconciles.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from pools.models import Base, utcnow

CARRIERS = ("twilio", "telnyx")
STATES = ("buying", "bought", "added", "failed", "quarantined", "released")

_bigint = BigInteger().with_variant(Integer, "sqlite")


class CarrierAccount(Base):
    """An account numbers are bought from; ``credentials`` holds sealed secrets."""

    __tablename__ = "carrier_accounts"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    carrier: Mapped[str] = mapped_column(String(16))
    # twilio: account_sid, auth_token; telnyx: api_key, connection_id (secrets sealed).
    credentials: Mapped[dict] = mapped_column(default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ProvisionOrder(Base):
    """One purchase request, named by its idempotency key: a retry finds it, not a new one."""

    __tablename__ = "provision_orders"

    id: Mapped[int] = mapped_column(_bigint, primary_key=True)
    request_key: Mapped[str] = mapped_column(String(128), unique=True)
    pool_id: Mapped[int] = mapped_column(ForeignKey("pools.id"), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("carrier_accounts.id"), index=True)
    count: Mapped[int] = mapped_column(Integer)
    params: Mapped[dict] = mapped_column(default=dict)  # area_code, region, toll_free, country
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ProvisionedNumber(Base):
    """A number this service bought (or tried to): which account, which order, what state."""

    __tablename__ = "provisioned_numbers"
    __table_args__ = (Index("ix_provisioned_numbers_state", "state", "release_after"),
                      Index("ix_provisioned_numbers_number", "number"))

    id: Mapped[int] = mapped_column(_bigint, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("carrier_accounts.id"), index=True)
    order_id: Mapped[int | None] = mapped_column(ForeignKey("provision_orders.id"), index=True,
                                                 default=None)
    pool_id: Mapped[int | None] = mapped_column(ForeignKey("pools.id"), default=None)
    number: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16), default="buying")
    carrier_ref: Mapped[str | None] = mapped_column(String(64), default=None)  # PN sid / id
    carrier_order: Mapped[str | None] = mapped_column(String(64), default=None)  # Telnyx order
    error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    bought_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    added_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    quarantined_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    release_after: Mapped[dt.datetime | None] = mapped_column(default=None)
    released_at: Mapped[dt.datetime | None] = mapped_column(default=None)
