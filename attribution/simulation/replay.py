"""Replay a pool's own recorded traffic through the simulator at other pool sizes.

Groundwork for sizing pools by accuracy (issue 13, part 3): what the pool saw in a window
(when visits arrived, how long they stayed, who called and how long after leaving) is read
back from SQL, resampled with a seeded RNG into a schedule the runner plays, and played at
each size. Times stay in the traffic's own milliseconds, so five minutes of 30-second leases
replay as faithfully as a month of 30-minute ones: nothing here assumes an hour.

Known bias: a call is tied to the visit the matcher credited, so a late caller credited to
the number's next holder shows up here as that holder's in-visit call.
"""

from __future__ import annotations

import bisect
import datetime as dt
import math
import random
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from attribution.call_areas import Region, caller_region, region_key
from attribution.models import Call, Visit
from attribution.simulation import forget, free_block
from attribution.simulation.model import (
    PlannedCall,
    PlannedVisit,
    PoolSettings,
    Schedule,
    heartbeats,
)
from attribution.simulation.runner import run_size
from pools.models import Lease, Pool


@dataclass
class RecordedTraffic:
    """Empirical samples of one pool's window, one entry per visit (session), by arrival."""

    pool_id: int
    start_ms: int
    span_ms: int
    settings: PoolSettings
    arrivals_ms: list[int]  # visit starts, relative to start_ms
    durations_ms: list[int]  # first lease to last renewal of the session
    delays_ms: list[int | None]  # call start minus visit end (<= 0: during); None: no call
    visitors: list[str]  # visitor id of each visit ("" when the visit row is missing)
    unmatched_calls: int = 0  # calls to the pool credited to no visit (fallback, unknown)
    sessions: list[str] = field(default_factory=list)  # session id of each visit
    # How long after each visit's end its number went to another visit (inf: not in the
    # data); empty when not known. Says whose late calls the pool could have seen.
    reused_after_ms: list[float] = field(default_factory=list)
    # When each visit ended (ms, on the window's clock), in the order of ``durations_ms``:
    # ``accuracy.with_refused`` adds arrivals without a visit, so arrivals stop lining up.
    ends_ms: list[int] = field(default_factory=list)
    # The pool's latest call (ms): calls are known up to then. None: the window's end plus
    # the attribution window.
    observed_until_ms: int | None = None
    # Where each visit was located and where its caller's number is from (as
    # ``call_areas.region_key`` keys them; None: unknown, or no call), in the order of
    # ``durations_ms``; empty when not known. The matcher's area evidence, for the model.
    regions: list = field(default_factory=list)
    caller_regions: list = field(default_factory=list)

    @property
    def visits(self) -> int:
        return len(self.arrivals_ms)

    @property
    def call_share(self) -> float:
        """Share of visits that called."""
        return len(self.call_delays_ms) / self.visits if self.visits else 0.0

    @property
    def call_delays_ms(self) -> list[int]:
        return [d for d in self.delays_ms if d is not None]


def _ms(moment: dt.datetime) -> int:
    return int(moment.timestamp() * 1000)  # the column gives back aware UTC on every engine


def _moment(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC)


