"""Match a call to the visit that held the dialled number at the moment of the call.

Given tracking number N and call start T (docs/architecture.md, "Where a call is matched"):

1. N is an active static number: its source, medium, campaign and label.
2. N is a pool number: the lease of N whose interval [start, last renewal + lease_seconds]
   contains T (the latest such lease: a number released early and leased again belongs to
   its new holder); else the last lease of N that ended before T, if nobody held N since
   and T is inside the pool's attribution window (lower confidence).
3. N is a pool's fallback number: channel-level attribution from that pool's rules.
4. Otherwise unattributed: the call is kept all the same.

Redis is asked first for N's live holder, because the recorder copies leases into SQL a
moment after they happen; without Redis, the SQL lease history alone decides.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field

from sqlalchemy import Select, literal, null, or_, select, union_all
from sqlalchemy.orm import Session

from attribution.models import StaticNumber
from attribution.recorder import record_pending
from pools.errors import PoolError
from pools.leases import PoolService
from pools.models import Lease, Pool, PoolNumber

log = logging.getLogger(__name__)

CONFIDENCE = {"session": 1.0, "session_expired": 0.6, "static": 1.0, "fallback": 0.3,
              "unattributed": 0.0}
CANDIDATES = 5  # leases of N considered, latest first


@dataclass
class Match:
    method: str
    confidence: float
    session_id: str | None = None
    pool_id: int | None = None
    static_number_id: int | None = None
    explanation: dict = field(default_factory=dict)


def _aware(moment: dt.datetime) -> dt.datetime:
    """Rows of a UNION come back raw: SQLite's datetimes have no zone (they are UTC)."""
    if isinstance(moment, str):
        moment = dt.datetime.fromisoformat(moment)
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _lease_view(lease, verdict: str) -> dict:
    return {"session_id": lease.session_id, "started_at_ms": lease.started_at_ms,
            "last_renewed_at_ms": lease.last_renewed_at_ms,
            "covers_until_ms": lease.expires_at_ms, "ended_at_ms": lease.ended_at_ms,
            "end_reason": lease.end_reason, "verdict": verdict}


def match_call(db: Session, number: str, at_ms: int, pools: PoolService | None = None) -> Match:
    """Decide who the call to ``number`` at ``at_ms`` belongs to, and say why."""
    at = dt.datetime.fromtimestamp(at_ms / 1000, dt.UTC)
    # One round trip for both kinds of tracking number. A number entered after the fact
    # still counts (CDR imports); a retired one does not.
    # The static number's label and source come along for the explanation.
    static_rows = select(literal("static").label("kind"), StaticNumber.id.label("id"),
                         StaticNumber.created_at.label("since"), null().label("name"),
                         null().label("window"), StaticNumber.label.label("label"),
                         StaticNumber.source.label("source")).where(
        StaticNumber.number == number,
        or_(StaticNumber.retired_at.is_(None), StaticNumber.retired_at > at))
    pool_rows = select(literal("pool").label("kind"), PoolNumber.pool_id.label("id"),
                       PoolNumber.added_at.label("since"), Pool.name.label("name"),
                       Pool.attribution_window_seconds.label("window"), null().label("label"),
                       null().label("source")).join(Pool).where(
        PoolNumber.number == number,
        or_(PoolNumber.retired_at.is_(None), PoolNumber.retired_at > at))
    found = db.execute(union_all(static_rows, pool_rows)).all()
    statics = sorted((r for r in found if r.kind == "static"), key=lambda r: r.since)
    if statics:
        static = statics[-1]
        return Match("static", CONFIDENCE["static"], static_number_id=static.id, explanation={
            "steps": [f"{number} is static number {static.id} ({static.label or static.source})"]})

    # The pool it served at that time; a number moved between pools has one row per pool.
    members = sorted((r for r in found if r.kind == "pool"), key=lambda r: r.since, reverse=True)
    member = next((m for m in members if _aware(m.since) <= at), members[-1] if members else None)
    if member is not None:
        return _match_pool_number(db, PoolRef(member.id, member.name, member.window), number,
                                  at_ms, pools)

    fallback_pools = list(db.scalars(select(Pool).where(Pool.fallback == number)))
    if len(fallback_pools) == 1:
        pool = fallback_pools[0]
        return Match("fallback", CONFIDENCE["fallback"], pool_id=pool.id, explanation={
            "steps": [f"{number} is the fallback number of pool {pool.id}: no session, "
                      "channel-level attribution from the pool's rules"]})
    steps = [f"{number} is not a tracking number at that time"]
    if fallback_pools:
        steps = [f"{number} is the fallback of pools "
                 f"{', '.join(str(p.id) for p in fallback_pools)}: ambiguous, not attributed"]
    return Match("unattributed", 0.0, explanation={"steps": steps})


