"""The call delays of a pool, learned from its own calls (``likelihood.Delays``).

A call is unambiguous when the matcher found one plausible lease for it: the number's
holder at the call's moment and nobody else near (method ``session``, confidence 1), or the
last lease of a number nobody held since (``session_expired`` at its fixed confidence).
Those count fully; a call weighed between candidates counts by its confidence (its share
of belief). Learning from the unambiguous calls alone would feed on itself: the calls the
current delays find easy are the ones that stay unambiguous, and the learned delays would
narrow call after call. Together they say how long after a lease began people call during
it, how long after it ended they call later, and how many call later.

Read from the existing tables (the pool's latest ``RECENT_CALLS`` calls of its site, and
their sessions' leases: two indexed queries) and cached per pool in the process for
``learned_cache.CACHE_SECONDS``, so matching pays for it once a minute at most.
"""

from __future__ import annotations

import datetime as dt
import time

from sqlalchemy import select
from sqlalchemy.orm import Session

from attribution.learned_cache import LearnedCache
from attribution.likelihood import DEFAULT_DELAYS, Delays
from attribution.models import Call
from pools.models import Lease

RECENT_CALLS = 500
MIN_CALLS = 20  # fewer usable calls than this: the defaults
UNWEIGHED = {"session": 1.0, "session_expired": 0.6}  # matching.CONFIDENCE of a plain match

_cache = LearnedCache()  # per pool


def delays_for(db: Session, pool_id: int, site_id: int | None, at_ms: int, *,
               clock=time.monotonic) -> Delays:
    """The pool's delays as of a call at ``at_ms``, learned at most once a minute
    (``learned_cache``)."""
    return _cache.get(pool_id, at_ms, lambda: learn(db, pool_id, site_id, at_ms), clock=clock)


def forget(pool_id: int | None = None) -> None:
    """Drop the cached delays of one pool, or of all (tests, a pool's settings changed)."""
    _cache.forget(lambda key: pool_id is None or key == pool_id)


def learn(db: Session, pool_id: int, site_id: int | None, at_ms: int) -> Delays:
    """Delays from the pool's latest calls before ``at_ms``; the defaults below
    ``MIN_CALLS``."""
    at = dt.datetime.fromtimestamp(at_ms / 1000, dt.UTC)
    query = select(Call.session_id, Call.to_number, Call.started_at, Call.method,
                   Call.confidence).where(
        Call.pool_id == pool_id, Call.session_id.is_not(None),
        Call.method.in_(tuple(UNWEIGHED)), Call.started_at < at)
    if site_id is not None:  # ix_calls_site_started: the site's calls, latest first
        query = query.where(Call.site_id == site_id)
    calls = [row for row in db.execute(query.order_by(Call.started_at.desc())
                                       .limit(RECENT_CALLS))]
    if len(calls) < MIN_CALLS:
        return DEFAULT_DELAYS
    sessions = {row.session_id for row in calls}
    leases: dict[tuple[str, str], list[tuple[int, int]]] = {}
    for session_id, number, started, covered in db.execute(
            select(Lease.session_id, Lease.number, Lease.started_at_ms, Lease.expires_at_ms)
            .where(Lease.pool_id == pool_id, Lease.session_id.in_(sessions))):
        leases.setdefault((session_id, number), []).append((started, covered))
    in_lease, after_lease = [], []
    for row in calls:
        weight = 1.0 if row.confidence == UNWEIGHED[row.method] else row.confidence
        call_ms = int(_aware(row.started_at).timestamp() * 1000)
        held = [lease for lease in leases.get((row.session_id, row.to_number), ())
                if lease[0] <= call_ms]
        if not held:
            continue
        started, covered = max(held)
        if call_ms <= covered:
            in_lease.append(((call_ms - started) / 1000, weight))
        else:
            after_lease.append(((call_ms - covered) / 1000, weight))
    if len(in_lease) + len(after_lease) < MIN_CALLS:
        return DEFAULT_DELAYS
    return Delays.learned(in_lease, after_lease)


def _aware(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
