"""Calls: ingest carrier events (idempotently), match, and qualify.

Every carrier's webhook becomes a ``CallEventIn``; ``ingest`` stores it once (the same
event delivered twice is one event), creates the call on the first event it sees, applies
state in order (a late ``ringing`` never overwrites ``completed``), and re-evaluates
qualification whenever the duration or disposition changes. Calls are never dropped:
one to an unknown number is kept as unattributed.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from decimal import Decimal
from types import SimpleNamespace

from sqlalchemy import Select, bindparam, func, literal, select, union_all
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased, joinedload

from attribution import callers, qualification
from attribution.conversions import outbox as conversion_outbox
from attribution.fraud import assess as fraud_assess
from attribution.matching import Match, match_call
from attribution.models import ATTRIBUTION_FIELDS, Call, CallEvent, StaticNumber, Visit
from attribution.webhooks import events as webhook_events
from attribution.zones import local_day
from pools.leases import PoolService
from pools.models import Pool, Site
from pools.phones import InvalidNumber, normalize

log = logging.getLogger(__name__)

# Order of call states: a state never replaces one of a higher rank.
STATUS_RANK = {"queued": 1, "initiated": 1, "ringing": 1, "in-progress": 2, "answered": 2,
               "completed": 3, "busy": 3, "no-answer": 3, "failed": 3, "canceled": 3}
TERMINAL = {s for s, rank in STATUS_RANK.items() if rank == 3}
# The caller's earlier calls, in a subquery of a query on calls. One alias for the process:
# building an alias of this wide table costs milliseconds, and it memoizes its columns.
EARLIER = aliased(Call, name="earlier")
FIRST_TOUCH_FIELDS = ("source", "medium", "campaign", "keyword", "gclid", "msclkid", "fbclid",
                      "landing_path", "method", "session_id")


@dataclass
class CallEventIn:
    """One carrier event, in the carrier-neutral form ``ingest`` takes."""

    provider: str
    provider_call_id: str
    event_key: str
    kind: str
    occurred_at: dt.datetime
    from_raw: str | None = None
    to_raw: str | None = None
    status: str | None = None
    sequence: int | None = None
    duration: int | None = None
    answered_at: dt.datetime | None = None
    ended_at: dt.datetime | None = None
    recording_url: str | None = None
    leg: str = "call"  # "call" (the caller's leg) or "forward" (the leg to the destination)
    caller_country: str | None = None
    caller_region: str | None = None
    caller_city: str | None = None
    payload: dict = field(default_factory=dict)
    fraud: dict | None = None  # the pre-ring screening (attribution.fraud.screen), if any


@dataclass(frozen=True)
class Route:
    """Where a tracking number's calls go, and whether to record them."""

    destination: str | None
    record: bool = False
    plan: int | None = None  # a pay-per-call routing plan (routing/): replaces destination


def ingest(db: Session, event: CallEventIn, *, pools: PoolService | None = None,
           match: Match | None = None) -> tuple[Call, bool]:
    """Store one event; returns the call and whether this event was new. ``match``, when
    given, is the new call's attribution, known without matching (a web callback)."""
    seen, known = _known(db, event)
    if seen is not None:
        return db.get(Call, seen), False
    if known is None:
        call = _new_call(db, event, pools, match)
        try:
            # The call is inserted complete (state and qualification applied), with its
            # first event, in one savepoint: no UPDATE of the row just written.
            with db.begin_nested():
                db.add(call)
                db.flush()
                db.add(_event_row(call, event))
                db.flush()
        except IntegrityError:
            # Another worker stored this call (or this very event) a moment ago: use theirs.
            seen, known = _known(db, event)
            if seen is not None:
                return db.get(Call, seen), False
            if known is None:
                raise
        else:
            conversion_outbox.on_qualification(db, call, first=True)
            webhook_events.call_changed(db, call)
            fraud_assess.after_insert(db, call)  # issue 16: holds and fraud.flagged
            db.flush()
            return call, True
    call = db.get(Call, known)
    try:
        with db.begin_nested():
            db.add(_event_row(call, event))
    except IntegrityError:
        return call, False  # the same event, delivered concurrently
    apply_event(call, event)
    requalify(db, call)
    db.flush()
    return call, True


