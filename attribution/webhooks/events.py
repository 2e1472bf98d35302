"""The events a subscription may ask for, and the emit calls that queue them.

Each emit runs in the caller's session and transaction (like the conversions outbox): the
change and its deliveries commit or roll back together, so an event is never announced for
a change that did not happen, nor lost for one that did. With no enabled subscription for
the site (a count kept on the site row), an emit costs no query and writes nothing.

What was already announced about a subject (a call, a pool) is kept in its
``WebhookMark``; its row lock makes concurrent emits for one subject take turns, so their
deliveries get ids (the per-call send order) in the order the changes committed.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Iterable

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from attribution.conversions.rules import TERMINAL_STATUSES, settled
from attribution.webhooks.models import WebhookDelivery, WebhookMark, WebhookSubscription
from pools.models import Pool, Site, utcnow
from pools.sqlutil import insert_ignoring_duplicates

# Every event type, with what it means: the one list to extend (callbacks, fraud...).
EVENT_TYPES: dict[str, str] = {
    "call.started": "a call reached a tracked number",
    "call.completed": "the call ended (answered or not)",
    "call.qualified": "the ended call counts under its pool's or number's rules",
    "call.disqualified": "the ended call does not count (or no longer counts)",
    "call.converted": "a pay-per-call buyer converted the call",
    "pool.exhausted": "a pool had no free number for a visitor (at most one per pool per "
                      "quiet period)",
    "callback.requested": "a visitor asked to be called back (web callback)",
    "callback.completed": "a web callback connected the visitor",
    "callback.failed": "a web callback ended without connecting (attempts ran out, or "
                       "canceled: no business to ring)",
    "fraud.flagged": "the call's fraud risk reached its site's flag: held for review (no "
                     "payout nor conversion until approved)",
}
CALL_EVENTS = tuple(t for t in EVENT_TYPES if t.startswith("call."))
POOL_QUIET = dt.timedelta(minutes=15)  # one pool.exhausted per pool per this long


def new_event_id() -> str:
    return "evt_" + secrets.token_hex(12)


def subscriptions_for(db: Session, site_id: int | None, publisher: str | None,
                      types: Iterable[str], known: int | None = None
                      ) -> list[WebhookSubscription]:
    """Enabled subscriptions of the site that may see a ``publisher``'s data and want any
    of ``types``. A publisher's subscription never sees another publisher's calls.

    The site row counts its enabled subscriptions (``subscriptions.recount``): ``known`` is
    that count when the caller read it already, and none means no query at all."""
    if site_id is None:
        return []
    if known is None:
        site = db.get(Site, site_id)
        known = site.webhook_subscriptions if site is not None else 0
    if not known:
        return []
    wanted = set(types)
    rows = db.scalars(select(WebhookSubscription).where(
        WebhookSubscription.site_id == site_id, WebhookSubscription.enabled,
        or_(WebhookSubscription.publisher.is_(None),
            WebhookSubscription.publisher == publisher))
        .order_by(WebhookSubscription.id))
    return [row for row in rows if wanted & set(row.events or ())]


def queue(db: Session, subscriptions: list[WebhookSubscription], event_type: str, *,
          call_id: int | None = None, ordering_key: str | None = None,
          data: dict | None = None) -> str | None:
    """Queue one event for every subscription that wants it; returns its id (or None)."""
    takers = [s for s in subscriptions if event_type in (s.events or ())]
    if not takers:
        return None
    event_id, now = new_event_id(), utcnow()
    for subscription in takers:
        db.add(WebhookDelivery(
            subscription_id=subscription.id, event_id=event_id, event_type=event_type,
            call_id=call_id, ordering_key=ordering_key, data=data, status="pending",
            attempts=0, next_attempt_at=now, created_at=now))
    return event_id


def mark_for(db: Session, subject: str) -> WebhookMark:
    """The subject's mark, locked for this transaction (created when missing): an insert
    that yields to a concurrent one, then the row read under its lock."""
    db.flush()  # the read below replaces the row's state in the session: nothing unsaved
    insert_ignoring_duplicates(db, WebhookMark.__table__, [
        {"subject": subject, "state": {}, "updated_at": utcnow()}], ["subject"])
    return db.get(WebhookMark, subject, with_for_update=True, populate_existing=True)


# -- the emit calls --------------------------------------------------------------------------


def emit(db: Session, event_type: str, *, site_id: int | None, publisher: str | None,
         data: dict | None = None, call_id: int | None = None,
         ordering_key: str | None = None) -> str | None:
    """Queue one event of any known type (the way in for new kinds: add the type to
    ``EVENT_TYPES``, then call this in the transaction of the change). With a ``call_id``
    the payload's data is that call's API view, sent in order with the call's other
    events; otherwise ``data`` (JSON-ready), in order with events of ``ordering_key``."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown webhook event type {event_type!r}")
    subscriptions = subscriptions_for(db, site_id, publisher, (event_type,))
    if call_id is not None:
        ordering_key = ordering_key or f"call:{call_id}"
    return queue(db, subscriptions, event_type, call_id=call_id, ordering_key=ordering_key,
                 data=None if call_id is not None else data)


