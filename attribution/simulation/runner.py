"""Play a planned schedule against a real pool: the real Lua scripts, recorder and matcher.

The clock is virtual: every pool call gets the event's ``now_ms`` and every call is matched
at its own moment, so a week of traffic runs as fast as Redis and SQL answer. Events run in
time order (arrivals, then heartbeats, then calls at the same millisecond). Before a call is
matched the pool is reclaimed and its events recorded into SQL, as the worker does every
half second in production.

Each lease carries where the model located its visit (the Visit row's country and region,
as the recorder keeps what it located from the IP), and each call comes from the visitor's
own phone, stored with the caller's area as ingest stores it: what the matcher learns its
area evidence from (``attribution.call_areas``).

A caller who tapped the ``tel:`` link or copied the number (the model's ``touch``) reports it
through ``PoolService.touch``, as the snippet's beacon does through the API, a second or two
before the call, while the visit still holds the number.

Simplifications, all on the side of the service: a visitor refused a number (the pool was
exhausted) sees the fallback until one of their later page views gets a number; renewals
never fail for other reasons; Redis key lifetimes (rate and page counters) run on the real
clock.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import orjson
from sqlalchemy.orm import Session

from attribution import call_areas, call_delays, callers, matching
from attribution.matching import match_call
from attribution.models import Call
from attribution.recorder import drain_pool
from attribution.simulation.model import PlannedVisit, PoolSettings, Schedule
from pools import catalog
from pools.errors import PoolExhausted
from pools.events import BATCH
from pools.leases import Lease, LeaseRequest, PoolService, SessionIdle
from pools.touches import RECORDED

TARGET = "+18005550100"  # the number printed on the simulated site's pages
DESTINATION = "+12125550199"
OUTCOMES = ("right", "wrong", "unattributed", "exhausted")
RECORD_EVERY = 2000  # heartbeats between two recorder passes (keeps the stream short)


@dataclass
class CallResult:
    """One simulated call: what really happened and what the matcher said."""

    visit: int
    phase: str  # during, right_after or later
    at_ms: int
    dialled: str
    true_session: str
    credited_session: str | None
    credited_visit: int | None  # the visit whose session was credited, if any
    method: str
    confidence: float
    outcome: str  # right, wrong, unattributed or exhausted
    seconds_after_visit: float  # 0 for calls during the visit
    touch: str | None = None  # click or copy, when the caller's session reported one
    # When the matcher weighed candidates: each session with its posterior, the possession
    # rule's answer first (empty when one plausible lease left nothing to weigh).
    weighed: tuple[tuple[str, float], ...] = ()


@dataclass
class SizeResult:
    """The outcome of one pool size: counts by outcome, and every call for finer analysis."""

    numbers: int
    calls: list[CallResult] = field(default_factory=list)
    visits: int = 0
    visits_refused: int = 0  # visits shown the fallback at arrival

    def count(self, outcome: str) -> int:
        return sum(1 for c in self.calls if c.outcome == outcome)

    @property
    def accuracy(self) -> float:
        """Share of all calls credited to the visit that made them."""
        return self.count("right") / len(self.calls) if self.calls else 1.0


@dataclass
class _VisitState:
    session_id: str
    number: str | None = None  # the tracking number shown now; None = the fallback
    restarts: int = 0


class PoolRun:
    """One pool of ``size`` numbers on its own simulated site, played through a schedule."""

    def __init__(self, redis, db: Session, schedule: Schedule, settings: PoolSettings,
                 size: int, *, prefix: str, number_block: int):
        self.db = db
        self.schedule = schedule
        self.pools = PoolService(redis, prefix=prefix)
        self.site = catalog.create_site(db, name=f"simulated site ({size} numbers)")
        self.fallback = fallback_number(number_block)
        self.pool, _ = catalog.create_pool(
            db, self.pools, self.site, numbers=pool_numbers(number_block, size),
            now_ms=schedule.start_ms, name=f"simulated {size}", target=TARGET,
            destination=DESTINATION, fallback=self.fallback,
            lease_seconds=settings.lease_seconds, cooldown_seconds=settings.cooldown_seconds,
            attribution_window_seconds=settings.attribution_window_seconds,
            max_lease_seconds=settings.max_lease_seconds)
        db.commit()
        # A new pool on a new site has learned nothing: whatever the process cached under
        # their ids came from another database (tests empty theirs and ids start over), and
        # reusing it would make the same seed give another run.
        call_delays.forget(self.pool.id)
        call_areas.forget(self.site.id)
        matching.forget(self.pool.id)
        self.result = SizeResult(size, visits=len(schedule.visits))
        self.states: dict[int, _VisitState] = {}
        self.visit_of: dict[str, int] = {}  # session id -> visit index
        self.touched: dict[int, str] = {}  # visit index -> the touch its session reported
        self.since_recorded = 0

    def run(self) -> SizeResult:
        for at_ms, _, kind, visit, page in events(self.schedule):
            if kind == "call":
                self.call(visit, at_ms)
            elif kind == "touch":
                self.touch(visit, at_ms)
            else:
                self.beat(visit, at_ms, page)
        self.record()
        return self.result

    # -- the snippet's side --------------------------------------------------------------

    def beat(self, visit: PlannedVisit, at_ms: int, page: bool) -> None:
        state = self.states.get(visit.index)
        if state is None:
            state = self.states[visit.index] = _VisitState(self.session_id(visit))
            self.lease(state, visit, at_ms, resuming=False)
            if state.number is None:
                self.result.visits_refused += 1
        elif state.number is not None:
            outcome = self.pools.renew_many([self.pool.id], state.session_id,
                                            self.site.key, at_ms)[0]
            if not isinstance(outcome, Lease):  # lapsed or too old: the snippet leases again
                self.lease(state, visit, at_ms, resuming=True)
        elif page:  # shown the fallback: each page load asks again
            self.lease(state, visit, at_ms, resuming=False)
        self.since_recorded += 1
        if self.since_recorded >= RECORD_EVERY:
            self.record()

    def lease(self, state: _VisitState, visit: PlannedVisit, at_ms: int, *,
              resuming: bool) -> None:
        request = LeaseRequest(self.pool.id, state.session_id, at_ms,
                               visitor_id=visit.visitor_id, resuming=resuming,
                               payload=self.visit_payload(visit, state.session_id, at_ms))
        try:
            state.number = self.pools.lease(request).number
        except SessionIdle:
            state.restarts += 1  # idle too long to resume: the service starts a new session
            state.session_id = self.session_id(visit, state.restarts)
            self.lease(state, visit, at_ms, resuming=False)
        except PoolExhausted:
            state.number = None

    def session_id(self, visit: PlannedVisit, restarts: int = 0) -> str:
        """Unique in the database: each pool size replays the same visits."""
        session_id = f"sim{self.pool.id}-{visit.index}" + (f"-{restarts}" if restarts else "")
        self.visit_of[session_id] = visit.index
        return session_id

    def visit_payload(self, visit: PlannedVisit, session_id: str, at_ms: int) -> str:
        """The visit row the service would record with a new lease (device, visitor, and
        where geolocation placed the visit: the recorder keeps it, as it keeps what it
        located from the IP)."""
        row = {"session_id": session_id, "visitor_id": visit.visitor_id,
               "site_id": self.site.id, "created_at_ms": at_ms,
               "device_type": "mobile" if visit.mobile else "desktop"}
        if visit.located:
            row.update(country="US", region=visit.located)
        return orjson.dumps(row).decode()

    def touch(self, visit: PlannedVisit, at_ms: int) -> None:
        """The caller taps the tel: link or copies the number the page shows: the snippet's
        beacon, through the same pool call as the API. Nothing to report on the fallback."""
        state = self.states.get(visit.index)
        if state is None or state.number is None:
            return
        outcome = self.pools.touch([self.pool.id], state.session_id, self.site.key,
                                   state.number, visit.call.touch, at_ms)[0]
        if outcome == RECORDED:
            self.touched[visit.index] = visit.call.touch

    # -- the phone's side ----------------------------------------------------------------

    def call(self, visit: PlannedVisit, at_ms: int) -> None:
        state = self.states[visit.index]
        dialled = state.number or self.fallback
        self.pools.reclaim(self.pool.id, at_ms)
        self.record()
        caller = callers.identify(caller_number(visit))
        match = match_call(self.db, dialled, at_ms, self.pools, caller=caller)
        self.store_call(visit, caller, dialled, at_ms, match)
        self.db.commit()
        if state.number is None:
            outcome = "exhausted"
        elif match.session_id is None:
            outcome = "unattributed"
        else:
            outcome = "right" if match.session_id == state.session_id else "wrong"
        self.result.calls.append(CallResult(
            visit.index, visit.call.phase, at_ms, dialled, state.session_id, match.session_id,
            self.visit_of.get(match.session_id), match.method, match.confidence, outcome,
            max(0.0, (at_ms - visit.end_ms) / 1000), self.touched.get(visit.index),
            tuple((lease["session_id"], lease["posterior"])
                  for lease in match.explanation.get("leases", ())
                  if "posterior" in lease)))

    def store_call(self, visit: PlannedVisit, caller: callers.Caller, dialled: str,
                   at_ms: int, match) -> None:
        """Keep the call as ingest would (its match, its site, the caller's area): the pool's
        matcher learns its call delays and its callers' areas from the calls it has stored,
        and a returning caller is known by them."""
        self.db.add(Call(provider="sim", provider_call_id=f"sim{self.pool.id}-{visit.index}",
                         from_number=caller.number, from_valid=caller.valid,
                         caller_country=caller.country, caller_region=caller.region,
                         to_number=dialled,
                         started_at=dt.datetime.fromtimestamp(at_ms / 1000, dt.UTC),
                         site_id=self.site.id, pool_id=match.pool_id,
                         session_id=match.session_id, method=match.method,
                         confidence=match.confidence, explanation={}))

    def record(self) -> None:
        """Copy the pool's pending events into SQL, as the worker does."""
        while drain_pool(self.pools, self.db, self.pool.id, "simulator", count=BATCH) == BATCH:
            pass  # a full batch: there may be more
        self.since_recorded = 0


def events(schedule: Schedule):
    """(ms, order, kind, visit, is page view) of the whole run, in time order: at one
    millisecond, heartbeats, then touches, then calls."""
    out = []
    for visit in schedule.visits:
        out += [(ms, 0, "beat", visit, page) for ms, page in visit.beats]
        if visit.call and visit.call.touch:
            out.append((visit.call.touch_ms, 1, "touch", visit, False))
        if visit.call:
            out.append((visit.call.at_ms, 2, "call", visit, False))
    out.sort(key=lambda e: (e[0], e[1], e[3].index))
    return out


def caller_number(visit: PlannedVisit) -> str:
    """The phone a visitor calls from: one per visitor, so a returning visitor's second
    call comes from the number of the first. The model gives each visitor one in an area
    code of some state (``model.phone_number``); a visit planned without geography (a
    replay) calls from San Francisco."""
    if visit.phone:
        return visit.phone
    return f"+1415{2_000_000 + visit.visitor % 8_000_000:07d}"


def pool_numbers(block: int, size: int) -> list[str]:
    """``size`` fictional US numbers of their own block, so pools never share one."""
    out = []
    for i in range(size):
        serial = block * 10_000 + i
        out.append(f"+1650{200 + serial // 10_000:03d}{serial % 10_000:04d}")
    return out


def fallback_number(block: int) -> str:
    """The pool's own fallback: a number shared by two pools would match neither."""
    return f"+1415{200 + block:03d}0000"


def run_size(redis, db: Session, schedule: Schedule, settings: PoolSettings, size: int, *,
             prefix: str, number_block: int) -> SizeResult:
    """Play ``schedule`` against a new pool of ``size`` numbers (at most 10,000)."""
    if not 1 <= size <= 10_000:
        raise ValueError("a simulated pool has 1 to 10,000 numbers")
    return PoolRun(redis, db, schedule, settings, size, prefix=prefix,
                   number_block=number_block).run()