def _known(db: Session, event: CallEventIn) -> tuple[int | None, int | None]:
    """In one query: the call this event was already stored for, and the call with the
    event's provider call id (each unique, so at most one row of each kind)."""
    found = dict(db.execute(_KNOWN, {"provider": event.provider, "event_key": event.event_key,
                                     "call_id": event.provider_call_id}).all())
    return found.get("event"), found.get("call")


# Built once: it runs for every event, and building it cost more CPU than answering it.
_KNOWN = union_all(
    select(literal("event").label("kind"), CallEvent.call_id.label("call_id")).where(
        CallEvent.provider == bindparam("provider"),
        CallEvent.event_key == bindparam("event_key")),
    select(literal("call"), Call.id).where(
        Call.provider == bindparam("provider"), Call.provider_call_id == bindparam("call_id")),
)


def _event_row(call: Call, event: CallEventIn) -> CallEvent:
    return CallEvent(call_id=call.id, provider=event.provider, event_key=event.event_key,
                     kind=event.kind, occurred_at=event.occurred_at, payload=event.payload)


def _new_call(db: Session, event: CallEventIn, pools: PoolService | None,
              known: Match | None = None) -> Call:
    """A call for the event's first sight, matched, with the event applied and qualified;
    not added to the session yet."""
    try:
        to_number = normalize(event.to_raw or "", "US")
    except InvalidNumber:
        to_number = (event.to_raw or "unknown")[:64]
    caller = callers.identify(event.from_raw, country=event.caller_country,
                              region=event.caller_region, city=event.caller_city)
    call = Call(provider=event.provider, provider_call_id=event.provider_call_id,
                from_number=caller.number, from_valid=caller.valid, to_number=to_number,
                started_at=event.occurred_at, status="ringing", status_rank=0,
                caller_country=caller.country,
                caller_region=caller.region, caller_city=caller.city, explanation={})
    match = known or match_call(db, to_number, int(event.occurred_at.timestamp() * 1000),
                                pools, caller=caller)
    owner = attribute(db, call, match)
    fraud_assess.on_new_call(call, event.fraud, match.explanation, event.occurred_at)
    site = db.get(Site, call.site_id) if call.site_id else None  # in the session already
    timezone = site.timezone if site is not None else zone_of(db, call)
    # Read now, while the site is at hand: announcing the call then needs no query.
    call.site_webhooks = site.webhook_subscriptions if site is not None else 0
    call.local_day = local_day(call.started_at, timezone)
    previous_at = _link_previous_calls(db, call)
    apply_event(call, event)
    _qualify(call, owner, timezone, previous_at)
    return call


def attribute(db: Session, call: Call, match: Match) -> StaticNumber | Pool | None:
    """Copy the attribution the match points at onto the call; returns the static number
    or pool whose qualification rules apply to it."""
    call.method, call.confidence = match.method, match.confidence
    call.session_id, call.pool_id = match.session_id, match.pool_id
    call.static_number_id = match.static_number_id
    call.explanation = match.explanation
    if match.session_id:
        visit = db.get(Visit, match.session_id)
        if visit is not None:
            for name in ATTRIBUTION_FIELDS:
                setattr(call, name, getattr(visit, name))
            call.campaign = visit.utm_campaign
            call.site_id = visit.site_id
        else:
            match.explanation.setdefault("steps", []).append(
                "the session's visit is not recorded yet; attribution fields stay empty")
    static = pool = None
    if match.static_number_id:
        static = db.get(StaticNumber, match.static_number_id)
        call.source, call.medium, call.campaign = static.source, static.medium, static.campaign
        call.label, call.publisher, call.site_id = static.label, static.publisher, static.site_id
        call.destination = static.destination
    if match.pool_id:
        # With its site: zone_of then finds the site in the session without a query.
        pool = db.get(Pool, match.pool_id, options=[joinedload(Pool.site)])
        call.site_id = call.site_id or pool.site_id
        call.publisher = pool.publisher
        call.destination = pool.destination
        if match.method == "fallback":
            call.source, call.medium, call.campaign = channel_of(pool)
    return static or pool