def call_changed(db: Session, call) -> None:
    """Announce what is new about ``call``: started, completed, and (once it is over) its
    qualification whenever that differs from the last one announced."""
    subscriptions = subscriptions_for(db, call.site_id, call.publisher, CALL_EVENTS,
                                      getattr(call, "site_webhooks", None))
    if not subscriptions:
        return
    if call.id is None:
        db.flush()
    mark = mark_for(db, f"call:{call.id}")
    state = dict(mark.state or {})
    due = []
    if not state.get("started"):
        due.append("call.started")
        state["started"] = True
    if call.status in TERMINAL_STATUSES and not state.get("completed"):
        due.append("call.completed")
        state["completed"] = True
    if settled(call) and state.get("qualified") is not bool(call.qualified):
        due.append("call.qualified" if call.qualified else "call.disqualified")
        state["qualified"] = bool(call.qualified)
    if not due:
        return
    mark.state = state
    for event_type in due:
        queue(db, subscriptions, event_type, call_id=call.id, ordering_key=f"call:{call.id}")


def call_converted(db: Session, call, converted: bool) -> None:
    """Announce a buyer's conversion of ``call`` (once per call)."""
    if not converted:
        return
    subscriptions = subscriptions_for(db, call.site_id, call.publisher, ("call.converted",))
    if not subscriptions:
        return
    if call.id is None:
        db.flush()
    mark = mark_for(db, f"call:{call.id}")
    if (mark.state or {}).get("converted"):
        return
    mark.state = {**(mark.state or {}), "converted": True}
    queue(db, subscriptions, "call.converted", call_id=call.id, ordering_key=f"call:{call.id}")


def pool_exhausted(db: Session, pool_id: int, exhaustions: list[dict]) -> None:
    """Announce that a pool ran out of numbers (``exhaustions``: the recorder's rows, with
    ``at_ms``), at most once per pool per ``POOL_QUIET``."""
    if not exhaustions:
        return
    pool = db.get(Pool, pool_id)
    if pool is None:
        return
    subscriptions = subscriptions_for(db, pool.site_id, pool.publisher, ("pool.exhausted",))
    if not subscriptions:
        return
    at_ms = max(int(row["at_ms"]) for row in exhaustions)
    mark = mark_for(db, f"pool:{pool_id}")
    last = (mark.state or {}).get("exhausted_at_ms")
    if last is not None and at_ms - int(last) < POOL_QUIET.total_seconds() * 1000:
        return
    mark.state = {**(mark.state or {}), "exhausted_at_ms": at_ms}
    at = dt.datetime.fromtimestamp(at_ms / 1000, dt.UTC)
    queue(db, subscriptions, "pool.exhausted", ordering_key=f"pool:{pool_id}", data={
        "pool": {"id": pool.id, "name": pool.name, "site": pool.site_id,
                 "publisher": pool.publisher, "fallback": pool.fallback},
        "exhausted_at": at.isoformat(timespec="milliseconds"),
        "visitors_refused": len({row.get("session_id") for row in exhaustions})})