@dataclass(frozen=True)
class PoolRef:
    """What matching needs of a pool."""

    id: int
    name: str
    attribution_window_seconds: int


def _match_pool_number(db: Session, pool: PoolRef, number: str, at_ms: int,
                       pools: PoolService | None) -> Match:
    steps = [f"{number} belongs to pool {pool.id} ({pool.name})"]
    _record_pending_leases(db, pools, pool.id, number)
    live = _live_holder(pools, pool.id, number, at_ms, steps)
    candidates = db.execute(candidate_leases_query(pool.id, number, at_ms)).all()
    considered: list[dict] = []
    if live is not None and (not candidates or live[1] >= candidates[0].started_at_ms):
        session_id, start = live
        verdict = "live holder in Redis when the call arrived: chosen"
        # The live lease is usually in SQL already (its events were just recorded): list
        # it once, with what SQL knows of it, and the older leases after it.
        own = next((lease for lease in candidates
                    if (lease.session_id, lease.started_at_ms) == (session_id, start)), None)
        considered.append(_lease_view(own, verdict) if own is not None else
                          {"session_id": session_id, "started_at_ms": start, "verdict": verdict})
        considered.extend(_lease_view(lease, "older") for lease in candidates if lease is not own)
        return Match("session", CONFIDENCE["session"], session_id, pool.id, explanation={
            "steps": steps, "leases": considered})

    chosen: Match | None = None
    for i, lease in enumerate(candidates):
        if chosen is not None:
            considered.append(_lease_view(lease, "older"))
        elif lease.started_at_ms <= at_ms <= lease.expires_at_ms:
            considered.append(_lease_view(lease, "interval contains the call: chosen"))
            chosen = Match("session", CONFIDENCE["session"], lease.session_id, pool.id)
        elif i == 0:
            gap_ms = at_ms - lease.expires_at_ms  # past the end of its covered interval
            window_ms = pool.attribution_window_seconds * 1000
            if gap_ms <= window_ms:
                considered.append(_lease_view(lease, (
                    f"ended {gap_ms // 1000}s before the call, inside the "
                    f"{pool.attribution_window_seconds}s window, not leased since: chosen")))
                chosen = Match("session_expired", CONFIDENCE["session_expired"],
                               lease.session_id, pool.id)
            else:
                considered.append(_lease_view(lease, (
                    f"ended {gap_ms // 1000}s before the call, outside the "
                    f"{pool.attribution_window_seconds}s window")))
        else:
            considered.append(_lease_view(lease, "older"))
    if chosen is None:
        if not candidates:
            steps.append("no lease of this number started before the call")
        chosen = Match("unattributed", 0.0, pool_id=pool.id)
    chosen.explanation = {"steps": steps, "leases": considered}
    return chosen


def candidate_leases_query(pool_id: int, number: str, at_ms: int) -> Select:
    """The latest leases of ``number`` in ``pool_id`` begun by ``at_ms``.

    Only that pool's: a number retired from one pool and added to another must never be
    matched to a visit of its previous pool (another site, or another publisher). The
    unique index on (pool_id, number, started_at_ms) serves it. Plain rows, not ORM
    objects: this runs for every call, over millions of leases.
    """
    return (select(Lease.session_id, Lease.started_at_ms, Lease.last_renewed_at_ms,
                   Lease.expires_at_ms, Lease.ended_at_ms, Lease.end_reason)
            .where(Lease.pool_id == pool_id, Lease.number == number,
                   Lease.started_at_ms <= at_ms)
            .order_by(Lease.started_at_ms.desc()).limit(CANDIDATES))


def _record_pending_leases(db: Session, pools: PoolService | None, pool_id: int,
                           number: str) -> None:
    """Write the pool's pending events about ``number`` into this transaction first, so a
    lease seconds old is found. Only flushed: the caller commits, and a recorder
    acknowledges them later."""
    if pools is None:
        return
    try:
        pools.guard.call(record_pending, pools, db, pool_id, number)
    except PoolError:
        pass  # Redis is away: the SQL history is what we have


def _live_holder(pools: PoolService | None, pool_id: int, number: str, at_ms: int,
                 steps: list[str]) -> tuple[str, int] | None:
    """The session holding ``number`` in Redis now, if its lease began by ``at_ms``."""
    if pools is None:
        return None
    try:
        live = pools.holder(pool_id, number)
    except PoolError:
        steps.append("Redis unavailable: matched from the SQL lease history")
        return None
    if live is None or live[1] > at_ms:
        return None
    return live