def recorded_traffic(db: Session, pool_id: int, start_ms: int, end_ms: int) -> RecordedTraffic:
    """What pool ``pool_id`` saw from ``start_ms`` to ``end_ms``: visits that began in the
    window (a session's leases joined into one visit) and the calls credited to them."""
    pool = db.get(Pool, pool_id)
    if pool is None:
        raise ValueError(f"no pool {pool_id}")
    settings = PoolSettings(lease_seconds=pool.lease_seconds,
                            cooldown_seconds=pool.cooldown_seconds,
                            attribution_window_seconds=pool.attribution_window_seconds,
                            max_lease_seconds=pool.max_lease_seconds)
    in_window = select(Lease.session_id).where(
        Lease.pool_id == pool_id, Lease.started_at_ms >= start_ms, Lease.started_at_ms < end_ms)
    span: dict[str, list[int]] = {}  # session -> [first start, last renewal]
    last: dict[str, tuple[int, str]] = {}  # session -> (start, number) of its latest lease
    # Every lease of a session seen in the window: one it took after a lapse, even past
    # end_ms, still lengthens its visit.
    rows = db.execute(select(Lease.session_id, Lease.started_at_ms, Lease.last_renewed_at_ms,
                             Lease.number)
                      .where(Lease.pool_id == pool_id, Lease.session_id.in_(in_window)))
    for session_id, started, renewed, number in rows:
        seen = span.setdefault(session_id, [started, renewed])
        seen[0], seen[1] = min(seen[0], started), max(seen[1], renewed)
        if started >= last.get(session_id, (started, ""))[0]:
            last[session_id] = (started, number)
    # A session that began before the window belongs to the window before.
    span = {s: seen for s, seen in span.items() if seen[0] >= start_ms}
    visitor_of, region_of = {}, {}
    for session_id, visitor_id, country, region in db.execute(
            select(Visit.session_id, Visit.visitor_id, Visit.country, Visit.region)
            .where(Visit.session_id.in_(in_window))):
        visitor_of[session_id] = visitor_id
        region_of[session_id] = region_key(country, region)
    first_call: dict[str, int] = {}
    caller_of: dict[str, Region | None] = {}
    for session_id, started_at, number, valid, country, region in db.execute(
            select(Call.session_id, Call.started_at, Call.from_number, Call.from_valid,
                   Call.caller_country, Call.caller_region).where(
                Call.pool_id == pool_id, Call.session_id.in_(in_window))):
        at = _ms(started_at)
        if session_id in span and at < first_call.get(session_id, at + 1):
            first_call[session_id] = at  # one call per visit: the first is the one it led to
            caller_of[session_id] = caller_region(number, valid, country, region)
    unmatched = db.scalar(select(func.count(Call.id)).where(
        Call.pool_id == pool_id, Call.session_id.is_(None),
        Call.started_at >= _moment(start_ms), Call.started_at < _moment(end_ms)))
    latest = db.scalar(select(func.max(Call.started_at)).where(Call.pool_id == pool_id))
    order = sorted(span, key=lambda s: (span[s][0], s))
    reused = _reused_after(db, pool_id, start_ms, {s: (*last[s], span[s][1]) for s in order})
    return RecordedTraffic(
        pool_id, start_ms, end_ms - start_ms, settings,
        arrivals_ms=[span[s][0] - start_ms for s in order],
        durations_ms=[span[s][1] - span[s][0] for s in order],
        delays_ms=[first_call[s] - span[s][1] if s in first_call else None for s in order],
        visitors=[visitor_of.get(s, "") for s in order], unmatched_calls=unmatched,
        sessions=order, reused_after_ms=[reused[s] for s in order],
        ends_ms=[span[s][1] for s in order],
        observed_until_ms=_ms(latest) if latest is not None else None,
        regions=[region_of.get(s) for s in order],
        caller_regions=[caller_of.get(s) for s in order])


def _reused_after(db: Session, pool_id: int, start_ms: int,
                  visits: dict[str, tuple[int, str, int]]) -> dict[str, float]:
    """Per session (its latest lease's start and number, its visit's end): how long after
    the visit ended the next lease of that number began (inf: none so far)."""
    starts: dict[str, list[int]] = {}
    for number, started in db.execute(
            select(Lease.number, Lease.started_at_ms).where(
                Lease.pool_id == pool_id, Lease.started_at_ms >= start_ms)
            .order_by(Lease.number, Lease.started_at_ms)):
        starts.setdefault(number, []).append(started)
    out = {}
    for session, (started, number, ended) in visits.items():
        later = starts.get(number, [])
        following = bisect.bisect_right(later, started)
        out[session] = later[following] - ended if following < len(later) else math.inf
    return out


def replay_schedule(traffic: RecordedTraffic, seed: int) -> Schedule:
    """A schedule the runner plays: the observed arrivals, each given the (duration, call
    delay) of a visit drawn with replacement. Drawn together, so an in-visit call never
    falls before its visit's start."""
    rng = random.Random(seed)
    lease_ms = traffic.settings.lease_seconds * 1000
    profiles = list(zip(traffic.durations_ms, traffic.delays_ms, strict=True))
    visitor_index: dict[str, int] = {}
    visits = []
    for index, arrival in enumerate(traffic.arrivals_ms):
        duration, delay = rng.choice(profiles)
        start = traffic.start_ms + arrival
        end = start + duration
        # Keep the observed visitors, so a returning visitor returns in the replay too.
        visitor = visitor_index.setdefault(traffic.visitors[index] or f"#{index}",
                                           len(visitor_index))
        visit = PlannedVisit(index, visitor, False, start, end, [start])
        # The recorded end is the last renewal: one more millisecond lets it happen.
        visit.beats = heartbeats(start, end + 1, [start], lease_ms)
        if delay is not None:
            visit.call = PlannedCall(max(start, end + delay),
                                     "during" if delay <= 0 else "after")
        visits.append(visit)
    return Schedule(visits, traffic.start_ms, traffic.span_ms, lease_ms)


def replay_accuracy(redis, db: Session, traffic: RecordedTraffic, sizes: Sequence[int],
                    seed: int) -> list[tuple[int, float, int, int, int]]:
    """(size, accuracy, wrong, unattributed, exhausted) of the replayed traffic per size,
    each size on a new simulated pool whose Redis keys are deleted afterwards."""
    schedule = replay_schedule(traffic, seed)
    prefix = f"dnisim-{secrets.token_hex(4)}"
    out = []
    try:
        for size in sorted(set(sizes)):
            result = run_size(redis, db, schedule, traffic.settings, size, prefix=prefix,
                              number_block=free_block(db))
            out.append((size, result.accuracy, result.count("wrong"),
                        result.count("unattributed"), result.count("exhausted")))
    finally:
        forget(redis, prefix)
    return out
