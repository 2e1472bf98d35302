"""The snippet's sessions: start or resume one, and keep its numbers alive.

Starting a session is a pipeline of named steps, each of which may stop with a reason
the snippet API reports beside a fallback number: ``detect_bot`` (bot), ``rules.choose``
(no_pool), ``lease`` (pool_exhausted, rate_limited, unavailable). Nothing here writes
SQL: the lease script records the visit in the pool's event stream, and the recorder
copies it into SQL off the request path. Ad ids and consent that arrive later (a renewal,
the next page) go into the same stream as an ``ad`` event, only while the session holds a
live lease.
"""

from __future__ import annotations

import dataclasses
import hmac
import ipaddress
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from attribution import devices, visits
from attribution.models import PageView, Visit
from pools import rules
from pools.directory import SiteConfig, SiteDirectory
from pools.errors import PoolError, PoolNotLoaded, PoolUnavailable, WrongSite
from pools.leases import Lease, LeaseRequest, PoolService, SessionIdle

VISITOR_ID = re.compile(r"[A-Za-z0-9._-]{8,64}")


class UnknownSession(LookupError):
    """A session id that this service did not issue for this site."""


@dataclass(frozen=True)
class SessionRequest:
    url: str | None
    referrer: str | None = None
    visitor_id: str | None = None
    session_id: str | None = None
    ga_client_id: str | None = None
    user_agent: str = ""
    ip: str | None = None
    # Raw, as the snippet read them (cookie values); visits.AdIds keeps what has the shape.
    ga_session_id: str | None = None
    fbp: str | None = None
    consent: bool | None = None  # the visitor's ad consent; None: the site does not ask


@dataclass(frozen=True)
class NumberEntry:
    target: str
    number: str
    expires_at_ms: int | None = None
    fallback: bool = False
    reason: str | None = None


@dataclass
class SessionAnswer:
    session_id: str
    visitor_id: str
    numbers: list[NumberEntry] = field(default_factory=list)
    renew_in: int = 0


class SessionIds:
    """Session ids that name the session's pools and are signed, so they can't be forged.

    ``<24 hex>.<pool ids joined by ->.<16 hex signature>``: a heartbeat knows which pools
    to renew without any lookup, and a made-up id is refused instead of renewed.
    """

    PATTERN = re.compile(r"([0-9a-f]{24})\.((?:\d{1,12}(?:-\d{1,12}){0,15})?)\.([0-9a-f]{16})")

    # Genuine ids already checked, with their pools: a session's id comes back with each
    # of its heartbeats and page loads, and checking costs an HMAC. Only ids that passed are
    # kept, and the whole memo is dropped when full (a few MB at most).
    VERIFIED_KEPT = 32_768

    def __init__(self, secret: bytes):
        self.secret = secret
        self._verified: dict[str, tuple[int, ...]] = {}

    def _sign(self, body: str) -> str:
        # hmac.digest: one call into OpenSSL (every heartbeat checks a signature).
        return hmac.digest(self.secret, body.encode(), "sha256").hex()[:16]

    def new(self, pool_ids) -> str:
        body = f"{secrets.token_hex(12)}.{'-'.join(str(p) for p in pool_ids)}"
        return f"{body}.{self._sign(body)}"

    def pools(self, session_id: str | None) -> list[int] | None:
        """The pool ids named by a genuine session id, or None for anything else."""
        known = self._verified.get(session_id)
        if known is not None:
            return list(known)
        match = self.PATTERN.fullmatch(session_id or "")
        if not match:
            return None
        body = f"{match.group(1)}.{match.group(2)}"
        if not hmac.compare_digest(self._sign(body), match.group(3)):
            return None
        pool_ids = [int(p) for p in match.group(2).split("-")] if match.group(2) else []
        if len(self._verified) >= self.VERIFIED_KEPT:
            self._verified.clear()
        self._verified[session_id] = tuple(pool_ids)
        return pool_ids


