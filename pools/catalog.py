"""Sites, pools and their numbers: the SQL side, kept in step with Redis.

Every change is written to SQL first (the system of record), then pushed into the
pool's Redis state with sync.lua. A number still leased when it is retired stays with
its visitor until the lease ends; the recorder then marks it retired.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import NamedTuple

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pools import rules as pool_rules
from pools.errors import PoolNotLoaded, PoolUnavailable
from pools.keys import rebuild_lock_key
from pools.leases import PoolService, SyncResult
from pools.models import Lease, Pool, PoolNumber, Site, utcnow
from pools.phones import InvalidNumber, normalize

EXHAUSTION_POLICIES = ("fallback", "reuse_cooling")
SYNC_CHUNK = 1000  # numbers per sync call: each Lua call stays short
POOL_SETTINGS = ("name", "destination", "fallback", "lease_seconds", "max_lease_seconds",
                 "cooldown_seconds", "attribution_window_seconds", "exhaustion_policy",
                 "priority", "rules", "record_calls", "qualification", "revenue", "payout",
                 "publisher")


class CatalogError(ValueError):
    """A change that cannot be made; ``fields`` maps each bad field to its problem."""

    def __init__(self, message: str, fields: dict | None = None, status: int = 422):
        super().__init__(message)
        self.fields = fields or {}
        self.status = status


class Rejection(NamedTuple):
    position: int  # index in the list offered
    raw: str
    reason: str


@dataclass
class NumberReport:
    """What became of each number offered to a pool."""

    accepted: list[str] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)


def new_site_key() -> str:
    return "site_" + secrets.token_urlsafe(12)


def create_site(db: Session, *, name: str, domains=(), keyword_params=(),
                timezone: str = "UTC") -> Site:
    site = Site(key=new_site_key(), name=name, domains=list(domains),
                keyword_params=list(keyword_params), timezone=timezone)
    db.add(site)
    db.flush()
    return site


def active_numbers(db: Session, pool_id: int) -> int:
    """How many numbers the pool has in service (not retired)."""
    return db.scalar(select(func.count()).select_from(PoolNumber).where(
        PoolNumber.pool_id == pool_id, PoolNumber.status == "active")) or 0


def check_numbers(db: Session, raw_numbers, region: str = "US",
                  exclude_pool_id: int | None = None) -> NumberReport:
    """Normalise numbers and reject those invalid, repeated, or live in a pool already."""
    report = NumberReport()
    seen: set[str] = set()
    candidates: list[tuple[int, str, str]] = []
    for position, raw in enumerate(raw_numbers):
        try:
            number = normalize(raw, region)
        except InvalidNumber as exc:
            report.rejected.append(Rejection(position, str(raw), str(exc)))
            continue
        if number in seen:
            report.rejected.append(Rejection(position, str(raw), f"{number} is listed twice"))
            continue
        seen.add(number)
        candidates.append((position, str(raw), number))
    taken = _live_numbers(db, [n for _, _, n in candidates])
    for position, raw, number in candidates:
        if number in taken:
            owner = taken[number]
            where = "this pool" if owner == exclude_pool_id else f"pool {owner}"
            report.rejected.append(Rejection(position, raw, f"{number} is already in {where}"))
        else:
            report.accepted.append(number)
    report.rejected.sort()
    return report


def _live_numbers(db: Session, numbers: list[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for start in range(0, len(numbers), 500):
        chunk = numbers[start:start + 500]
        rows = db.execute(
            select(PoolNumber.number, PoolNumber.pool_id).where(
                PoolNumber.number.in_(chunk), PoolNumber.status != "retired"
            )
        )
        found.update({number: pool_id for number, pool_id in rows})
    return found


def validate_settings(values: dict, region: str = "US") -> dict:
    """Check and normalise pool settings; raise CatalogError naming every bad field."""
    errors: dict[str, str] = {}
    clean = dict(values)
    for name in ("target", "destination", "fallback"):
        if clean.get(name) is not None:
            try:
                clean[name] = normalize(clean[name], region)
            except InvalidNumber as exc:
                errors[name] = str(exc)
    if clean.get("exhaustion_policy") not in (None, *EXHAUSTION_POLICIES):
        errors["exhaustion_policy"] = f"must be one of {', '.join(EXHAUSTION_POLICIES)}"
    if "rules" in clean:
        try:
            clean["rules"] = pool_rules.validate_rules(clean["rules"])
        except ValueError as exc:
            errors["rules"] = str(exc)
    lease = clean.get("lease_seconds")
    longest = clean.get("max_lease_seconds")
    if lease is not None and longest is not None and longest < lease:
        errors["max_lease_seconds"] = "must be at least lease_seconds"
    if errors:
        raise CatalogError("invalid pool settings", errors)
    return clean


def create_pool(db: Session, pools: PoolService, site: Site, *, numbers=(), region: str = "US",
                now_ms: int, **settings) -> tuple[Pool, NumberReport]:
    """Create a pool with its numbers. Every offered number must be usable."""
    settings = validate_settings(settings, region)
    settings.setdefault("fallback", settings["target"])
    report = check_numbers(db, numbers, region)
    if report.rejected:
        raise CatalogError(
            "some numbers cannot be used",
            {"numbers": {r.raw: r.reason for r in report.rejected}},
        )
    pool = Pool(site_id=site.id, **settings)
    db.add(pool)
    db.flush()
    db.add_all(PoolNumber(pool_id=pool.id, number=n) for n in report.accepted)
    db.flush()
    load_pool(db, pools, pool, now_ms)
    return pool, report


def update_pool(db: Session, pools: PoolService, pool: Pool, changes: dict, *,
                region: str = "US", now_ms: int) -> Pool:
    merged = {name: getattr(pool, name) for name in POOL_SETTINGS} | changes
    clean = validate_settings(merged, region)
    for name in changes:
        setattr(pool, name, clean[name])
    db.flush()
    sync_pool(db, pools, pool, now_ms, "meta")
    return pool


def add_numbers(db: Session, pools: PoolService, pool: Pool, raw_numbers, *,
                region: str = "US", now_ms: int) -> NumberReport:
    """Add the usable numbers, report the rest; the pool can lease them at once."""
    report = check_numbers(db, raw_numbers, region, exclude_pool_id=pool.id)
    if report.accepted:
        db.add_all(PoolNumber(pool_id=pool.id, number=n) for n in report.accepted)
        db.flush()
        for start in range(0, len(report.accepted), SYNC_CHUNK):
            sync_pool(db, pools, pool, now_ms, "add",
                      active=report.accepted[start:start + SYNC_CHUNK])
    return report


def retire_number(db: Session, pools: PoolService, pool: Pool, number: str, *,
                  now_ms: int) -> PoolNumber:
    """Retire a number: at once when idle, when its lease ends when leased."""
    row = db.scalar(select(PoolNumber).where(
        PoolNumber.pool_id == pool.id, PoolNumber.number == number,
        PoolNumber.status != "retired"))
    if row is None:
        raise CatalogError(f"{number} is not a live number of pool {pool.id}", status=404)
    row.status = "retiring"
    db.flush()
    result = sync_pool(db, pools, pool, now_ms, "retire", retired=[number])
    if number in result.removed:
        row.status, row.retired_at = "retired", utcnow()
    db.flush()
    return row


def mark_retired(db: Session, pool_id: int, number: str) -> None:
    """Record that a retiring number's last lease has ended (from the event stream)."""
    row = db.scalar(select(PoolNumber).where(
        PoolNumber.pool_id == pool_id, PoolNumber.number == number,
        PoolNumber.status == "retiring"))
    if row is not None:
        row.status, row.retired_at = "retired", utcnow()


