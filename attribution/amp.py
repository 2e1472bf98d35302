"""Numbers for AMP pages: ``<amp-call-tracking>`` asks for one number per target.

An AMP page cannot run the snippet, so it has no session id of its own to send back. Its
stable identity is the AMP client id (the ``CLIENT_ID(...)`` substitution). Each client id
maps, in Redis, to the snippet session it last had on the site, and that session is started
or resumed through ``sessions.start_session``: the same pools, rules, rate limits, renewals
and fallbacks as the snippet, with nothing leased here.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import phonenumbers

from attribution import sessions
from pools import keys
from pools.directory import SiteConfig
from pools.errors import PoolUnavailable
from pools.leases import RESUME_WINDOW_MS

# What CLIENT_ID(...) expands to: "amp-" and base64url, or a cookie's value (a GA id
# "123.456"): printable, no spaces, bounded.
CLIENT_ID = re.compile(r"[A-Za-z0-9._~+/=:-]{4,128}")


class UnknownTarget(LookupError):
    """A target number that no active pool of the site swaps."""


@dataclass(frozen=True)
class AmpNumber:
    """The number for one target, as ``amp-call-tracking`` reads it (plus why, if fallback)."""

    number: str
    formatted: str
    fallback: bool
    reason: str | None


def client_digest(client_id: str) -> str:
    """A fixed-length name for a client id in Redis keys (ids come from the page)."""
    return hashlib.sha256(client_id.encode()).hexdigest()[:32]


def visitor_id_for(client_id: str) -> str:
    """The visitor id of an AMP client: the client id itself when it has the snippet's
    shape (so one visitor keeps one id in reports), else a stable digest of it."""
    if sessions.VISITOR_ID.fullmatch(client_id):
        return client_id
    return "amp_" + client_digest(client_id)[:24]


def formatted(number: str) -> str:
    """The number as its own country writes it: +14155550100 -> (415) 555-0100."""
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return number
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL)


def amp_number(ctx: sessions.SessionContext, site: SiteConfig, target: str, client_id: str,
               req: sessions.SessionRequest, now_ms: int) -> AmpNumber:
    """Lease (or keep) the client's number for ``target`` on ``site``.

    ``req`` is the page's visit (url, referrer, user agent, address); its ``session_id``
    and ``visitor_id`` are set here from the client id.

    Raises:
        UnknownTarget: no active pool of the site swaps ``target``.
    """
    if target not in site.targets():
        raise UnknownTarget(target)
    key = keys.amp_client_key(site.key, client_digest(client_id), ctx.pools.prefix)
    redis, guard = ctx.pools.redis, ctx.pools.guard
    try:
        known = guard.call(redis.get, key)
    except PoolUnavailable:
        known = None  # start_session answers the fallback while Redis is away
    if isinstance(known, bytes):
        known = known.decode()
    visit = sessions.SessionRequest(
        url=req.url, referrer=req.referrer, visitor_id=visitor_id_for(client_id),
        session_id=known, user_agent=req.user_agent, ip=req.ip)
    answer = sessions.start_session(ctx, site, visit, now_ms)
    if answer.session_id != known and any(not e.fallback for e in answer.numbers):
        # The client's session from now on, kept as long as a session may be resumed.
        try:
            guard.call(redis.set, key, answer.session_id, px=RESUME_WINDOW_MS)
        except PoolUnavailable:
            pass  # the next request starts another session: a new number, not an error
    elif known is not None:
        try:
            guard.call(redis.pexpire, key, RESUME_WINDOW_MS)
        except PoolUnavailable:
            pass
    entry = next(e for e in answer.numbers if e.target == target)
    return AmpNumber(entry.number, formatted(entry.number), entry.fallback, entry.reason)