@dataclass
class SessionContext:
    """What the session steps need; built once per app."""

    pools: PoolService
    sites: SiteDirectory
    ids: SessionIds
    load_pool: Callable[[int, int], bool]
    rate_limit: int = 30
    rate_window_ms: int = 60_000
    ip_share: float = 0.2  # of a pool's numbers, held at once by one IP (0 = no cap)
    subnet_share: float = 0.4  # ... by one IPv4 /24 or IPv6 /48
    # Renewals (heartbeats, page loads) of one session's lease per window: past it the
    # session keeps its number but nothing new is recorded. Off with rate_limit 0.
    renewal_limit: int = 30
    renewal_window_ms: int = 60_000

    def renewal_limits(self) -> dict:
        """The per-session renewal limit as the pool scripts take it."""
        limit = self.renewal_limit if self.rate_limit > 0 else 0
        return {"renewal_limit": limit, "renewal_window_ms": self.renewal_window_ms}


# -- steps -------------------------------------------------------------------------------


def detect_bot(user_agent: str) -> devices.Device:
    return devices.describe(user_agent or "")


def rate_key_ip(ip: str | None) -> str:
    """IPv6 visitors are limited per /64: one host can rotate through a whole /64. An
    IPv4-mapped address (a dual-stack bind) is its IPv4 address."""
    return client_keys(visits.client_ip(ip))[0]


# A subnet (many hosts, one operator) may start this many times the new leases of one IP.
SUBNET_RATE_FACTOR = 4


def rate_key_subnet(ip: str | None) -> str:
    """The IPv4 /24 or IPv6 /48 around ``ip``: a bot rotating addresses stays inside one."""
    return client_keys(visits.client_ip(ip))[1]


def _prefix(address: ipaddress.IPv4Address | ipaddress.IPv6Address, bits: int) -> str:
    """The network address of ``address``'s /``bits`` (masking is cheaper than ip_network)."""
    size = address.max_prefixlen
    mask = ((1 << bits) - 1) << (size - bits)
    return str(type(address)(int(address) & mask))


def client_keys(normal: str | None) -> tuple[str, str]:
    """The rate keys (IP, subnet) of an address already normalised by visits.client_ip,
    parsed once; ``("-", "-")`` without one."""
    if normal is None:
        return "-", "-"
    if visits.PLAIN_IPV4.fullmatch(normal):
        return normal, normal[:normal.rindex(".")] + ".0"
    address = ipaddress.ip_address(normal)
    if address.version == 6:
        return _prefix(address, 64), _prefix(address, 48)
    return normal, _prefix(address, 24)


def fallback_entries(targets: dict[str, str], reason: str, skip=()) -> list[NumberEntry]:
    return [NumberEntry(t, fb, None, True, reason) for t, fb in targets.items() if t not in skip]


def entry_for(outcome: Lease | PoolError, target: str, fallback: str) -> NumberEntry:
    if isinstance(outcome, Lease):
        return NumberEntry(target, outcome.number, outcome.expires_at_ms)
    return NumberEntry(target, fallback, None, True, outcome.reason)


# When to ask again after Redis failed to answer (``unavailable``): a retry hint, short
# enough that a visitor who met a transient stall gets a number (or keeps theirs) a few
# seconds later, long enough that an outage is not met by a storm of retries.
UNAVAILABLE_RETRY_SECONDS = 5


