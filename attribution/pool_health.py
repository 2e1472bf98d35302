"""Pool health from the recorded lease history: utilisation, peaks, exhaustion, and size.

Two sizes are given. ``accuracy`` (``attribution.accuracy``) is the size at which the
expected share of calls credited to the visit that made them reaches a target, learned
from the window's own visits and calls. ``recommendation`` guards only against exhaustion:
it treats the pool as a loss system (Erlang B): visitors arrive, each
holds a number for the lease plus its cool-down, and one who finds none free is shown
the fallback. From the busiest hour's arrivals and the mean holding time we get the
offered load, and the smallest pool whose blocking probability is at most the target
exhaustion rate.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from attribution.accuracy import DEFAULT_TARGET, pool_accuracy
from pools import catalog
from pools.models import Lease, Pool, PoolExhaustion

HOUR_MS = 3_600_000
MAX_HOURS = 24 * 93


def erlang_b(servers: int, load: float) -> float:
    """Probability that an arrival finds all ``servers`` busy under ``load`` Erlangs."""
    blocking = 1.0
    for k in range(1, servers + 1):
        blocking = load * blocking / (k + load * blocking)
    return blocking


def servers_for(load: float, target: float, limit: int = 1_000_000) -> int:
    """The fewest servers whose Erlang-B blocking is at most ``target``."""
    if load <= 0:
        return 1
    blocking, servers = 1.0, 0
    while blocking > target and servers < limit:
        servers += 1
        blocking = load * blocking / (servers + load * blocking)
    return servers


@dataclass
class Interval:
    start: int
    end: int


def concurrency(intervals: list[Interval], start_ms: int, end_ms: int) -> tuple[list[int], int]:
    """Most intervals overlapping at once in each hour of [start, end), and overall."""
    hours = max(1, (end_ms - start_ms + HOUR_MS - 1) // HOUR_MS)
    # At the same instant an end comes before a start: a number handed straight on is
    # never counted twice.
    edges = sorted([(i.start, 1) for i in intervals] + [(i.end, -1) for i in intervals])
    level = sum(step for moment, step in edges if moment < start_ms)
    position = next((n for n, (moment, _) in enumerate(edges) if moment >= start_ms), len(edges))
    peaks = []
    for hour in range(hours):
        hour_end = start_ms + (hour + 1) * HOUR_MS
        peak = level
        while position < len(edges) and edges[position][0] < min(hour_end, end_ms):
            level += edges[position][1]
            peak = max(peak, level)
            position += 1
        peaks.append(peak)
    return peaks, max(peaks)


def health(db: Session, pool: Pool, start: dt.datetime, end: dt.datetime,
           target_rate: float = 0.01, zone: dt.tzinfo = dt.UTC,
           accuracy_target: float | None = DEFAULT_TARGET) -> dict:
    """Everything the pool-health page shows for ``pool`` between ``start`` and ``end``.

    Hours are reported in ``zone`` (the site's, from the API), each with its UTC offset.
    ``accuracy_target`` None leaves the accuracy model out.
    """
    start_ms, end_ms = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
    end_ms = min(end_ms, start_ms + MAX_HOURS * HOUR_MS)
    leases = db.execute(select(
        Lease.started_at_ms, func.coalesce(Lease.ended_at_ms, Lease.expires_at_ms))
        .where(Lease.pool_id == pool.id, Lease.started_at_ms < end_ms,
               or_(Lease.ended_at_ms.is_(None), Lease.ended_at_ms > start_ms),
               Lease.expires_at_ms > start_ms)).all()
    intervals = [Interval(s, e) for s, e in leases]
    hourly, peak = concurrency(intervals, start_ms, end_ms)
    size = catalog.active_numbers(db, pool.id)
    exhaustions = db.execute(select(PoolExhaustion.at_ms, PoolExhaustion.session_id).where(
        PoolExhaustion.pool_id == pool.id, PoolExhaustion.at_ms >= start_ms,
        PoolExhaustion.at_ms < end_ms)).all()

    arrivals = Counter((s - start_ms) // HOUR_MS for s, _ in leases if s >= start_ms)
    arrivals.update((at - start_ms) // HOUR_MS for at, _ in exhaustions)
    busiest_hour, busiest = max(arrivals.items(), key=lambda kv: kv[1], default=(None, 0))
    held = [e - s for s, e in leases if e > s]
    mean_hold_s = (sum(held) / len(held) / 1000) if held else float(pool.lease_seconds)
    hold_s = mean_hold_s + pool.cooldown_seconds
    load = busiest * hold_s / 3600
    recommended = servers_for(load, target_rate) if busiest else None
    attempts = len([1 for s, _ in leases if s >= start_ms]) + len(exhaustions)
    accuracy = {} if accuracy_target is None else {
        "accuracy": pool_accuracy(db, pool, start_ms, end_ms, size, accuracy_target)}
    return {
        "pool_id": pool.id,
        "start": start.astimezone(zone).isoformat(), "end": end.astimezone(zone).isoformat(),
        "numbers": size,
        "peak_concurrent_leases": peak,
        "timezone": str(zone),
        "utilisation": [{"hour": dt.datetime.fromtimestamp((start_ms + h * HOUR_MS) / 1000,
                                                            zone).isoformat(),
                         "peak_leases": n, "share": round(n / size, 4) if size else None}
                        for h, n in enumerate(hourly)],
        "leases": attempts - len(exhaustions),
        "exhaustion_events": len(exhaustions),
        "fallback_sessions": len({session for _, session in exhaustions}),
        "exhaustion_rate": round(len(exhaustions) / attempts, 4) if attempts else None,
        "recommendation": {
            "target_exhaustion_rate": target_rate,
            "recommended_numbers": recommended,
            "busiest_hour": None if busiest_hour is None else dt.datetime.fromtimestamp(
                (start_ms + busiest_hour * HOUR_MS) / 1000, zone).isoformat(),
            "busiest_hour_arrivals": busiest,
            "mean_holding_seconds": round(hold_s, 1),
            "offered_load_erlangs": round(load, 2),
            "reasoning": (
                f"In the busiest hour {busiest} visitors asked for a number; each held one "
                f"for {mean_hold_s:.0f} s on average plus a {pool.cooldown_seconds} s "
                f"cool-down, an offered load of {load:.2f} Erlangs. By the Erlang B formula "
                f"{recommended} numbers keep the chance that a visitor finds none free at or "
                f"below {target_rate:.1%}; the pool has {size}."
                if busiest else "No traffic recorded in this period: nothing to size from."),
        },
    } | accuracy
