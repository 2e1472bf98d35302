"""Taking a web callback request: validate the number, check the abuse limits, decide
when it may be called, and store it with its evidence.

Nothing here places a call: the worker does (``calling``), never the request path.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import update
from sqlalchemy.orm import Session

from attribution import visits
from attribution.callbacks import hours
from attribution.callbacks.announce import announce
from attribution.callbacks.limits import CallbackLimits, Verdict
from attribution.callbacks.models import Callback
from pools.directory import SiteConfig
from pools.phones import InvalidNumber, normalize

MAX_AHEAD = dt.timedelta(days=14)  # how far ahead a visitor may ask to be called
CAP_MARGIN = dt.timedelta(days=2)  # a callback stops counting against the site's cap then


class CallbackRefused(Exception):
    """The abuse limits refused the request; ``verdict`` says which."""

    def __init__(self, verdict: Verdict):
        super().__init__(verdict.reason)
        self.verdict = verdict


class NotCallable(ValueError):
    """The request names no number or moment that can be called; ``field`` is the culprit."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class CallbackRequest:
    session_id: str
    session_pools: tuple[int, ...]
    phone: str
    consent_text: str
    page_url: str | None = None
    name: str | None = None
    at: dt.datetime | None = None
    ip: str | None = None
    user_agent: str = ""
    region: str = "US"  # how a number written without + is read


def client_hash(secret: bytes, ip: str | None, user_agent: str) -> str:
    """A keyed hash of the visitor's address and browser: evidence and the abuse limits'
    key, without keeping either raw value."""
    text = f"{visits.client_ip(ip) or '-'}\n{user_agent or ''}"
    return hmac.new(secret, text.encode(), hashlib.sha256).hexdigest()


def new_id() -> str:
    return "cb_" + secrets.token_urlsafe(18)


def request_callback(db: Session, limits: CallbackLimits, secret: bytes, site: SiteConfig,
                     req: CallbackRequest, now: dt.datetime) -> Callback:
    """Store a new callback for ``req`` (added to ``db``, not committed).

    Raises:
        NotCallable: a number that is not valid, a moment in the past or too far ahead,
            or a session with no pool of the site (no business to connect).
        CallbackRefused: past an abuse limit. A client flagged by this request has its
            earlier callbacks marked ``flagged`` (in ``db``, for the caller to commit).
    """
    try:
        phone = normalize(req.phone, req.region)
    except InvalidNumber as exc:
        raise NotCallable("phone", str(exc)) from None
    pool_id = next((pid for pid in sorted(req.session_pools) if site.pool(pid)), None)
    if pool_id is None:
        raise NotCallable("session_id", "this session has no tracking number of the site, "
                                        "so there is no business to connect")
    wanted = now
    if req.at is not None:
        if req.at.tzinfo is None:
            raise NotCallable("at", "must carry a time zone offset (2026-12-06T15:00:00Z)")
        if req.at > now + MAX_AHEAD:
            raise NotCallable("at", f"must be within {MAX_AHEAD.days} days")
        wanted = max(now, req.at.astimezone(dt.UTC))
    slot = hours.calling_slot(phone, wanted, site.timezone)
    callback_id = new_id()
    client = client_hash(secret, req.ip, req.user_agent)
    now_ms = int(now.timestamp() * 1000)
    lapse_ms = int((slot.at + CAP_MARGIN).timestamp() * 1000)
    verdict = limits.admit(site.id, client, phone, callback_id, now_ms, lapse_ms)
    if not verdict.admitted:
        if verdict.reason == "numbers":  # just flagged: mark what the client asked before
            db.execute(update(Callback).where(
                Callback.site_id == site.id, Callback.client_hash == client).values(flagged=True))
        raise CallbackRefused(verdict)
    callback = Callback(
        id=callback_id, site_id=site.id, pool_id=pool_id, session_id=req.session_id,
        phone=phone, name=req.name, consent_text=req.consent_text,
        page_url=visits.stored_url(req.page_url), client_hash=client, requested_at=now,
        wanted_at=wanted, calling_rule=slot.rule, time_zones=list(slot.zones),
        status="scheduled", next_attempt_at=slot.at, attempts=0, attempt_log=[],
        flagged=False)
    db.add(callback)
    announce(db, callback, "callback.requested")
    return callback


def session_callback(db: Session, callback_id: str, session_id: str) -> Callback | None:
    """The callback, only for the session that asked for it."""
    callback = db.get(Callback, callback_id)
    if callback is None or not hmac.compare_digest(callback.session_id, session_id or ""):
        return None
    return callback
