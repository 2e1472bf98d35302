"""Outgoing webhook events of web callbacks: requested, completed, failed.

Each is queued through ``attribution.webhooks.events.emit`` in the transaction of the change
it announces, in order per callback (``callback:<id>``). A callback is seen by the site's
subscriptions, and a publisher's only when the callback's pool is that publisher's.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from attribution.callbacks.models import Callback
from attribution.webhooks import events
from pools.models import Pool

ENDED = {"completed": "callback.completed", "failed": "callback.failed",
         "canceled": "callback.failed"}


def iso(moment: dt.datetime | None) -> str | None:
    if moment is None:
        return None
    if moment.tzinfo is None:  # SQLite hands back naive UTC
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def callback_data(callback: Callback) -> dict:
    """The callback as a subscriber sees it (the admin API's fields, without the hashed
    client evidence)."""
    return {"id": callback.id, "status": callback.status, "site_id": callback.site_id,
            "pool_id": callback.pool_id, "session_id": callback.session_id,
            "phone": callback.phone, "name": callback.name, "page_url": callback.page_url,
            "requested_at": iso(callback.requested_at),
            "at": iso(callback.next_attempt_at)
            if callback.status in ("scheduled", "calling") else None,
            "attempts": callback.attempts, "last_outcome": callback.last_outcome,
            "history": [{"at": a.get("at"), "outcome": a.get("outcome")}
                        for a in callback.attempt_log or []],
            "call_id": callback.call_id}


def announce(db: Session, callback: Callback, event_type: str) -> str | None:
    """Queue ``event_type`` about ``callback`` in ``db``'s transaction; its event id, or
    None when no subscription wants it."""
    pool = db.get(Pool, callback.pool_id) if callback.pool_id else None
    return events.emit(db, event_type, site_id=callback.site_id,
                       publisher=pool.publisher if pool else None,
                       data=callback_data(callback), ordering_key=f"callback:{callback.id}")


def announce_end(db: Session, callback: Callback) -> str | None:
    """Announce a callback that just ended (completed, failed or canceled)."""
    event_type = ENDED.get(callback.status)
    return announce(db, callback, event_type) if event_type else None