def zone_of(db: Session, call: Call) -> str:
    """The time zone a call is reported in: its site's, else its static number's, else UTC."""
    if call.site_id:
        return db.get(Site, call.site_id).timezone
    if call.static_number_id:
        return db.get(StaticNumber, call.static_number_id).timezone
    return "UTC"


def channel_of(pool: Pool) -> tuple[str | None, str | None, str | None]:
    """The channel a pool's rules describe, when they name exactly one."""
    if len(pool.rules or []) != 1:
        return None, None, None
    rule = pool.rules[0]

    def single(name):
        values = rule.get(name) or []
        return values[0] if len(values) == 1 and "*" not in values[0] else None

    return single("source"), single("medium"), single("campaign")


def caller_history(entity, call: Call) -> list:
    """Conditions on ``entity`` (``Call`` or an alias) that select ``call``'s caller's
    earlier calls within the call's tenant: the same site and, for a publisher's number,
    the same publisher.

    First touch, the repeat flag (and so the reports' first-time callers) and the
    ``unique_days`` rule read only these: a caller's calls to another site or another
    publisher never show through, nor cost this publisher a payout.
    """
    site = entity.site_id.is_(None) if call.site_id is None else entity.site_id == call.site_id
    conditions = [entity.from_number == call.from_number,
                  entity.started_at < call.started_at, site]
    if call.publisher is not None:
        conditions.append(entity.publisher == call.publisher)
    if call.id is not None:
        conditions.append(entity.id != call.id)
    return conditions


def same_tenant(call: Call, earlier: Call | None) -> bool:
    """Whether ``earlier`` is inside ``call``'s caller history (see ``caller_history``)."""
    return earlier is not None and earlier.site_id == call.site_id and (
        call.publisher is None or earlier.publisher == call.publisher)


def _link_previous_calls(db: Session, call: Call) -> dt.datetime | None:
    """Mark a repeat caller and keep the first call's attribution as first touch.

    Returns the start of the caller's latest earlier call (for ``unique_days``), read in
    the same query as the first one. Both within the call's tenant only.
    """
    if not call.from_valid:
        return None
    row = db.execute(_previous_calls_query(call), {
        "from_number": call.from_number, "started_at": call.started_at,
        "site_id": call.site_id, "publisher": call.publisher, "id": call.id}).first()
    if row is None:
        return None
    first, previous_at = row
    call.repeat_caller = True
    call.first_call_id = first.id
    call.first_touch = {name: getattr(first, name) for name in FIRST_TOUCH_FIELDS} | {
        "call_id": first.id, "started_at": first.started_at.isoformat()}
    return previous_at


# The query ``_link_previous_calls`` runs for every new call, built once per shape (site
# or none, publisher or none, stored or not) with parameters: building it cost more CPU than
# the database takes to answer it.
_PREVIOUS_CALLS: dict[tuple[bool, bool, bool], Select] = {}


def _previous_calls_query(call: Call) -> Select:
    shape = (call.site_id is None, call.publisher is None, call.id is None)
    query = _PREVIOUS_CALLS.get(shape)
    if query is None:
        # ``caller_history`` itself, over parameters that stand in for the call's values.
        stand_in = SimpleNamespace(
            from_number=bindparam("from_number"), started_at=bindparam("started_at"),
            site_id=None if shape[0] else bindparam("site_id"),
            publisher=None if shape[1] else bindparam("publisher"),
            id=None if shape[2] else bindparam("id"))
        latest = (select(func.max(EARLIER.started_at))
                  .where(*caller_history(EARLIER, stand_in)).scalar_subquery())
        query = _PREVIOUS_CALLS[shape] = (select(Call, latest)
                                          .where(*caller_history(Call, stand_in))
                                          .order_by(Call.started_at).limit(1))
    return query


def shown_first_touches(db: Session, calls: list[Call]) -> dict[int, dict | None]:
    """Each call's first touch as it may be shown: only when its first call is inside the
    call's tenant. Rows stored before the history was scoped may hold another publisher's
    visit (session id included): those are never shown. One query for all the calls."""
    wanted = {c.first_call_id for c in calls if c.first_touch and c.first_call_id}
    firsts = {row.id: row for row in db.execute(
        select(Call.id, Call.site_id, Call.publisher).where(Call.id.in_(wanted)))} \
        if wanted else {}
    return {c.id: c.first_touch if c.first_touch and same_tenant(c, firsts.get(c.first_call_id))
            else None for c in calls}


