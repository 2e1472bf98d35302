"""Copy each pool's event stream into SQL: leases, visits, page views, exhaustion, ad ids.

Runs in the worker (several may run: a Redis consumer group hands each event to one of
them), and, without committing or acknowledging, inside a request that matches a call
(``record_pending``). Every write is idempotent, so an event written twice (by a request
and then the worker, or after a crash between the SQL commit and the acknowledgement)
changes nothing. Rows are written in key order, so two transactions recording overlapping
events take their row locks in the same order and cannot deadlock.
"""

from __future__ import annotations

import datetime as dt
import logging

import orjson
from sqlalchemy import Integer, String, bindparam, func, select, update
from sqlalchemy.orm import Session

from attribution import devices
from attribution.geo import GeoLocator
from attribution.models import PageView, Visit
from attribution.visits import enriched, path_of, stored_url
from attribution.webhooks import events as webhook_events
from attribution.zones import local_day
from pools.catalog import mark_retired
from pools.events import BATCH
from pools.leases import MAX_PAGE_VIEWS, PoolService
from pools.models import Lease, PoolExhaustion, Site
from pools.sqlutil import dialect_insert, greatest, insert_ignoring_duplicates

log = logging.getLogger(__name__)

VISIT_COLUMNS = {c.name for c in Visit.__table__.columns}
# What an ``ad`` event (ad ids or consent learnt after the visit began) may set.
AD_COLUMNS = {"ga_client_id", "ga_session_id", "fbp", "ad_consent"}


# Where visits are located: set once per process from DNI_GEOIP_DB (use_geo, called by the
# app factory); without a database every visit's location is empty.
_geo = GeoLocator(None)


def use_geo(locator: GeoLocator) -> None:
    """Locate the visits this process records with ``locator``."""
    global _geo
    _geo = locator


def enrich(data: dict) -> dict:
    """The visit's device and location, worked out here once instead of on the request path
    (issue 14): the lease event carries the user agent (as parsed) and the normalised IP.
    An event written before that change already has them and is kept as it is."""
    if "device_type" in data:
        return data
    device = devices.describe(data.get("user_agent") or "")
    return enriched(data, device, _geo.locate(data.get("ip")))


def _visit_row(payload: str) -> dict | None:
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError:
        log.error("unreadable visit payload skipped")
        return None
    if not isinstance(data, dict):
        log.error("unreadable visit payload skipped")
        return None
    data = enrich(data)
    created = data.pop("created_at_ms", None)
    row = {k: v for k, v in data.items() if k in VISIT_COLUMNS}
    if created is not None:
        row["created_at"] = dt.datetime.fromtimestamp(created / 1000, dt.UTC)
    return row


def _ad_columns(payload: str) -> dict:
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError:
        log.error("unreadable ad ids payload skipped")
        return {}
    return {k: v for k, v in data.items() if k in AD_COLUMNS} if isinstance(data, dict) else {}


