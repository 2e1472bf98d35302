"""The pool service: lease, renew, release, reclaim and sync, one EVALSHA each.

Every function takes ``now_ms`` from the caller so tests can pin the clock. Nothing here
touches SQL; the lease history reaches SQL through each pool's event stream
(``pools.events``, recorded by ``attribution.recorder``). Nothing outside ``pools/`` reads
a pool's keys: what it needs of them is a method here (``holder``, ``counts``, ``events``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import orjson
from redis.cluster import RedisCluster
from redis.exceptions import NoScriptError

from pools import keys as k
from pools import touches as touch_log
from pools.availability import RedisGuard
from pools.direct import DirectScripts
from pools.errors import (
    LeaseNotHeld,
    MaxLeaseAgeExceeded,
    PoolError,
    PoolExhausted,
    PoolNotLoaded,
    RateLimited,
    UnexpectedReply,
    WrongSite,
)
from pools.events import PoolEvents
from pools.scripts import PoolScripts, register_scripts

# Page views stored per session; later ones are only counted (visits.page_view_count), so
# one visitor cannot grow the journey, and the answers that show it, without bound.
MAX_PAGE_VIEWS = 200
# A session holding no live lease may be resumed this long after its last lease or renewal
# (the snippet itself starts a new session after 30 minutes without an answer); after that
# its id names a visit that is over, and a request naming it starts a new session.
RESUME_WINDOW_MS = 30 * 60_000


class SessionIdle(PoolError):
    """A session named by the client that has been idle too long to resume (lease.lua 5)."""


@dataclass(frozen=True)
class Lease:
    """A number held by a session until ``expires_at_ms`` unless renewed."""

    pool_id: int
    number: str
    expires_at_ms: int
    started_at_ms: int
    new: bool
    target: str | None = None
    fallback: str | None = None


@dataclass(frozen=True)
class LeaseRequest:
    """What the lease script needs to lease one pool's number for one session."""

    pool_id: int
    session_id: str
    now_ms: int
    ip: str = "-"
    visitor_id: str = "-"
    rate_limit: int = 0
    rate_window_ms: int = 60_000
    payload: str | bytes = ""  # the visit's JSON (bytes from the request path: sent as is)
    url: str = ""
    subnet: str = "-"
    subnet_rate_limit: int = 0
    ip_share: float = 0.0  # most of the pool one IP may hold at once (0 = no cap)
    subnet_share: float = 0.0
    ad: str = ""  # ad ids / consent JSON learnt since the session began, recorded as an event
    renewal_limit: int = 0  # renewals of a held lease per session per window (0 = no limit)
    renewal_window_ms: int = 60_000
    page_cap: int = MAX_PAGE_VIEWS
    resuming: bool = False  # the client named this session: resumed only if still active
    resume_window_ms: int = RESUME_WINDOW_MS


@dataclass(frozen=True)
class SyncResult:
    was_loaded: bool
    added: int
    restored: int
    removed: list[str]
    retiring: int


