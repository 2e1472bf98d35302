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

When step 2's holder got N shortly before the call while an earlier lease of N lost it
shortly before that (a late caller whose number went to the next visitor), possession is
not enough: the candidates are weighed by likelihood (``attribution.likelihood``: how long
each had the number before the call, the pool's learned call delays, a tel: click or copy,
a caller already tied to a visitor, the caller's area against the visit's location as the
site's calls taught it, ``attribution.call_areas``). With one plausible candidate the
answer is exactly the possession rule's. With several, ``confidence`` is the calibrated
posterior of the lease credited, which stays the rule's unless another reaches
``likelihood.SWITCH_AT``; the explanation lists each lease once, with its likelihood, posterior and
evidence.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field

from redis.exceptions import RedisError
from sqlalchemy import Select, bindparam, exists, literal, null, or_, select, union_all
from sqlalchemy.orm import Session, aliased

from attribution import call_areas, call_delays, learned_cache
from attribution.call_areas import Areas, region_key
from attribution.callers import Caller
from attribution.likelihood import (
    TOUCH_EXPECTED,
    TOUCH_EXPECTED_UNKNOWN,
    TOUCH_SKEW_MS,
    Candidate,
    contest,
    rivals,
)
from attribution.models import Call, StaticNumber, Visit
from attribution.recorder import record_pending
from pools.errors import PoolError
from pools.leases import PoolService
from pools.models import Lease, Pool, PoolNumber

log = logging.getLogger(__name__)

CONFIDENCE = {"session": 1.0, "session_expired": 0.6, "static": 1.0, "fallback": 0.3,
              "unattributed": 0.0}
CANDIDATES = 5  # leases of N considered, latest first
# Weigh plausible candidates by likelihood; False: possession only, the rule before issue 13
# (the accuracy benchmark sets it to measure both in one run).
LIKELIHOOD = True


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


def match_call(db: Session, number: str, at_ms: int, pools: PoolService | None = None, *,
               caller: Caller | None = None, likelihood: bool | None = None) -> Match:
    """Decide who the call to ``number`` at ``at_ms`` belongs to, and say why.

    ``caller`` (from ``callers.identify``) lends evidence when candidates are weighed;
    ``likelihood`` overrides ``LIKELIHOOD`` for this call."""
    at = dt.datetime.fromtimestamp(at_ms / 1000, dt.UTC)
    found = db.execute(_TRACKING_NUMBER, {"number": number, "at": at}).all()
    statics = sorted((r for r in found if r.kind == "static"), key=lambda r: r.since)
    if statics:
        static = statics[-1]
        return Match("static", CONFIDENCE["static"], static_number_id=static.id, explanation={
            "steps": [f"{number} is static number {static.id} ({static.label or static.source})"]})

    # The pool it served at that time; a number moved between pools has one row per pool.
    members = sorted((r for r in found if r.kind == "pool"), key=lambda r: r.since, reverse=True)
    member = next((m for m in members if _aware(m.since) <= at), members[-1] if members else None)
    if member is not None:
        ref = PoolRef(member.id, member.name, member.window, member.site_id, member.publisher)
        weigh = LIKELIHOOD if likelihood is None else likelihood
        return _match_pool_number(db, ref, number, at_ms, pools, caller if weigh else None,
                                  weigh)

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


def _tracking_number_query():
    """What ``number`` was at ``at``: one round trip for both kinds of tracking number. A
    number entered after the fact still counts (CDR imports); a retired one does not. The
    static number's label and source come along for the explanation. Built once, like
    ``_visits_query``: building it cost more CPU than the database takes to answer."""
    number, at = bindparam("number"), bindparam("at")
    static_rows = select(literal("static").label("kind"), StaticNumber.id.label("id"),
                         StaticNumber.created_at.label("since"), null().label("name"),
                         null().label("window"), StaticNumber.label.label("label"),
                         StaticNumber.source.label("source"), null().label("site_id"),
                         null().label("publisher")).where(
        StaticNumber.number == number,
        or_(StaticNumber.retired_at.is_(None), StaticNumber.retired_at > at))
    pool_rows = select(literal("pool").label("kind"), PoolNumber.pool_id.label("id"),
                       PoolNumber.added_at.label("since"), Pool.name.label("name"),
                       Pool.attribution_window_seconds.label("window"), null().label("label"),
                       null().label("source"), Pool.site_id.label("site_id"),
                       Pool.publisher.label("publisher")).join(Pool).where(
        PoolNumber.number == number,
        or_(PoolNumber.retired_at.is_(None), PoolNumber.retired_at > at))
    return union_all(static_rows, pool_rows)


_TRACKING_NUMBER = _tracking_number_query()


@dataclass(frozen=True)
class PoolRef:
    """What matching needs of a pool."""

    id: int
    name: str
    attribution_window_seconds: int
    site_id: int | None = None
    publisher: str | None = None


def _match_pool_number(db: Session, pool: PoolRef, number: str, at_ms: int,
                       pools: PoolService | None, caller: Caller | None = None,
                       weigh: bool = False) -> Match:
    steps = [f"{number} belongs to pool {pool.id} ({pool.name})"]
    _record_pending_leases(db, pools, pool.id, number)
    live = _live_holder(pools, pool.id, number, at_ms, steps)
    candidates = db.execute(_CANDIDATE_LEASES, {"pool_id": pool.id, "number": number,
                                                "at_ms": at_ms}).all()
    match = _by_possession(pool, at_ms, live, candidates, steps)
    if weigh and match.method in ("session", "session_expired"):
        return _weighed(db, pool, number, at_ms, pools, caller, live, candidates, match)
    return match


def _by_possession(pool: PoolRef, at_ms: int, live: tuple[str, int] | None, candidates: list,
                   steps: list[str]) -> Match:
    """The possession rule: the holder at the call's moment, else the last lease if it
    ended inside the attribution window and nobody held the number since."""
    considered: list[dict] = []
    if live is not None and (not candidates or live[1] >= candidates[0].started_at_ms):
        session_id, start = live
        verdict = "live holder in Redis when the call arrived: chosen"
        # The live lease is usually in SQL already (its events were just recorded): list
        # it once, with what SQL knows of it, and the older leases after it.
        own = _own_row(candidates, live)
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


def _own_row(candidates: list, live: tuple[str, int]):
    return next((lease for lease in candidates
                 if (lease.session_id, lease.started_at_ms) == live), None)


def _covered_until(lease) -> int:
    """The last moment a recorded lease covered its number (released early: its release)."""
    if lease.ended_at_ms is not None:
        return min(lease.expires_at_ms, lease.ended_at_ms)
    return lease.expires_at_ms


def _weighed(db: Session, pool: PoolRef, number: str, at_ms: int, pools: PoolService | None,
             caller: Caller | None, live: tuple[str, int] | None, candidates: list,
             possession: Match) -> Match:
    """``possession``'s answer (the holder at the call's moment, or the last lease), unless
    an earlier lease of the number is a plausible caller too: then likelihood decides."""
    window_ms = pool.attribution_window_seconds * 1000
    if possession.method == "session":
        if live is not None and live[0] == possession.session_id and (
                not candidates or live[1] >= candidates[0].started_at_ms):
            holder = live
        else:
            holder = next((lease.session_id, lease.started_at_ms) for lease in candidates
                          if lease.started_at_ms <= at_ms <= lease.expires_at_ms)
        first = Candidate(holder[0], holder[1], at_ms, live=True)
    else:
        last = candidates[0]
        first = Candidate(last.session_id, last.started_at_ms, last.expires_at_ms)
    earlier = rivals(first, [Candidate(lease.session_id, lease.started_at_ms,
                                       _covered_until(lease)) for lease in candidates],
                     at_ms, window_ms)
    if not earlier:
        return possession
    delays = call_delays.delays_for(db, pool.id, pool.site_id, at_ms)
    steps = list(possession.explanation["steps"])
    decided = contest(first, earlier, at_ms, delays, window_ms, evidence=lambda contenders:
                      _with_evidence(db, pool, number, at_ms, pools, caller, contenders, steps))
    if decided is None:
        return possession  # one plausible candidate: the possession rule's answer
    contenders, scored, winner = decided.contenders, decided.scored, decided.winner
    posterior_of = {id(c): p for c, p in decided.ranked}  # the contenders themselves
    learned = (f"call delays learned from {delays.calls} of the pool's calls" if delays.calls
               else "the default call delays")
    steps.append(f"{len(contenders)} plausible candidates (an earlier lease ended inside the "
                 f"{pool.attribution_window_seconds}s window before the "
                 f"{'holder' if first.live else 'last lease'} began): weighed by likelihood, "
                 f"with {learned}")
    considered = []
    views = {(lease.session_id, lease.started_at_ms): lease for lease in candidates}
    for candidate, score in zip(contenders, scored, strict=True):
        key = (candidate.session_id, candidate.started_at_ms)
        row = views.pop(key, None)
        view = _lease_view(row, "") if row is not None else {
            "session_id": candidate.session_id, "started_at_ms": candidate.started_at_ms}
        p = posterior_of[id(candidate)]
        if candidate is winner:
            verdict = ("live holder" if candidate.live else "ended before the call") + ": chosen"
        else:
            verdict = "live holder" if candidate.live else "older"
        view.update(verdict=verdict,
                    likelihood=score["likelihood"], posterior=round(p, 4),
                    evidence={name: value for name, value in score.items()
                              if name not in ("likelihood",)})
        considered.append(view)
    considered.extend(_lease_view(lease, "older, outside the window")
                      for lease in views.values())
    method = "session" if winner.live else "session_expired"
    return Match(method, _confidence(method, decided.posterior), winner.session_id, pool.id,
                 explanation={"steps": steps, "leases": considered})


def _confidence(method: str, posterior: float) -> float:
    """A weighed answer's confidence: never the exact figure of an unweighed match, so the
    delays are learned from unambiguous calls only (``call_delays.UNWEIGHED``)."""
    value = min(round(posterior, 4), 0.9999)
    return value + 0.0001 if value == CONFIDENCE[method] else value


def _with_evidence(db: Session, pool: PoolRef, number: str, at_ms: int,
                   pools: PoolService | None, caller: Caller | None,
                   contenders: list[Candidate], steps: list[str]) -> list[Candidate]:
    """The candidates with what else is known: the snippet's tel: clicks and copies of the
    number, the caller's earlier calls from a candidate's visitor, the caller's area."""
    touched: dict[str, int] = {}
    beacons = False  # the pool's snippet reports touches: a missing one says something
    touches = getattr(pools, "touches", None) if pools is not None else None
    if touches is not None:
        since_ms = at_ms - pool.attribution_window_seconds * 1000
        try:
            for session_id, _kind, touched_ms in touches(pool.id, number, since_ms):
                if touched_ms <= at_ms + TOUCH_SKEW_MS:
                    touched[session_id] = max(touched_ms, touched.get(session_id, touched_ms))
            beacons = _beacons(pools, pool.id, at_ms)
        except (PoolError, RedisError):
            steps.append("Redis unavailable: weighed without the snippet's clicks and copies")
    visits = {}
    if caller is not None or beacons:  # else nothing the visits say would count
        visits = _visits(db, pool, at_ms, caller, [c.session_id for c in contenders])
    areas = _site_areas(db, pool, at_ms, caller, visits)
    out = []
    for c in contenders:
        known, country, region, device = visits.get(c.session_id, (False, None, None, None))
        expected = TOUCH_EXPECTED.get(device, TOUCH_EXPECTED_UNKNOWN) if beacons else None
        match, ratio = _area(caller, country, region, areas)
        out.append(Candidate(c.session_id, c.started_at_ms, c.ended_at_ms, c.live,
                             touched_at_ms=touched.get(c.session_id), caller_known=bool(known),
                             area_match=match, touch_expected=expected, area_ratio=ratio))
    return out


def _site_areas(db: Session, pool: PoolRef, at_ms: int, caller: Caller | None,
                visits: dict) -> Areas | None:
    """What the pool's site has learned of its callers' areas (``call_areas``, cached), asked
    only when it could count: the caller's region and some candidate's are known."""
    if caller is None or not caller.valid or pool.site_id is None \
            or region_key(caller.country, caller.region) is None:
        return None
    if not any(region_key(country, region) for _, country, region, _ in visits.values()):
        return None
    return call_areas.areas_for(db, pool.site_id, pool.publisher, at_ms)


_beacon_cache = learned_cache.LearnedCache()  # per pool: its snippets send touches


def forget(pool_id: int | None = None) -> None:
    """Drop what this process cached of one pool's snippet beacons, or of all (tests, a new
    simulated pool that reuses the id of another database's)."""
    _beacon_cache.forget(lambda key: pool_id is None or key == pool_id)


def _beacons(pools: PoolService, pool_id: int, at_ms: int) -> bool:
    """Whether the pool's visitors' snippets report touches at all (its touch counter), as of
    a minute ago at most (``learned_cache``)."""
    return _beacon_cache.get(pool_id, at_ms, lambda: pools.status(pool_id, at_ms)[
        "counters"].get("touches", 0) > 0)


def _visits(db: Session, pool: PoolRef, at_ms: int, caller: Caller | None,
            session_ids: list[str]) -> dict[str, tuple[bool, str | None, str | None, str | None]]:
    """Per candidate session: (the caller called before from this visitor's visits, the
    visit's country, region, device type), in one query. Earlier calls count within the
    pool's site and publisher only (docs/architecture.md, "Tenants")."""
    params = {"ids": session_ids, "caller": "", "site": -1, "publisher": "",
              "at": dt.datetime.fromtimestamp(at_ms / 1000, dt.UTC)}
    if caller is not None and caller.valid and pool.site_id is not None:
        params.update(caller=caller.number, site=pool.site_id, publisher=pool.publisher or "")
    query = _VISITS_OF_PUBLISHER if pool.publisher is not None else _VISITS
    return {row[0]: (bool(row[1]), *row[2:]) for row in db.execute(query, params)}


def _visits_query(publisher: bool):
    """Built once: matching runs for every call, and building a statement costs more than
    SQLite takes to answer it."""
    # The phone's earlier calls first, once (an index on the caller's number), then the
    # visitors of their visits: materialised, so the planner cannot start from the visits
    # (with stale statistics PostgreSQL walked every visit for each candidate).
    prior = select(Call.session_id).where(
        Call.from_number == bindparam("caller"), Call.started_at < bindparam("at"),
        Call.site_id == bindparam("site"),
        Call.publisher == bindparam("publisher") if publisher else Call.publisher.is_(None),
    ).cte("prior_calls").prefix_with("MATERIALIZED")
    same_visitor = aliased(Visit)
    earlier = exists().where(same_visitor.session_id == prior.c.session_id,
                             same_visitor.visitor_id == Visit.visitor_id)
    return select(Visit.session_id, earlier, Visit.country,
                  Visit.region, Visit.device_type).where(
        Visit.session_id.in_(bindparam("ids", expanding=True)))


_VISITS = _visits_query(publisher=False)
_VISITS_OF_PUBLISHER = _visits_query(publisher=True)


def _area(caller: Caller | None, country: str | None, region: str | None,
          areas: Areas | None) -> tuple[bool | None, float | None]:
    """The caller's area against the visit's location: match or mismatch (None: unknown),
    and the site's learned likelihood ratio for it (None: the weak constants apply, before
    the site has taught any, or when only the countries are known). Regions compare as
    ``call_areas.region_key`` keys them (a carrier's "California" is CA)."""
    if caller is None or not caller.valid or not caller.country or not country:
        return None, None
    theirs, visit = region_key(caller.country, caller.region), region_key(country, region)
    if theirs is not None and visit is not None:
        return call_areas.area_evidence(areas, theirs, visit)
    return (None if caller.country.upper() == country.upper() else False), None


def candidate_leases_query(pool_id: int, number: str, at_ms: int) -> Select:
    """The latest leases of ``number`` in ``pool_id`` begun by ``at_ms``.

    Only that pool's: a number retired from one pool and added to another must never be
    matched to a visit of its previous pool (another site, or another publisher). The
    unique index on (pool_id, number, started_at_ms) serves it. Plain rows, not ORM
    objects: this runs for every call, over millions of leases.
    """
    return _candidate_leases(pool_id, number, at_ms)


def _candidate_leases(pool_id, number, at_ms) -> Select:
    return (select(Lease.session_id, Lease.started_at_ms, Lease.last_renewed_at_ms,
                   Lease.expires_at_ms, Lease.ended_at_ms, Lease.end_reason)
            .where(Lease.pool_id == pool_id, Lease.number == number,
                   Lease.started_at_ms <= at_ms)
            .order_by(Lease.started_at_ms.desc()).limit(CANDIDATES))


# The same, built once with parameters (pool_id, number, at_ms): matching runs it per call.
_CANDIDATE_LEASES = _candidate_leases(bindparam("pool_id"), bindparam("number"),
                                      bindparam("at_ms"))


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