def pool_spec(db: Session, pool: Pool, now_ms: int, *, load: bool, active=(),
              retired=(), mode: str = "meta") -> dict:
    """The change as sync.lua wants it; ``load`` sends the whole pool and its live leases."""
    if load:
        active = list(db.scalars(select(PoolNumber.number).where(
            PoolNumber.pool_id == pool.id, PoolNumber.status == "active")))
    spec = {
        "mode": "load" if load else mode,
        "meta": {
            "site": pool.site.key,
            "target": pool.target,
            "fallback": pool.fallback,
            "lease_ms": pool.lease_seconds * 1000,
            "max_age_ms": pool.max_lease_seconds * 1000,
            "cooldown_ms": pool.cooldown_seconds * 1000,
            "policy": pool.exhaustion_policy,
        },
        "active": list(active),
        "retired": list(retired),
        "idle_since": {},
        "leases": [],
    }
    if load:
        # Longest-idle order survives a Redis restart: idle since the last lease ended.
        last_end = func.max(func.coalesce(Lease.ended_at_ms, Lease.expires_at_ms))
        spec["idle_since"] = {
            number: int(ended) for number, ended in db.execute(
                select(Lease.number, last_end).where(Lease.pool_id == pool.id)
                .group_by(Lease.number))
        }
        spec["leases"] = [
            [row.number, row.session_id, str(row.started_at_ms), str(row.expires_at_ms)]
            for row in db.execute(
                select(Lease.number, Lease.session_id, Lease.started_at_ms, Lease.expires_at_ms)
                .where(Lease.pool_id == pool.id, Lease.ended_at_ms.is_(None),
                       Lease.expires_at_ms > now_ms)
                .order_by(Lease.started_at_ms))
        ]
    return spec


def sync_pool(db: Session, pools: PoolService, pool: Pool, now_ms: int, mode: str = "meta",
              *, active=(), retired=()) -> SyncResult:
    """Push one change (settings, new numbers, retired numbers) to Redis; if Redis has lost
    the pool, load all of it instead (which includes the change, already in SQL)."""
    try:
        return pools.sync(pool.id, pool_spec(db, pool, now_ms, load=False, mode=mode,
                                             active=active, retired=retired))
    except PoolNotLoaded:
        return load_pool(db, pools, pool, now_ms)


def load_pool(db: Session, pools: PoolService, pool: Pool, now_ms: int) -> SyncResult:
    """Load an emptied pool from SQL, one process at a time."""
    lock = rebuild_lock_key(pool.id, pools.prefix)
    token = secrets.token_hex(8)
    if not pools.guard.call(pools.redis.set, lock, token, nx=True, px=10_000):
        raise PoolUnavailable(pool.id)
    try:
        return pools.sync(pool.id, pool_spec(db, pool, now_ms, load=True))
    finally:
        if pools.redis.get(lock) == token:
            pools.redis.delete(lock)


def load_pool_by_id(db: Session, pools: PoolService, pool_id: int, now_ms: int) -> bool:
    """Load one pool after Redis lost it; False if the pool is gone from SQL."""
    pool = db.get(Pool, pool_id)
    if pool is None or not pool.active:
        return False
    load_pool(db, pools, pool, now_ms)
    return True