class PoolService:
    """Pool operations over one Redis client (plain or cluster)."""

    def __init__(self, redis, prefix: str = k.DEFAULT_PREFIX, guard: RedisGuard | None = None):
        self.redis = redis
        self.prefix = prefix
        self.guard = guard or RedisGuard()
        self.scripts: PoolScripts = register_scripts(redis)
        self.direct = DirectScripts(redis)
        self.events = PoolEvents(redis, prefix)
        self._states: dict[int, list[str]] = {}  # each pool's KEYS[1..8] (_state)
        self.touch_script = touch_log.register(redis)

    def keys(self, pool_id: int) -> k.PoolKeys:
        return k.pool_keys(pool_id, self.prefix)

    def _state(self, pool_id: int) -> list[str]:
        """The pool's KEYS[1..8], built once: the lease and renew paths run per page view.
        Callers copy it (``+``), never change it."""
        state = self._states.get(pool_id)
        if state is None:
            if len(self._states) >= 10_000:  # a bound, never reached by real pools
                self._states.clear()
            state = self._states[pool_id] = self.keys(pool_id).state()
        return state

    # -- lease -------------------------------------------------------------------------

    def _lease_call(self, req: LeaseRequest) -> tuple[list, list]:
        keys = self._state(req.pool_id) + [
            k.rate_ip_key(req.pool_id, req.ip, self.prefix),
            k.rate_visitor_key(req.pool_id, req.visitor_id, self.prefix),
            k.rate_subnet_key(req.pool_id, req.subnet, self.prefix),
            k.live_ip_key(req.pool_id, req.ip, self.prefix),
            k.live_subnet_key(req.pool_id, req.subnet, self.prefix),
            k.session_beats_key(req.pool_id, req.session_id, self.prefix),
            k.session_pages_key(req.pool_id, req.session_id, self.prefix),
        ]
        args = [req.session_id, req.now_ms, req.rate_limit, req.rate_window_ms, req.payload, req.url,
                req.subnet_rate_limit, req.ip_share, req.subnet_share, req.ad,
                req.renewal_limit, req.renewal_window_ms, req.page_cap,
                1 if req.resuming else 0, req.resume_window_ms]
        return keys, args

    def lease(self, req: LeaseRequest) -> Lease:
        """Lease a number from the pool for this session (sticky).

        Returns:
            The Lease, ``new`` False when the session already held it (then renewed).
        Raises:
            PoolExhausted, RateLimited, PoolNotLoaded, or PoolUnavailable (Redis down).
        """
        keys, args = self._lease_call(req)
        reply = self.guard.call(self.direct.run, self.scripts.lease, keys, args)
        return _lease_from_reply(req.pool_id, reply)

    def lease_many(self, reqs: list[LeaseRequest]) -> list[Lease | PoolError]:
        """Lease from several pools in one round trip; each item is a Lease or the PoolError."""
        if len(reqs) == 1:
            try:
                return [self.lease(reqs[0])]
            except PoolError as exc:
                if exc.pool_id is None:
                    raise
                return [exc]
        calls = [self._lease_call(req) for req in reqs]
        replies = self.guard.call(self._pipeline, self.scripts.lease, calls)
        out: list[Lease | PoolError] = []
        for req, reply in zip(reqs, replies, strict=True):
            try:
                out.append(_lease_from_reply(req.pool_id, reply))
            except PoolError as exc:
                out.append(exc)
        return out

    # -- renew -------------------------------------------------------------------------

    def renew_many(self, pool_ids: list[int], session_id: str, site_key: str, now_ms: int,
                   url: str = "", ads: Mapping[int, str] | None = None, *,
                   renewal_limit: int = 0, renewal_window_ms: int = 60_000,
                   page_cap: int = MAX_PAGE_VIEWS,
                   resume_window_ms: int = RESUME_WINDOW_MS) -> list[Lease | PoolError]:
        """Extend the session's lease in each pool; never leases a new number.

        ``ads``: ad ids / consent JSON to record in a pool's event stream, by pool id, only
        if the lease is live. Past ``renewal_limit`` renewals per window the lease is kept
        as it is and nothing is recorded. Each item is a Lease, or LeaseNotHeld /
        MaxLeaseAgeExceeded (carrying the pool's target and fallback), PoolNotLoaded, or
        WrongSite.
        """
        ads = ads or {}
        calls = [(self._state(pid) + [k.session_beats_key(pid, session_id, self.prefix),
                                            k.session_pages_key(pid, session_id, self.prefix)],
                  [session_id, now_ms, site_key, url, ads.get(pid, ""), renewal_limit,
                   renewal_window_ms, page_cap, resume_window_ms])
                 for pid in pool_ids]
        if len(calls) == 1:
            replies = [self.guard.call(self.direct.run, self.scripts.renew, *calls[0])]
        else:
            replies = self.guard.call(self._pipeline, self.scripts.renew, calls)
        return [_renewal_from_reply(pid, reply) for pid, reply in zip(pool_ids, replies, strict=True)]

    # -- touches: tel: link taps and copies (pools/touches.py) -------------------------

    def touch(self, pool_ids: list[int], session_id: str, site_key: str, number: str,
              kind: str, now_ms: int, **limits) -> list:
        """Record that the session's visitor tapped or copied ``number`` (as shown), in each
        pool where the session holds it; see ``pools.touches.touch``."""
        return touch_log.touch(self, pool_ids, session_id, site_key, number, kind, now_ms,
                               **limits)

    def touches(self, pool_id: int, number: str, since_ms: int) -> list[tuple[str, str, int]]:
        """(session id, kind, at ms) of the touches of ``number`` since ``since_ms``, oldest
        first: evidence for matching of which session dialled."""
        return touch_log.touches(self, pool_id, number, since_ms)

    # -- release, reclaim, sync ---------------------------------------------------------

    def release(self, pool_id: int, session_id: str, now_ms: int) -> bool:
        """End the session's lease now; False when it held none."""
        code = self.guard.call(self.scripts.release, keys=self.keys(pool_id).state(),
                               args=[session_id, now_ms])
        if code == -1:
            raise PoolNotLoaded(pool_id)
        return code == 0

    def reclaim(self, pool_id: int, now_ms: int, limit: int = 1000) -> int:
        """End every lease of the pool whose expiry has passed; returns how many."""
        count = self.guard.call(self.scripts.reclaim, keys=self.keys(pool_id).state(),
                                args=[now_ms, limit])
        if count == -1:
            raise PoolNotLoaded(pool_id)
        return int(count)

    def sync(self, pool_id: int, spec: dict) -> SyncResult:
        """Apply a pool spec built by ``pools.catalog.pool_spec`` (see sync.lua)."""
        reply = self.guard.call(self.scripts.sync, keys=self.keys(pool_id).state(),
                                args=[orjson.dumps(spec).decode()])
        if int(reply[0]) == -1:
            raise PoolNotLoaded(pool_id)
        return SyncResult(bool(reply[0]), int(reply[1]), int(reply[2]), list(reply[5:]), int(reply[4]))

    def is_loaded(self, pool_ids: list[int]) -> list[bool]:
        pipe = self.redis.pipeline(transaction=False)
        for pid in pool_ids:
            pipe.exists(self.keys(pid).meta)
        return [bool(x) for x in self.guard.call(pipe.execute)]

    def status(self, pool_id: int, now_ms: int) -> dict:
        """Live counts and counters of one pool, read from Redis."""
        keys = self.keys(pool_id)
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(keys.meta)
        pipe.zcard(keys.idle)
        pipe.zcard(keys.busy)
        pipe.scard(keys.retiring)
        pipe.hgetall(keys.stats)
        pipe.xlen(keys.events)
        meta, idle, busy, retiring, stats, backlog = self.guard.call(pipe.execute)
        cooldown_ms = int(meta.get("cooldown_ms", 0))
        cooling = self.guard.call(self.redis.zcount, keys.idle, f"({now_ms - cooldown_ms}", "+inf")
        return {
            "loaded": bool(meta),
            "idle": idle,
            "cooling": cooling,
            "busy": busy,
            "retiring": retiring,
            "counters": {name: int(value) for name, value in sorted(stats.items())},
            "recorder_backlog": backlog,
        }

    def holder(self, pool_id: int, number: str) -> tuple[str, int] | None:
        """(session, lease start ms) of the live lease of ``number``, or None if idle.

        Raises PoolUnavailable when Redis is down.
        """
        value = self.guard.call(self.redis.hget, self.keys(pool_id).holder, number)
        if not value:
            return None
        session_id, _, start = value.partition("|")
        return session_id, int(start)

    def counts(self, pool_ids: list[int], now_ms: int) -> list[tuple[int, int]]:
        """(numbers leased now, numbers in the pool) of each pool, all in one round trip.

        A lease past its expiry that reclaim has not ended yet counts as free. On Redis
        Cluster the pipeline sends one batch to each primary holding some of the pools.
        """
        pipe = self.redis.pipeline(transaction=False)
        for pid in pool_ids:
            keys = self.keys(pid)
            pipe.zcount(keys.busy, now_ms, "+inf")
            pipe.zcard(keys.busy)
            pipe.zcard(keys.idle)
        replies = self.guard.call(pipe.execute)
        return [(replies[i], replies[i + 1] + replies[i + 2]) for i in range(0, len(replies), 3)]

    def _pipeline(self, script, calls: list[tuple[list, list]]) -> list:
        """Run one script for several pools in one round trip (loading it once if needed).

        On Redis Cluster each pool is a slot of its own, perhaps on another node, and a
        cluster pipeline refuses scripts: there it is one EVALSHA per pool, in turn.
        """
        if isinstance(self.redis, RedisCluster):
            return [script(keys=keys, args=args) for keys, args in calls]
        for attempt in range(2):
            pipe = self.redis.pipeline(transaction=False)
            for keys, args in calls:
                pipe.evalsha(script.sha, len(keys), *keys, *args)
            replies = pipe.execute(raise_on_error=False)
            if not any(isinstance(r, NoScriptError) for r in replies) or attempt:
                for reply in replies:
                    if isinstance(reply, Exception):
                        raise reply
                return replies
            self.redis.script_load(script.script)
        raise AssertionError("unreachable")


def _lease_from_reply(pool_id: int, reply) -> Lease:
    code = int(reply[0])
    if code in (0, 1):
        return Lease(pool_id, reply[1], int(reply[2]), int(reply[3]), new=code == 0)
    raise {2: PoolExhausted, 3: RateLimited, 5: SessionIdle,
           -1: PoolNotLoaded}.get(code, UnexpectedReply)(pool_id)


def _renewal_from_reply(pool_id: int, reply) -> Lease | PoolError:
    code = int(reply[0])
    if code in (-1, -2):
        return (PoolNotLoaded if code == -1 else WrongSite)(pool_id)
    target, fallback = reply[4], reply[5]
    if code == 0:
        return Lease(pool_id, reply[1], int(reply[2]), int(reply[3]), new=False,
                     target=target, fallback=fallback)
    error = {1: LeaseNotHeld, 4: MaxLeaseAgeExceeded}.get(code, UnexpectedReply)
    return error(pool_id, target=target, fallback=fallback)