def renew_in_seconds(entries: list[NumberEntry], now_ms: int) -> int:
    """Renew at a third of the shortest remaining lease: two chances before it lapses.

    0 when nothing is leased and nothing will change by asking again; an ``unavailable``
    entry asks again after UNAVAILABLE_RETRY_SECONDS (Redis may be back by then).
    """
    remaining = [e.expires_at_ms - now_ms for e in entries if e.expires_at_ms]
    renew = max(5, min(300, min(remaining) // 3000)) if remaining else 0
    if any(e.reason == "unavailable" for e in entries):
        return min(renew or UNAVAILABLE_RETRY_SECONDS, UNAVAILABLE_RETRY_SECONDS)
    return renew


def with_reload(ctx: SessionContext, now_ms: int, pool_ids: list[int],
                call: Callable[[list[int]], list]) -> list:
    """Run ``call`` for the pools; any pool Redis has lost is loaded from SQL and retried."""
    outcomes = call(pool_ids)
    lost = [pid for pid, out in zip(pool_ids, outcomes, strict=True)
            if isinstance(out, PoolNotLoaded)]
    if not lost:
        return outcomes
    for pid in lost:
        try:
            ctx.load_pool(pid, now_ms)
        except PoolError:
            pass  # another process is loading it, or Redis went away again
    retried = dict(zip(lost, call(lost), strict=True))
    return [retried.get(pid, out) for pid, out in zip(pool_ids, outcomes, strict=True)]


# -- the two entry points ----------------------------------------------------------------


def start_session(ctx: SessionContext, site: SiteConfig, req: SessionRequest,
                  now_ms: int) -> SessionAnswer:
    """Start a session (or resume the one named) and lease a number for each target."""
    visitor_id = req.visitor_id if req.visitor_id and VISITOR_ID.fullmatch(req.visitor_id) \
        else "v_" + secrets.token_urlsafe(12)
    targets = site.targets()

    device = detect_bot(req.user_agent)
    if device.is_bot:
        return SessionAnswer(ctx.ids.new([]), visitor_id, fallback_entries(targets, "bot"))

    resumed = ctx.ids.pools(req.session_id)
    chosen = None
    if resumed is not None:
        chosen = {p.target: p for pid in resumed if (p := site.pool(pid)) is not None}
        session_id, payload = req.session_id, b""
    new = not chosen
    if new:
        visit = visits.capture(req.url, req.referrer, site.keyword_params)
        chosen = rules.choose(site.pools, visit.facts())
        session_id = ctx.ids.new(sorted(p.id for p in chosen.values()))

    entries = fallback_entries(targets, "no_pool", skip=chosen)
    picked = list(chosen.values())
    if picked:
        ip = visits.client_ip(req.ip)
        ip_key, subnet = client_keys(ip)
        if new:
            payload = _visit_payload(site, visit, req, session_id, visitor_id, ip, now_ms)
        url = (visit.landing_url if new else visits.stored_url(req.url)) or ""
        # Without a client address (a misconfigured proxy) every visitor would share one
        # key: only the per-IP rate applies then, not the subnet rate or the pool shares.
        # DNI_SESSION_RATE=0 turns every per-client limit off (load tests from one host).
        known = ip_key != "-" and ctx.rate_limit > 0
        subnet_rate = ctx.rate_limit * SUBNET_RATE_FACTOR if known else 0
        ip_share, subnet_share = (ctx.ip_share, ctx.subnet_share) if known else (0.0, 0.0)
        renewal = ctx.renewal_limits()

        # A resumed session may bring ad ids learnt since it began (the visit has its first).
        ads = {} if new else ad_events([p.id for p in picked], _ad_ids(req))

        def lease(pool_ids: list[int]) -> list:
            return ctx.pools.lease_many([
                LeaseRequest(pid, session_id, now_ms, ip_key, visitor_id, ctx.rate_limit,
                             ctx.rate_window_ms, payload, url, subnet=subnet,
                             subnet_rate_limit=subnet_rate, ip_share=ip_share,
                             subnet_share=subnet_share, ad=ads.get(pid, ""), **renewal,
                             resuming=not new)
                for pid in pool_ids])

        try:
            outcomes = with_reload(ctx, now_ms, [p.id for p in picked], lease)
        except PoolUnavailable:
            outcomes = [PoolUnavailable(p.id) for p in picked]
        if any(isinstance(out, SessionIdle) for out in outcomes):
            # Idle too long to resume: a new session (and visit) for the same visitor.
            return start_session(ctx, site, dataclasses.replace(req, session_id=None), now_ms)
        entries += [entry_for(out, p.target, p.fallback)
                    for p, out in zip(picked, outcomes, strict=True)]
    entries.sort(key=lambda e: e.target)
    return SessionAnswer(session_id, visitor_id, entries, renew_in_seconds(entries, now_ms))


def heartbeat(ctx: SessionContext, site_key: str, session_id: str, now_ms: int,
              url: str | None = None, ad: visits.AdIds | None = None) -> SessionAnswer:
    """Renew the session's numbers; a lapsed one comes back as a fallback (``expired``).

    Raises:
        UnknownSession: the id was not issued by us, or names another site's pools.
    """
    pool_ids = ctx.ids.pools(session_id)
    if pool_ids is None:
        raise UnknownSession(session_id)
    if not pool_ids:
        site = ctx.sites.get(site_key)
        if site is None:
            raise UnknownSession(session_id)
        return SessionAnswer(session_id, "", fallback_entries(site.targets(), "no_pool"))

    page = visits.stored_url(url) or ""
    try:
        ads = ad_events(pool_ids, ad)
        outcomes = with_reload(ctx, now_ms, pool_ids, lambda ids: ctx.pools.renew_many(
            ids, session_id, site_key, now_ms, page, ads, **ctx.renewal_limits()))
        if any(isinstance(out, PoolNotLoaded) for out in outcomes):
            # Another process is still rebuilding the pool: answer as if Redis were away,
            # never with an empty list of numbers.
            raise PoolUnavailable()
    except PoolUnavailable:
        site = ctx.sites.get(site_key)
        if site is None:
            raise UnknownSession(session_id) from None
        targets = {p.target: p.fallback for pid in pool_ids if (p := site.pool(pid))}
        entries = fallback_entries(targets, "unavailable")
        # A retry hint, not 0: the lease is most likely still there, and the snippet keeps
        # showing its number while the lease has time left and asks again after renew_in.
        return SessionAnswer(session_id, "", entries, renew_in_seconds(entries, now_ms))
    if any(isinstance(out, WrongSite) for out in outcomes):
        raise UnknownSession(session_id)
    # Renewal outcomes, leases and refusals alike, carry their pool's target and fallback.
    entries = [entry_for(out, out.target, out.fallback) for out in outcomes if out.target]
    entries.sort(key=lambda e: e.target)
    return SessionAnswer(session_id, "", entries, renew_in_seconds(entries, now_ms))


def _visit_payload(site: SiteConfig, visit: visits.Visit, req: SessionRequest,
                   session_id: str, visitor_id: str, ip: str | None, now_ms: int) -> bytes:
    """The visit as the lease event carries it: the raw facts (the user agent as parsed,
    the normalised IP) beside what the rules read. The recorder adds the device and the
    location (recorder.enrich): neither is needed for the visitor's answer."""
    row = visit.columns()
    row.update(session_id=session_id, visitor_id=visitor_id, site_id=site.id,
               created_at_ms=now_ms, ip=ip,
               user_agent=(req.user_agent or "")[: devices.MAX_UA_LENGTH] or None,
               # When the click id was first seen: Meta's fbc is built from it.
               click_id_at_ms=now_ms if visit.click_ids else None)
    row.update(_ad_ids(req).columns())
    return orjson.dumps(row)  # bytes, as Redis takes them: no decoding and encoding again


def _ad_ids(req: SessionRequest) -> visits.AdIds:
    return visits.AdIds.parse(req.consent, req.ga_client_id, req.ga_session_id, req.fbp)


def ad_events(pool_ids: list[int], ad: visits.AdIds | None) -> dict[int, str]:
    """Ad ids or consent learnt after the session began, as the event to record, by pool.

    The lease or renew script writes it to the pool's event stream in the same round trip,
    only if the session holds a live lease, and the recorder sets it on the visit (a call
    already matched keeps what the visit had then). One pool only (the session's lowest
    id, whichever request brings it), so that two updates are recorded in the order they
    came.
    """
    if not ad or not pool_ids:
        return {}
    return {min(pool_ids): orjson.dumps(ad.columns()).decode()}


# -- the journey, read back from SQL ------------------------------------------------------


@dataclass(frozen=True)
class Journey:
    """One page of a session's page views, oldest first."""

    views: list[PageView]
    stored: int  # page views stored for the session (at most pools.leases.MAX_PAGE_VIEWS)
    seen: int  # page views seen, stored or only counted
    offset: int
    limit: int

    @property
    def next_offset(self) -> int | None:
        end = self.offset + len(self.views)
        return end if end < self.stored else None


def journey(db: Session, session_id: str, offset: int = 0, limit: int = 200) -> Journey:
    """The session's page views from ``offset``, at most ``limit`` of them."""
    stored = db.scalar(select(func.count()).select_from(PageView)
                       .where(PageView.session_id == session_id)) or 0
    counted = db.scalar(select(Visit.page_view_count).where(Visit.session_id == session_id))
    views = db.scalars(select(PageView).where(PageView.session_id == session_id)
                       .order_by(PageView.viewed_at_ms, PageView.id)
                       .offset(offset).limit(limit)).all()
    return Journey(list(views), stored, max(stored, counted or 0), offset, limit)
