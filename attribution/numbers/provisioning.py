"""Buying numbers into a pool, idempotently, and finishing what a crash left half done.

``provision`` is the one place numbers are bought. Unlike the rest of the service it
commits as it goes, on purpose: a number's row is committed as ``buying`` before the
carrier is asked, as ``bought`` as soon as the carrier confirms it, and as ``added`` once it
is in the pool. Whatever happens between two steps (a crash, a time-out, a lost
connection), the row says what to check, and ``reconcile`` (run by the worker) finishes
it: a ``bought`` number is added to its pool, a ``buying`` one is looked up at the carrier
(bought after all, or not). No number is bought twice for one request: the request's
idempotency key names its order, and a retry answers the order's numbers as they stand.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from attribution.numbers.accounts import AccountError
from attribution.numbers.carriers import CarrierError, NumberApi, SearchQuery, Webhooks
from attribution.numbers.models import (
    CarrierAccount,
    ProvisionedNumber,
    ProvisionOrder,
)
from pools import catalog
from pools.errors import PoolError
from pools.leases import PoolService
from pools.models import Pool, PoolNumber, utcnow

log = logging.getLogger(__name__)

MAX_COUNT = 50  # numbers per request: more is a bulk job for the CLI, a request at a time
# A ``buying`` row this old was left by a request that is over: the worker looks it up.
STALE_BUYING = dt.timedelta(minutes=2)


@dataclass(frozen=True)
class ProvisionReport:
    order: ProvisionOrder
    numbers: list[ProvisionedNumber]
    replayed: bool  # a retry of a request already made: nothing new was bought
    shortfall: int  # numbers asked for that no candidate could supply


def provision(db: Session, pools: PoolService, pool: Pool, account: CarrierAccount,
              api: NumberApi, *, count: int, query: SearchQuery, request_key: str,
              hooks: Webhooks, now_ms: int,
              on_number: Callable[[ProvisionedNumber], None] | None = None) -> ProvisionReport:
    """Buy ``count`` numbers matching ``query`` through ``account`` into ``pool``;
    ``on_number`` hears of each number tried once its outcome is committed (the CLI's bar).

    Raises:
        AccountError: the key was used for another pool or account (409), or the count is
            out of range (422).
        CarrierError: the search itself failed (nothing was bought).
    """
    if not 1 <= count <= MAX_COUNT:
        raise AccountError(f"count must be from 1 to {MAX_COUNT}",
                           fields={"count": "out of range"})
    if (known := _existing(db, request_key)) is not None:
        return replay(db, known, pool, account)
    # Searched before the order is stored: a failed search leaves nothing, so a retry of the
    # request with the same key searches again rather than replaying an empty order.
    candidates = api.search(dataclasses.replace(query, limit=min(count * 2 + 5, 50)))
    order = _order(db, pool, account, count, query, request_key)
    if order is None:
        return replay(db, _existing(db, request_key), pool, account)
    live = set(catalog.check_numbers(db, [c.number for c in candidates]).accepted)
    rows: list[ProvisionedNumber] = []
    bought = 0
    for candidate in candidates:
        if bought >= count:
            break
        if candidate.number not in live:
            continue  # already in one of our pools (another account of ours holds it)
        row = ProvisionedNumber(account_id=account.id, order_id=order.id, pool_id=pool.id,
                                number=candidate.number, state="buying")
        db.add(row)
        db.commit()  # before the carrier is asked: a crash leaves a row to look up
        rows.append(row)
        outcome = _buy(db, api, row, hooks)
        if outcome == "bought":
            bought += 1
            add_to_pool(db, pools, row, now_ms)
        if on_number is not None:
            on_number(row)
        if outcome == "unknown":
            # Perhaps bought (a time-out, an order not yet confirmed), and the carrier is in
            # trouble: stop here rather than risk buying more than asked. The worker looks
            # the number up; its row stays ``buying`` until then.
            break
    unknown = sum(1 for r in rows if r.state == "buying")
    return ProvisionReport(order, rows, False, max(0, count - bought - unknown))


def _order(db: Session, pool: Pool, account: CarrierAccount, count: int, query: SearchQuery,
           request_key: str) -> ProvisionOrder | None:
    """A new order for the key, committed; None when the key already names one."""
    order = ProvisionOrder(request_key=request_key, pool_id=pool.id, account_id=account.id,
                           count=count, params=dataclasses.asdict(query))
    db.add(order)
    try:
        db.commit()
    except IntegrityError:  # the same request, retried while the first was running
        db.rollback()
        return None
    return order


def _existing(db: Session, request_key: str) -> ProvisionOrder | None:
    return db.scalar(select(ProvisionOrder).where(ProvisionOrder.request_key == request_key))


def replay(db: Session, order: ProvisionOrder, pool: Pool,
           account: CarrierAccount) -> ProvisionReport:
    if order.pool_id != pool.id or order.account_id != account.id:
        raise AccountError("this idempotency key was used for another pool or account",
                           status=409, code="idempotency_key_reused")
    rows = list(db.scalars(select(ProvisionedNumber).where(
        ProvisionedNumber.order_id == order.id).order_by(ProvisionedNumber.id)))
    done = sum(1 for r in rows if r.state != "failed")
    return ProvisionReport(order, rows, True, max(0, order.count - done))


def _buy(db: Session, api: NumberApi, row: ProvisionedNumber, hooks: Webhooks) -> str:
    """Ask the carrier for the row's number and commit what it answered: ``bought``,
    ``refused`` (nothing bought) or ``unknown`` (the worker finds out)."""
    try:
        got = api.buy(row.number, hooks)
    except CarrierError as exc:
        row.error, row.carrier_order = exc.message[:500], exc.order
        if not exc.retry:
            row.state = "failed"  # refused: nothing was bought
        # else: it may have been bought (a time-out, an order still pending): the row stays
        # ``buying`` and the worker looks it up at the carrier.
        db.commit()
        return "unknown" if exc.retry else "refused"
    row.state, row.carrier_ref, row.carrier_order = "bought", got.ref, got.order
    row.bought_at, row.error = utcnow(), None
    db.commit()
    return "bought"


def add_to_pool(db: Session, pools: PoolService, row: ProvisionedNumber, now_ms: int) -> None:
    """Add a bought number to its pool and commit; a pool that is gone or refuses it leaves
    the number ``bought`` with the reason, for the operator (it is never left unrecorded)."""
    pool = db.get(Pool, row.pool_id) if row.pool_id is not None else None
    if pool is None or not pool.active:
        row.error = "its pool is gone or inactive: retire or move the number"
        db.commit()
        return
    if db.scalar(select(PoolNumber.id).where(PoolNumber.pool_id == pool.id,
                                             PoolNumber.number == row.number,
                                             PoolNumber.status == "active")):
        report_accepted = True  # added before a crash, the state not yet written
    else:
        try:
            report = catalog.add_numbers(db, pools, pool, [row.number], now_ms=now_ms)
        except PoolError as exc:  # Redis away: it is in SQL, the worker loads the pool
            log.warning("pool %s not synced after adding %s: %s", pool.id, row.number, exc)
            report = catalog.NumberReport(accepted=[row.number])
        except IntegrityError:  # the worker and the request added it at the same moment
            db.rollback()
            report = catalog.NumberReport(accepted=[row.number])
        report_accepted = bool(report.accepted)
        if not report_accepted:
            row.error = "; ".join(r.reason for r in report.rejected)[:500]
    if report_accepted:
        row.state, row.added_at, row.error = "added", utcnow(), None
    db.commit()


# -- the worker's part -------------------------------------------------------------------


def _still_pending(api: NumberApi, order: str) -> bool:
    try:
        return api.pending(order)
    except CarrierError:
        return True  # cannot tell: never give up on a number that may be ours


def reconcile(db: Session, pools: PoolService, api_for: Callable[[CarrierAccount], NumberApi],
              now_ms: int, *, now: dt.datetime | None = None) -> dict[str, int]:
    """Finish what requests left half done; returns how many rows went each way."""
    now = now or utcnow()
    counts = {"added": 0, "bought": 0, "failed": 0}
    for row in list(db.scalars(select(ProvisionedNumber).where(
            ProvisionedNumber.state == "bought", ProvisionedNumber.error.is_(None))
            .order_by(ProvisionedNumber.id).limit(200))):
        add_to_pool(db, pools, row, now_ms)
        counts["added"] += row.state == "added"
    stale = list(db.scalars(select(ProvisionedNumber).where(
        ProvisionedNumber.state == "buying",
        ProvisionedNumber.created_at <= now - STALE_BUYING)
        .order_by(ProvisionedNumber.id).limit(50)))
    for row in stale:
        account = db.get(CarrierAccount, row.account_id)
        try:
            api = api_for(account)
            owned = api.owned(row.number)
        except (CarrierError, AccountError) as exc:
            log.info("cannot look up %s at the carrier yet: %s", row.number, exc.message)
            continue
        if owned is None:
            if row.carrier_order and _still_pending(api, row.carrier_order):
                continue  # the carrier may confirm it yet: look again next pass
            row.state, row.error = "failed", "not bought (looked up after an interrupted buy)"
            db.commit()
            counts["failed"] += 1
            continue
        row.state, row.carrier_ref, row.bought_at = "bought", owned.ref, utcnow()
        row.error = None
        db.commit()
        counts["bought"] += 1
        add_to_pool(db, pools, row, now_ms)
        counts["added"] += row.state == "added"
    return counts
