"""The worker's part in autoscale: decide for each pool whose turn it is, log, and apply.

For each active pool with an enabled policy, at most once per ``cooldown_minutes`` (and
``MIN_INTERVAL``), the step reads the pool's state from SQL (its size, the numbers this
service bought into it, visitors refused in the window, numbers bought today and the last
change, both from the decision log), asks ``attribution.accuracy.pool_model`` for the
expected accuracy at any size from the pool's own recorded window, and lets
``autoscale.decide`` choose. The decision is committed to the log before anything is done,
so a crash leaves a record (and its numbers count against the daily limit). In ``apply``
mode a growth is bought through ``provisioning.provision`` from the policy's account, a
trim retired through ``release.retire`` (idle-longest numbers first, only numbers this
service bought): the upkeep releases them once their last visitor's window is over.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import case, func, or_, select, update
from sqlalchemy.orm import Session

from attribution import accuracy, zones
from attribution.numbers import provisioning, release
from attribution.numbers.accounts import AccountError
from attribution.numbers.autoscale import Decision, Policy, PoolState, days_until, decide
from attribution.numbers.autoscale_models import AutoscaleDecision, PoolAutoscale
from attribution.numbers.carriers import CarrierError, NumberApi, SearchQuery, Webhooks
from attribution.numbers.models import CarrierAccount, ProvisionedNumber
from pools import catalog
from pools.leases import PoolService
from pools.models import Lease, Pool, PoolNumber, utcnow

log = logging.getLogger(__name__)

WINDOW = dt.timedelta(hours=24)  # the recorded traffic each decision learns from
# A trim is judged again on this much traffic: a number is released only when the pool has
# not needed it all that time (and a model of more traffic is steadier at its edge).
TRIM_WINDOW = dt.timedelta(days=7)
MIN_INTERVAL = dt.timedelta(minutes=5)  # decisions per pool at most this often (and logged)
RELEASE_MARGIN = dt.timedelta(hours=1)  # a trimmed number is released this long before billing


def service_hooks(public_url: str | None) -> Webhooks | None:
    """Where bought numbers send their calls (DNI_PUBLIC_URL); None: unknown, buy nothing."""
    if not public_url:
        return None
    return Webhooks(f"{public_url}/webhooks/twilio/voice", f"{public_url}/webhooks/twilio/status")


def _ms(moment: dt.datetime) -> int:
    return int(moment.timestamp() * 1000)


@dataclass
class Autoscaler:
    session_factory: Callable[[], Session]
    pools: PoolService
    api_for: Callable[[CarrierAccount], NumberApi]
    hooks: Webhooks | None
    window: dt.timedelta = WINDOW
    trim_window: dt.timedelta = TRIM_WINDOW
    every_seconds: float = 30.0  # the worker looks for pools whose turn it is this often
    _last: float = field(default=-1e9, repr=False)

    def run_if_due(self) -> list[AutoscaleDecision]:
        """``run_once`` now, at most every ``every_seconds`` (the worker calls it often)."""
        if time.monotonic() - self._last < self.every_seconds:
            return []
        self._last = time.monotonic()
        return self.run_once(utcnow())

    def run_once(self, now: dt.datetime) -> list[AutoscaleDecision]:
        """Decide for every pool whose turn it is; the decisions logged."""
        out = []
        with self.session_factory() as db:
            due = list(db.scalars(select(PoolAutoscale.pool_id).join(
                Pool, Pool.id == PoolAutoscale.pool_id).where(
                PoolAutoscale.enabled, Pool.active,
                or_(PoolAutoscale.next_at.is_(None), PoolAutoscale.next_at <= now))
                .order_by(PoolAutoscale.pool_id)))
            for pool_id in due:
                try:
                    entry = self.step(db, pool_id, now)
                except Exception:  # one pool's trouble stops no other pool
                    db.rollback()
                    log.exception("autoscale of pool %s failed", pool_id)
                    continue
                if entry is not None:
                    out.append(entry)
        return out

    def step(self, db: Session, pool_id: int, now: dt.datetime) -> AutoscaleDecision | None:
        """Decide for one pool if its turn is still free (None when another worker took it)."""
        row = db.get(PoolAutoscale, pool_id)
        if row is None or not row.enabled:  # removed or turned off since it was listed
            return None
        policy = Policy.parse(row.policy)
        turn = max(dt.timedelta(minutes=policy.cooldown_minutes), MIN_INTERVAL)
        claimed = db.execute(update(PoolAutoscale).where(
            PoolAutoscale.pool_id == pool_id,
            or_(PoolAutoscale.next_at.is_(None), PoolAutoscale.next_at <= now))
            .values(next_at=now + turn).execution_options(synchronize_session=False))
        db.commit()
        if claimed.rowcount != 1:
            return None
        pool = db.get(Pool, pool_id)
        local = now.astimezone(zones.zone(pool.site.timezone if pool.site else None))
        state, measured = pool_state(db, pool, local, self.window)
        decision = decide(policy, state, local)
        if decision.action == "trim" and self.trim_window > self.window:
            decision = self.confirm_trim(db, pool, policy, local)
        if not measured:
            hours = self.window / dt.timedelta(hours=1)
            decision = dataclasses.replace(decision, expected=None) \
                if decision.action == "grow" else Decision(
                    "hold", 0, f"no call in the last {hours:g} h was credited to a visit: "
                               "nothing to measure accuracy from", None)
        entry = AutoscaleDecision(pool_id=pool_id, at=now, action=decision.action,
                                  numbers=decision.count, size=state.size,
                                  expected=decision.expected, reason=decision.reason,
                                  mode=policy.mode)
        db.add(entry)
        db.commit()  # logged before anything is done
        if policy.mode == "apply" and decision.action != "hold":
            apply = self.grow if decision.action == "grow" else self.trim
            entry.done, entry.result = apply(db, pool, policy, entry, local)
            entry.applied = entry.done > 0
            db.commit()
        log.info("autoscale pool %s: %s %s (%s)%s", pool_id, decision.action, decision.count,
                 decision.reason, f": {entry.result}" if entry.result else "")
        return entry

    def confirm_trim(self, db: Session, pool: Pool, policy: Policy,
                     local: dt.datetime) -> Decision:
        """The trim ``trim_window``'s traffic allows (a hold when it needs every number)."""
        state, measured = pool_state(db, pool, local, self.trim_window)
        decision = decide(policy, state, local)
        if measured and decision.action == "trim":
            return decision
        days = self.trim_window / dt.timedelta(days=1)
        return Decision("hold", 0, f"the last {days:g} days' traffic needed every number "
                                   f"({decision.reason})", decision.expected)

    # -- carrying a decision out ---------------------------------------------------------

    def grow(self, db: Session, pool: Pool, policy: Policy, entry: AutoscaleDecision,
             local: dt.datetime) -> tuple[int, str]:
        """Buy ``entry.numbers`` into the pool; (numbers bought or in doubt, what happened)."""
        account = db.get(CarrierAccount, policy.account) if policy.account else None
        if account is None:
            return 0, "not bought: the policy's carrier account is gone"
        if self.hooks is None:
            return 0, "not bought: DNI_PUBLIC_URL is not set, so calls could not reach us"
        query = SearchQuery(area_code=policy.area_code)
        bought = failed = asked = 0
        try:
            api = self.api_for(account)
            while asked < entry.numbers:
                count = min(entry.numbers - asked, provisioning.MAX_COUNT)
                report = provisioning.provision(
                    db, self.pools, pool, account, api, count=count, query=query,
                    request_key=f"autoscale:{pool.id}:{entry.id}:{asked}", hooks=self.hooks,
                    now_ms=_ms(local))
                asked += count
                # A number in doubt (``buying``) may be bought: it counts as spent.
                bought += sum(1 for r in report.numbers if r.state != "failed")
                failed += sum(1 for r in report.numbers if r.state == "failed")
                if report.shortfall:
                    break
        except (CarrierError, AccountError) as exc:
            return bought, f"bought {bought}; then the carrier failed: {exc.message}"
        short = entry.numbers - bought
        return bought, f"bought {bought}" + (f", {failed} refused" if failed else "") + (
            f", {short} not found for sale" if short and not failed else "")

    def trim(self, db: Session, pool: Pool, policy: Policy, entry: AutoscaleDecision,
             local: dt.datetime) -> tuple[int, str]:
        """Retire ``entry.numbers`` bought numbers, idle longest first, quarantined so they
        are released before the billing day (when the last visitor's window allows)."""
        quarantine = dt.timedelta(0)
        if policy.trim_day:
            billed = dt.datetime.combine(
                local.date() + dt.timedelta(days=days_until(policy.trim_day, local)),
                dt.time(), local.tzinfo)
            margin = dt.timedelta(seconds=pool.attribution_window_seconds) + RELEASE_MARGIN
            quarantine = max(dt.timedelta(0),
                             min(release.DEFAULT_QUARANTINE, billed - local - margin))
        retired = []
        for row in trim_candidates(db, pool, entry.numbers):
            release.retire(db, self.pools, row, quarantine=quarantine, now_ms=_ms(local),
                           now=local.astimezone(dt.UTC))
            db.commit()
            retired.append(row.number)
        return len(retired), f"retired {', '.join(retired) or 'none'}; released after " \
                             f"{quarantine / dt.timedelta(hours=1):.0f} h of quarantine"


