"""Releasing bought numbers at the carrier, never while a visitor may still call one.

``retire`` takes a provisioned number out of its pool (``catalog.retire_number``: at once
when idle, when its lease ends when leased) and quarantines it. ``release_due`` (the
worker) releases it at the carrier only when all of these hold:

- the quarantine chosen at retirement is over;
- the number is retired in its pool, so its last lease has ended (a leased number stays
  ``retiring`` until its visitor's lease lapses);
- the pool's attribution window has passed since that lease ended, so no call can still be
  credited to the visitor who saw it;
- no pool has taken the number again.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from attribution.numbers.accounts import AccountError
from attribution.numbers.carriers import Bought, CarrierError, NumberApi
from attribution.numbers.models import CarrierAccount, ProvisionedNumber
from pools import catalog
from pools.leases import PoolService
from pools.models import Pool, PoolNumber, utcnow

log = logging.getLogger(__name__)

DEFAULT_QUARANTINE = dt.timedelta(days=7)
MAX_QUARANTINE = dt.timedelta(days=90)


def retire(db: Session, pools: PoolService, row: ProvisionedNumber, *,
           quarantine: dt.timedelta = DEFAULT_QUARANTINE, now_ms: int,
           now: dt.datetime | None = None) -> ProvisionedNumber:
    """Retire a bought number from its pool and quarantine it for release (flushes; the
    caller commits)."""
    if row.state != "added":
        raise AccountError(f"{row.number} is {row.state}, not in a pool: nothing to retire",
                           status=409, code="not_retirable")
    if not dt.timedelta(0) <= quarantine <= MAX_QUARANTINE:
        raise AccountError(f"the quarantine must be from 0 to {MAX_QUARANTINE.days} days",
                           fields={"quarantine_hours": "out of range"})
    pool = db.get(Pool, row.pool_id)
    live = db.scalar(select(PoolNumber.id).where(PoolNumber.pool_id == row.pool_id,
                                                 PoolNumber.number == row.number,
                                                 PoolNumber.status == "active"))
    if pool is not None and live is not None:
        catalog.retire_number(db, pools, pool, row.number, now_ms=now_ms)
    now = now or utcnow()
    row.state, row.quarantined_at, row.release_after = "quarantined", now, now + quarantine
    db.flush()
    return row


def releasable(db: Session, row: ProvisionedNumber, now: dt.datetime) -> str | None:
    """Why the number may not be released yet, or None when it may."""
    if row.release_after and row.release_after > now:
        return "in quarantine"
    if db.scalar(select(PoolNumber.id).where(PoolNumber.number == row.number,
                                             PoolNumber.status != "retired").limit(1)):
        return "still in a pool (its lease has not ended, or a pool took it again)"
    pool = db.get(Pool, row.pool_id) if row.pool_id is not None else None
    if pool is not None:
        ended = db.scalar(select(PoolNumber.retired_at).where(
            PoolNumber.pool_id == pool.id, PoolNumber.number == row.number)
            .order_by(PoolNumber.id.desc()).limit(1))
        if ended is None:
            return "its pool has no record of its last lease ending"
        if ended + dt.timedelta(seconds=pool.attribution_window_seconds) > now:
            return "a call may still be credited to its last visitor"
    return None


def release_due(db: Session, api_for: Callable[[CarrierAccount], NumberApi], *,
                now: dt.datetime | None = None, limit: int = 50) -> dict[str, int]:
    """Release quarantined numbers whose time has come; commits each one."""
    now = now or utcnow()
    counts = {"released": 0, "waiting": 0, "failed": 0}
    rows = list(db.scalars(select(ProvisionedNumber).where(
        ProvisionedNumber.state == "quarantined", ProvisionedNumber.release_after <= now)
        .order_by(ProvisionedNumber.release_after).limit(limit)))
    for row in rows:
        if releasable(db, row, now) is not None:
            counts["waiting"] += 1
            continue
        if (error := _release_at_carrier(db, api_for, row)) is not None:
            row.error = error[:500]
            db.commit()
            counts["failed"] += 1
            continue
        row.state, row.released_at, row.error = "released", now, None
        db.commit()
        counts["released"] += 1
    return counts


def _release_at_carrier(db: Session, api_for: Callable[[CarrierAccount], NumberApi],
                        row: ProvisionedNumber) -> str | None:
    """Release the number at its carrier; the reason it could not be, else None."""
    try:
        api_for(db.get(CarrierAccount, row.account_id)).release(
            Bought(row.number, row.carrier_ref or ""))
    except AccountError as exc:
        return exc.message
    except CarrierError as exc:
        if exc.status != 404:  # a 404: already gone at the carrier, which is the goal
            return exc.message
    return None