def apply_event(call: Call, event: CallEventIn) -> None:
    """Apply an event's state if it is newer; terminal states never regress.

    Events of the caller's leg set the call's status; events of the forwarded leg say
    whether the business answered and for how long they talked. The result does not
    depend on the order events arrive in: the answer is the earliest moment any event
    shows it (a forward's end proves an answer but not when, and is bettered by the
    answer's own event however late that arrives), and an answered forward stays the
    dial status whichever leg's end comes last.
    """
    if event.leg == "forward":
        if event.status in ("in-progress", "answered", "completed"):
            _answered(call, event.answered_at or event.occurred_at)
        if event.status in TERMINAL and call.dial_status != "completed":
            call.dial_status = event.status
        if event.duration is not None:
            call.duration, call.talk_time = event.duration, True
    else:
        if event.status in STATUS_RANK:
            rank = STATUS_RANK[event.status] * 100_000 + min(max(event.sequence or 0, 0), 99_999)
            if rank >= (call.status_rank or 0):
                call.status, call.status_rank = event.status, rank
        if event.answered_at:
            _answered(call, event.answered_at)
        if event.duration is not None and not call.talk_time:
            call.duration = max(event.duration, call.duration or 0)
    if event.ended_at and call.status in TERMINAL and not call.ended_at:
        call.ended_at = event.ended_at
    if call.provider == "telnyx" and call.answered_at and call.ended_at:
        # Telnyx sends no duration: talk time runs from answer to hang-up, whatever
        # order those events arrived in.
        call.duration = max(0, int((call.ended_at - call.answered_at).total_seconds()))
    if event.recording_url:
        call.recording_url = event.recording_url


def _answered(call: Call, moment: dt.datetime) -> None:
    """Keep the earliest evidence of the answer: every event that shows one comes at or
    after it."""
    if call.answered_at is None or moment < call.answered_at:
        call.answered_at = moment


def requalify(db: Session, call: Call) -> None:
    """Evaluate the pool's or static number's rules; set revenue and payout when billable."""
    owner = (db.get(StaticNumber, call.static_number_id) if call.static_number_id
             else db.get(Pool, call.pool_id) if call.pool_id else None)
    timezone = zone_of(db, call) if owner is not None else "UTC"
    previous = None
    # Only ``unique_days`` looks at earlier calls: without it, no query for them.
    if owner is not None and call.from_valid and (owner.qualification or {}).get("unique_days"):
        previous = db.scalar(select(Call.started_at).where(*caller_history(Call, call))
                             .order_by(Call.started_at.desc()).limit(1))
    fraud_assess.after_call(db, call, [(owner.qualification or {}).get("min_duration") or 0]
                            if owner is not None else [])
    _qualify(call, owner, timezone, previous)
    # Same session, same transaction: the conversion is queued exactly when this commits.
    conversion_outbox.on_qualification(db, call)
    webhook_events.call_changed(db, call)


def _qualify(call: Call, owner: StaticNumber | Pool | None, timezone: str,
             previous_at: dt.datetime | None) -> None:
    """Set qualification, revenue and payout from the owner's rules (no queries)."""
    if owner is None:
        call.qualified, call.qualification_failures = False, ["unattributed"]
        call.revenue = call.payout = Decimal("0")
        return
    facts = qualification.CallFacts(
        duration=call.duration, started_at=call.started_at, caller_country=call.caller_country,
        caller_region=call.caller_region,
        area_code=callers.area_code(call.from_number, call.from_valid),
        previous_call_at=previous_at, timezone=timezone, disposition=call.disposition,
        insight=call.insight, recording_status=call.recording_status,
        review=call.review_state)
    call.qualified, call.qualification_failures = qualification.evaluate(
        owner.qualification or {}, facts)
    if call.qualified:
        value = call.disposition_value
        call.revenue = value if value is not None else owner.revenue
        call.payout = owner.payout
    else:
        call.revenue = call.payout = Decimal("0")