# -- the pool's state, from SQL ------------------------------------------------------------


def pool_state(db: Session, pool: Pool, local: dt.datetime,
               window: dt.timedelta) -> tuple[PoolState, bool]:
    """The pool as ``decide`` sees it at ``local`` (the site's time), and whether the
    accuracy was measured (False: no call in the window; the model says 100% at any size
    so that only the minimum and refusals can grow the pool)."""
    end_ms = _ms(local)
    start_ms = _ms(local - window)
    size = catalog.active_numbers(db, pool.id)
    releasable = db.scalar(select(func.count()).select_from(ProvisionedNumber).join(
        PoolNumber, (PoolNumber.pool_id == ProvisionedNumber.pool_id)
        & (PoolNumber.number == ProvisionedNumber.number)).where(
        ProvisionedNumber.pool_id == pool.id, ProvisionedNumber.state == "added",
        PoolNumber.status == "active")) or 0
    refused = len(accuracy.refused_arrivals(db, pool.id, start_ms, end_ms))
    leased = db.scalar(select(func.count(func.distinct(Lease.session_id))).where(
        Lease.pool_id == pool.id, Lease.started_at_ms >= start_ms,
        Lease.started_at_ms < end_ms)) or 0
    model = accuracy.pool_model(db, pool, start_ms, end_ms)
    state = PoolState(size, releasable, leased + refused, refused,
                      bought_today(db, pool.id, local), last_change(db, pool.id),
                      accuracy=(lambda n: model.at(n)[0]) if model else (lambda n: 1.0),
                      smallest=model.smallest if model else None)
    return state, model is not None


