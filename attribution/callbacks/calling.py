"""The worker's step for web callbacks, and what each carrier event does to a callback.

A due callback is claimed (status ``calling``, one more attempt) and its business leg
placed; the carrier's webhooks then report the business's answer, its 1, the visitor's
answer (a person or a machine) and the end. Every attempt ends in ``finish_attempt``:
connected (completed), or retried after ``retry_seconds`` within calling hours until
``max_attempts``, then failed. The visitor's answer creates the call, attributed to the
visit with certainty (method ``callback``, confidence 1.0), through ``calls.ingest`` like
any call: qualification, conversions and reports follow.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from typing import Protocol
from urllib.parse import urlsplit

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from attribution.callbacks import hours
from attribution.callbacks.announce import announce_end
from attribution.callbacks.dialing import BusinessLeg, DialError
from attribution.callbacks.limits import CallbackLimits
from attribution.callbacks.models import Callback
from attribution.callbacks.settings import CallbackSettings
from attribution.calls import CallEventIn, ingest
from attribution.matching import Match
from attribution.models import Call, Visit
from pools.models import Lease, Pool

log = logging.getLogger(__name__)
BATCH = 20
RETRIED = ("no-answer", "busy", "machine", "failed", "canceled", "declined",
           "business_unanswered", "carrier_error", "no_news")


class BusinessRouter(Protocol):
    """Who a callback's business leg rings, and what an attempt's end settles there
    (``routing.callback_offers.RoutedBusiness`` offers it to a routing plan's buyers)."""

    def business(self, db: Session, callback: Callback, pool: Pool | None,
                 now: dt.datetime) -> str | None: ...

    def attempt_ended(self, db: Session, callback: Callback, outcome: str,
                      talk: int | None, now: dt.datetime) -> None: ...


class Destination:
    """The pool's destination (a pool without a routing plan)."""

    def business(self, db, callback, pool, now):
        return pool.destination if pool is not None else None

    def attempt_ended(self, db, callback, outcome, talk, now):
        return None


DESTINATION = Destination()


def claim_due(db: Session, now: dt.datetime, limit: int = BATCH) -> list[Callback]:
    """Claim due callbacks for this worker (a claim no other worker can take), committed."""
    ids = list(db.scalars(select(Callback.id).where(
        Callback.status == "scheduled", Callback.next_attempt_at <= now)
        .order_by(Callback.next_attempt_at).limit(limit)))
    claimed = []
    for callback_id in ids:
        token = secrets.token_hex(8)
        done = db.execute(update(Callback).where(
            Callback.id == callback_id, Callback.status == "scheduled",
            Callback.next_attempt_at <= now).values(
            status="calling", claim=token, attempts=Callback.attempts + 1, updated_at=now))
        if done.rowcount == 1:
            claimed.append(callback_id)
    db.commit()
    return [db.get(Callback, cid) for cid in claimed]


def tracking_number(db: Session, callback: Callback) -> str | None:
    """The number the visit was shown (the caller id the visitor sees), else the pool's
    fallback."""
    number = db.scalar(select(Lease.number).where(
        Lease.session_id == callback.session_id, Lease.pool_id == callback.pool_id)
        .order_by(Lease.started_at_ms.desc()).limit(1))
    if number:
        return number
    pool = db.get(Pool, callback.pool_id) if callback.pool_id else None
    return pool.fallback if pool else None


def prompt(db: Session, callback: Callback) -> str:
    """What the business hears: where the request came from."""
    visit = db.get(Visit, callback.session_id)
    source = (visit and (visit.source or visit.utm_source)) or "the website"
    page = urlsplit(callback.page_url or "").path or "/"
    return (f"Web callback request from {source}, page {page}. "
            "Press 1 to call them now.")


def attempt_times(callback: Callback) -> tuple[dt.datetime, ...]:
    return tuple(dt.datetime.fromisoformat(a["at"]) for a in callback.attempt_log or []
                 if a.get("at"))


def place(db: Session, callback: Callback, dialer, settings: CallbackSettings,
          limits: CallbackLimits, now: dt.datetime,
          router: BusinessRouter = DESTINATION) -> None:
    """Place a claimed callback's business leg, or put it back to its next moment. A pool
    with a routing plan whose buyers cannot take it now ends the attempt as ``no_buyer``
    (retried); a pool with nobody to ring cancels the callback."""
    slot = hours.calling_slot(callback.phone, now, (callback.time_zones or ["UTC"])[0],
                              attempt_times(callback))
    if slot.at > now:  # outside the window now (a retry that crossed the closing time)
        callback.status, callback.next_attempt_at = "scheduled", slot.at
        callback.attempts -= 1
        callback.claim = None
        db.commit()
        return
    pool = db.get(Pool, callback.pool_id) if callback.pool_id else None
    caller_id = tracking_number(db, callback)
    business = router.business(db, callback, pool, now) if pool and caller_id else None
    callback.business_call_id = callback.visitor_call_id = callback.last_outcome = None
    if business is None and pool is not None and pool.routing_plan_id and caller_id:
        finish_attempt(db, callback, "no_buyer", now, settings, limits, router=router)
        db.commit()
        return
    if pool is None or not business or not caller_id:
        callback.status, callback.last_outcome, callback.next_attempt_at = (
            "canceled", "no_business", None)
        limits.release(callback.site_id, callback.id)
        announce_end(db, callback)
        db.commit()
        return
    callback.carrier = dialer.carrier
    try:
        callback.business_call_id = dialer.call_business(BusinessLeg(
            callback.id, business, caller_id, settings.business_timeout))
    except DialError as exc:
        log.warning("callback %s: %s", callback.id, exc)
        finish_attempt(db, callback, "carrier_error", now, settings, limits,
                       final=not exc.retry, router=router)
    db.commit()


def finish_attempt(db: Session, callback: Callback, outcome: str, now: dt.datetime,
                   settings: CallbackSettings, limits: CallbackLimits,
                   *, final: bool = False, talk: int | None = None,
                   router: BusinessRouter = DESTINATION) -> None:
    """End the current attempt: completed when connected, else retried or failed; the
    router settles the attempt's business (``talk``: seconds the visitor was connected)."""
    if callback.status != "calling":
        return  # already ended (a webhook delivered twice)
    router.attempt_ended(db, callback, outcome, talk, now)
    callback.attempt_log = [*(callback.attempt_log or []), {
        "at": now.isoformat(), "outcome": outcome, "business_call": callback.business_call_id,
        "visitor_call": callback.visitor_call_id}]
    callback.last_outcome = outcome
    callback.claim = None
    if outcome == "connected":
        callback.status, callback.next_attempt_at = "completed", None
    elif final or callback.attempts >= settings.max_attempts:
        callback.status, callback.next_attempt_at = "failed", None
    else:
        wanted = now + dt.timedelta(seconds=settings.retry_seconds)
        slot = hours.calling_slot(callback.phone, wanted, (callback.time_zones or ["UTC"])[0],
                                  attempt_times(callback))
        callback.status, callback.next_attempt_at = "scheduled", slot.at
    if callback.status in ("completed", "failed"):
        limits.release(callback.site_id, callback.id)
        announce_end(db, callback)


def reclaim_stale(db: Session, now: dt.datetime, settings: CallbackSettings,
                  limits: CallbackLimits, router: BusinessRouter = DESTINATION) -> int:
    """A callback ``calling`` with no news for ``claim_seconds`` (a lost webhook, a worker
    gone): its attempt ends as ``no_news``."""
    cutoff = now - dt.timedelta(seconds=settings.claim_seconds)
    stale = list(db.scalars(select(Callback).where(
        Callback.status == "calling", Callback.updated_at < cutoff).limit(BATCH)))
    for callback in stale:
        finish_attempt(db, callback, "no_news", now, settings, limits, router=router)
    db.commit()
    return len(stale)


def run_due(session_factory, dialer, settings: CallbackSettings, limits: CallbackLimits,
            now: dt.datetime, router: BusinessRouter = DESTINATION) -> int:
    """One worker pass: end stale attempts, place the due callbacks; returns how many
    were placed (or rescheduled)."""
    with session_factory() as db:
        reclaim_stale(db, now, settings, limits, router)
        due = claim_due(db, now)
        for callback in due:
            try:
                place(db, callback, dialer, settings, limits, now, router)
            except Exception:
                db.rollback()
                log.exception("callback %s could not be placed", callback.id)
        return len(due)


# -- what the carrier's events do --------------------------------------------------------


def callback_match(callback: Callback) -> Match:
    return Match(method="callback", confidence=1.0, session_id=callback.session_id,
                 pool_id=callback.pool_id, explanation={
                     "steps": ["the visit asked to be called back on its page (web callback "
                               f"{callback.id}): attributed with certainty"],
                     "callback_id": callback.id})


def visitor_answered(db: Session, callback: Callback, visitor_call_id: str,
                     now: dt.datetime) -> Call | None:
    """A person answered the visitor's leg and is being connected: the call is created,
    attributed to the visit."""
    if callback.status != "calling":
        return None
    callback.visitor_call_id = visitor_call_id
    event = CallEventIn(
        provider=callback.carrier or "callback", provider_call_id=visitor_call_id,
        event_key=f"callback:{callback.id}:{visitor_call_id}:answered", kind="callback.answered",
        occurred_at=now, from_raw=callback.phone, to_raw=tracking_number(db, callback),
        status="in-progress", answered_at=now, leg="call",
        payload={"callback_id": callback.id})
    call, _ = ingest(db, event, match=callback_match(callback))
    callback.call_id = call.id
    return call


def visitor_ended(db: Session, callback: Callback, outcome: str, now: dt.datetime,
                  settings: CallbackSettings, limits: CallbackLimits,
                  duration: int | None = None, router: BusinessRouter = DESTINATION) -> None:
    """The visitor's leg ended: after a connection, the call completes with its length;
    else the attempt ends with ``outcome`` (no-answer, busy, machine, failed)."""
    if callback.call_id is not None and callback.visitor_call_id:
        event = CallEventIn(
            provider=callback.carrier or "callback", provider_call_id=callback.visitor_call_id,
            event_key=f"callback:{callback.id}:{callback.visitor_call_id}:completed",
            kind="callback.completed", occurred_at=now, from_raw=callback.phone,
            status="completed", duration=duration, ended_at=now, leg="call",
            payload={"callback_id": callback.id})
        call, _ = ingest(db, event)
        outcome = "connected"
        duration = duration if duration is not None else talk_seconds(call, now)
    finish_attempt(db, callback, outcome, now, settings, limits, talk=duration, router=router)


def business_ended(db: Session, callback: Callback, outcome: str, now: dt.datetime,
                   settings: CallbackSettings, limits: CallbackLimits,
                   router: BusinessRouter = DESTINATION) -> None:
    """The business's leg ended before the visitor's was reached (unanswered, declined)."""
    if callback.visitor_call_id is None:
        finish_attempt(db, callback, outcome, now, settings, limits, router=router)


def talk_seconds(call: Call | None, now: dt.datetime) -> int | None:
    """How long the visitor was connected, when the carrier did not say: the stored
    call's duration, else from its answer to ``now``."""
    if call is None:
        return None
    if call.duration is not None:
        return int(call.duration)
    if call.answered_at is None:
        return None
    answered = call.answered_at
    if answered.tzinfo is None:  # SQLite hands back naive UTC
        answered = answered.replace(tzinfo=dt.UTC)
    return max(0, int((now - answered).total_seconds()))