class Batch:
    """Events of one pool folded into the rows they imply."""

    def __init__(self, pool_id: int):
        self.pool_id = pool_id
        self.leases: dict[tuple, dict] = {}
        self.visits: dict[str, dict] = {}
        self.page_views: dict[tuple, dict] = {}
        self.exhaustions: list[dict] = []
        self.retired: list[str] = []
        self.ad_ids: dict[str, dict] = {}  # session -> columns, later events winning
        self.page_counts: dict[str, int] = {}  # session -> page views seen so far

    def add(self, event: dict) -> None:
        kind = event.get("t")
        at = int(event.get("at", 0))
        if kind in ("lease", "renew", "end"):
            start = int(event["st"])
            key = (event["n"], start, event["s"])
            row = self.leases.setdefault(key, {
                "pool_id": self.pool_id, "number": event["n"], "session_id": event["s"],
                "started_at_ms": start, "last_renewed_at_ms": start, "expires_at_ms": at,
                "ended_at_ms": None, "end_reason": None,
            })
            if kind == "end":
                row["ended_at_ms"], row["end_reason"] = at, event.get("r")
                row["expires_at_ms"] = max(row["expires_at_ms"], at)
            else:
                row["last_renewed_at_ms"] = max(row["last_renewed_at_ms"], at)
                row["expires_at_ms"] = max(row["expires_at_ms"], int(event["x"]))
        if kind in ("lease", "exhausted") and event.get("p"):
            visit = _visit_row(event["p"])
            if visit:
                if kind == "exhausted":
                    visit["fallback_reason"] = "pool_exhausted"
                self.visits.setdefault(visit["session_id"], visit)
        if kind == "exhausted":
            self.exhaustions.append(
                {"pool_id": self.pool_id, "session_id": event["s"], "at_ms": at})
        if kind in ("lease", "renew") and (url := stored_url(event.get("u"))):
            self.page_views.setdefault((event["s"], at, url), {
                "session_id": event["s"], "url": url, "path": path_of(url), "viewed_at_ms": at})
        if kind in ("lease", "renew") and event.get("pc"):
            seen = self.page_counts.get(event["s"], 0)
            self.page_counts[event["s"]] = max(seen, int(event["pc"]))
        if kind == "retired":
            self.retired.append(event["n"])
        if kind == "ad":
            self.ad_ids.setdefault(event["s"], {}).update(_ad_columns(event.get("p", "")))

    def write(self, db: Session) -> None:
        if self.visits:
            site_ids = {v["site_id"] for v in self.visits.values() if v.get("site_id")}
            zones = dict(db.execute(select(Site.id, Site.timezone).where(Site.id.in_(site_ids))).all())
            for visit in self.visits.values():
                if visit.get("created_at"):
                    visit["local_day"] = local_day(visit["created_at"], zones.get(visit["site_id"]))
                # A new visit's page count goes in with it: no update for each new session.
                visit["page_view_count"] = self.page_counts.pop(visit["session_id"], None)
        insert_ignoring_duplicates(db, Visit.__table__, _by(self.visits), ["session_id"])
        if self.leases:
            stmt = dialect_insert(db, Lease.__table__)
            new = stmt.excluded
            table = Lease.__table__.c
            stmt = stmt.on_conflict_do_update(
                index_elements=["pool_id", "number", "started_at_ms", "session_id"],
                set_={
                    "last_renewed_at_ms": greatest(db, table.last_renewed_at_ms,
                                                   new.last_renewed_at_ms),
                    "expires_at_ms": greatest(db, table.expires_at_ms, new.expires_at_ms),
                    "ended_at_ms": func.coalesce(table.ended_at_ms, new.ended_at_ms),
                    "end_reason": func.coalesce(table.end_reason, new.end_reason),
                },
            )
            db.execute(stmt, _by(self.leases))
        insert_ignoring_duplicates(db, PageView.__table__, self._page_views_within_cap(db),
                                   ["session_id", "viewed_at_ms", "url"])
        self._write_page_counts(db)
        exhaustions = sorted(self.exhaustions, key=lambda r: (r["session_id"], r["at_ms"]))
        insert_ignoring_duplicates(db, PoolExhaustion.__table__, exhaustions,
                                   ["pool_id", "session_id", "at_ms"])
        webhook_events.pool_exhausted(db, self.pool_id, exhaustions)
        for number in self.retired:
            mark_retired(db, self.pool_id, number)
        # After the visits: an update may follow its visit's lease in one batch. Calls already
        # matched to the session keep what the visit had then: what a call was matched with
        # is what it was matched with, and nobody holding only a session id can rewrite it.
        for session_id, values in sorted(self.ad_ids.items()):
            if values:
                db.execute(update(Visit).where(Visit.session_id == session_id).values(values))

    def _page_views_within_cap(self, db: Session) -> list[dict]:
        """The batch's page views, without any past MAX_PAGE_VIEWS stored for their session.

        The scripts stop sending URLs past the cap; this holds it too for a counter that
        Redis lost (a restart, or a session idle past the counter's life).
        """
        if not self.page_views:
            return []
        sessions = {row["session_id"] for row in self.page_views.values()}
        stored = dict(db.execute(
            select(PageView.session_id, func.count()).where(PageView.session_id.in_(sessions))
            .group_by(PageView.session_id)).all())
        kept = []
        for row in sorted(self.page_views.values(), key=lambda r: r["viewed_at_ms"]):
            if stored.get(row["session_id"], 0) < MAX_PAGE_VIEWS:
                stored[row["session_id"]] = stored.get(row["session_id"], 0) + 1
                kept.append(row)
        return sorted(kept, key=lambda r: (r["session_id"], r["viewed_at_ms"], r["url"]))

    def _write_page_counts(self, db: Session) -> None:
        """Raise each visit's page view count to what the scripts counted (idempotent)."""
        if not self.page_counts:
            return
        table = Visit.__table__
        count = func.coalesce(table.c.page_view_count, 0)
        stmt = (update(table).where(table.c.session_id == bindparam("sid", type_=String))
                .values(page_view_count=greatest(db, count, bindparam("pc", type_=Integer))))
        db.execute(stmt, [{"sid": sid, "pc": pc} for sid, pc in sorted(self.page_counts.items())])


def _by(rows: dict) -> list[dict]:
    """The rows in the order of their keys: the order their row locks are taken in."""
    return [row for _, row in sorted(rows.items())]


def drain_pool(pools: PoolService, db: Session, pool_id: int, consumer: str, *,
               count: int = BATCH) -> int:
    """The worker's step: record up to ``count`` events of one pool; returns how many.

    ``db`` is the worker's own session: the batch is committed here, and the entries are
    acknowledged only after that commit, so a crash in between loses nothing (they stay
    pending and are read again).
    """
    entries = pools.events.take(pool_id, consumer, count)
    if not entries:
        return 0
    _write(db, pool_id, entries)
    db.commit()
    pools.events.ack(pool_id, [eid for eid, _ in entries])
    return len(entries)


def record_pending(pools: PoolService, db: Session, pool_id: int, number: str,
                   count: int = BATCH) -> int:
    """Write the pool's latest events about ``number`` not yet recorded into the caller's
    transaction; never commits.

    For a request matching a call to ``number``: a lease seconds old must be in SQL before
    the lease history is read. Only that number's events are written (its leases carry
    their visits): after an outage the stream holds thousands of events, and each call
    replayed from the inbox must not write them all again. The caller commits (or rolls
    back) with the rest of its work. Nothing is acknowledged: the entries are only peeked
    at, and stay in the stream until a recorder (``drain_pool``) has committed them;
    writing them twice changes nothing. So a request that rolls back, or dies before its
    commit, loses no event, and no acknowledgement waits on the caller's commit. Raises
    Redis errors as they come.
    """
    entries = [e for e in pools.events.peek(pool_id, count) if e[1].get("n") == number]
    if entries:
        _write(db, pool_id, entries)
        db.flush()
    return len(entries)


def _write(db: Session, pool_id: int, entries: list[tuple[str, dict]]) -> None:
    batch = Batch(pool_id)
    for _, fields in entries:
        batch.add(fields)
    batch.write(db)