def bought_today(db: Session, pool_id: int, local: dt.datetime) -> int:
    """Numbers bought for the pool by autoscale since midnight (the site's): from the log,
    so a restart does not reset it. A growth not yet carried out counts in full."""
    midnight = dt.datetime.combine(local.date(), dt.time(), local.tzinfo).astimezone(dt.UTC)
    return int(db.scalar(select(func.sum(case(
        (AutoscaleDecision.done.is_(None), AutoscaleDecision.numbers),
        else_=AutoscaleDecision.done))).where(
        AutoscaleDecision.pool_id == pool_id, AutoscaleDecision.action == "grow",
        AutoscaleDecision.mode == "apply", AutoscaleDecision.at >= midnight)) or 0)


def last_change(db: Session, pool_id: int) -> dt.datetime | None:
    return db.scalar(select(func.max(AutoscaleDecision.at)).where(
        AutoscaleDecision.pool_id == pool_id, AutoscaleDecision.applied))


def trim_candidates(db: Session, pool: Pool, count: int) -> list[ProvisionedNumber]:
    """Up to ``count`` numbers this service bought into the pool and it still uses, the
    ones leased least lately first (never leased: first of all)."""
    last_lease = select(Lease.number, func.max(Lease.started_at_ms).label("last")).where(
        Lease.pool_id == pool.id).group_by(Lease.number).subquery()
    return list(db.scalars(select(ProvisionedNumber).join(
        PoolNumber, (PoolNumber.pool_id == ProvisionedNumber.pool_id)
        & (PoolNumber.number == ProvisionedNumber.number)).outerjoin(
        last_lease, last_lease.c.number == ProvisionedNumber.number).where(
        ProvisionedNumber.pool_id == pool.id, ProvisionedNumber.state == "added",
        PoolNumber.status == "active")
        .order_by(func.coalesce(last_lease.c.last, -1), ProvisionedNumber.id).limit(count)))

