"""Redis key builders: the only place a Redis key string is written.

The pool's keys come first; the service's other keys (inbox, caches, rate limits) are at the
end of this module.

Every key of pool 42 carries the hash tag ``{42}`` so that all of them live in one Redis
Cluster slot and each Lua script touches exactly one slot.

===========================  ==========  ===============================================
key                          type        contents
===========================  ==========  ===============================================
``dni:pool:{42}:meta``       hash        site key, target, fallback, lease/max-age/cool-down
                                         in ms, exhaustion policy; absent = not loaded
``dni:pool:{42}:idle``       sorted set  number -> idle since (ms); lease takes the lowest
``dni:pool:{42}:busy``       sorted set  number -> lease expiry (ms); reclaim takes <= now
``dni:pool:{42}:holder``     hash        number -> "session|lease start ms"
``dni:pool:{42}:session``    hash        session -> number it holds (stickiness)
``dni:pool:{42}:retiring``   set         leased numbers to retire when their lease ends
``dni:pool:{42}:stats``      hash        counters: leases, renewals, exhausted, rate_limited,
                                         renewals_limited, released, expired, max_age,
                                         retired, peak_busy, touches, touches_limited
``dni:pool:{42}:events``     stream      lease history for the recorder (consumer group
                                         ``recorders``); copied into SQL, then deleted
``dni:pool:{42}:rate:ip:X``  string      new leases from IP X in the current window
``dni:pool:{42}:rate:vis:X`` string      new leases for visitor id X in the current window
``dni:pool:{42}:rate:net:X`` string      new leases from subnet X (IPv4 /24, IPv6 /48)
``dni:pool:{42}:live:ip:X``  set         sessions from IP X that may still hold a number
``dni:pool:{42}:live:net:X`` set         sessions from subnet X that may still hold a number
``dni:pool:{42}:beats:S``    string      renewals by session S in the current window
``dni:pool:{42}:pages:S``    string      page views of session S seen so far (past the cap
                                         they are counted, not stored); kept while S is
                                         active, S may be resumed only while it exists
``dni:pool:{42}:touches``    hash        number -> its latest touches (taps on a tel: link
                                         showing it, copies of it) by the sessions that
                                         held it, JSON ``[[session, kind, at ms], ...]``
``dni:pool:{42}:taps:S``     string      touches by session S in the current window
``dni:pool:{42}:accuracy``   string      the pool's accuracy over its last week (JSON), as
                                         the worker last modelled it; kept 6 h
``dni:pool:{42}:accuracy:modelling``
                             string      held while one worker models it
===========================  ==========  ===============================================
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_PREFIX = "dni"
RECORDER_GROUP = "recorders"


@dataclass(frozen=True)
class PoolKeys:
    """The keys of one pool, in the order the Lua scripts expect them."""

    meta: str
    idle: str
    busy: str
    holder: str
    session: str
    retiring: str
    stats: str
    events: str

    def state(self) -> list[str]:
        """KEYS[1..8] shared by every pool script."""
        return [self.meta, self.idle, self.busy, self.holder, self.session,
                self.retiring, self.stats, self.events]


def pool_tag(pool_id: int, prefix: str = DEFAULT_PREFIX) -> str:
    return f"{prefix}:pool:{{{int(pool_id)}}}"


def pool_keys(pool_id: int, prefix: str = DEFAULT_PREFIX) -> PoolKeys:
    tag = pool_tag(pool_id, prefix)
    return PoolKeys(
        meta=f"{tag}:meta",
        idle=f"{tag}:idle",
        busy=f"{tag}:busy",
        holder=f"{tag}:holder",
        session=f"{tag}:session",
        retiring=f"{tag}:retiring",
        stats=f"{tag}:stats",
        events=f"{tag}:events",
    )


def rate_ip_key(pool_id: int, ip: str, prefix: str = DEFAULT_PREFIX) -> str:
    return f"{pool_tag(pool_id, prefix)}:rate:ip:{ip}"


def rate_visitor_key(pool_id: int, visitor_id: str, prefix: str = DEFAULT_PREFIX) -> str:
    return f"{pool_tag(pool_id, prefix)}:rate:vis:{visitor_id}"


def rate_subnet_key(pool_id: int, subnet: str, prefix: str = DEFAULT_PREFIX) -> str:
    return f"{pool_tag(pool_id, prefix)}:rate:net:{subnet}"


def live_ip_key(pool_id: int, ip: str, prefix: str = DEFAULT_PREFIX) -> str:
    return f"{pool_tag(pool_id, prefix)}:live:ip:{ip}"


def live_subnet_key(pool_id: int, subnet: str, prefix: str = DEFAULT_PREFIX) -> str:
    return f"{pool_tag(pool_id, prefix)}:live:net:{subnet}"


def session_beats_key(pool_id: int, session_id: str, prefix: str = DEFAULT_PREFIX) -> str:
    """The session's renewals in the current rate window."""
    return f"{pool_tag(pool_id, prefix)}:beats:{session_id}"


def session_pages_key(pool_id: int, session_id: str, prefix: str = DEFAULT_PREFIX) -> str:
    """The session's page views seen so far."""
    return f"{pool_tag(pool_id, prefix)}:pages:{session_id}"


def rebuild_lock_key(pool_id: int, prefix: str = DEFAULT_PREFIX) -> str:
    """Held while one process reloads an emptied pool from SQL."""
    return f"{pool_tag(pool_id, prefix)}:rebuilding"


def accuracy_summary_key(pool_id: int, prefix: str = DEFAULT_PREFIX) -> str:
    """The pool's accuracy over its last week, as the worker last modelled it (JSON)."""
    return f"{pool_tag(pool_id, prefix)}:accuracy"


def accuracy_lock_key(pool_id: int, prefix: str = DEFAULT_PREFIX) -> str:
    """Held while one worker models the pool's accuracy."""
    return f"{pool_tag(pool_id, prefix)}:accuracy:modelling"


def touches_key(pool_id: int, prefix: str = DEFAULT_PREFIX) -> str:
    """The pool's touches, by number (pools.touches)."""
    return f"{pool_tag(pool_id, prefix)}:touches"


def session_touches_key(pool_id: int, session_id: str, prefix: str = DEFAULT_PREFIX) -> str:
    """The session's touches in the current rate window."""
    return f"{pool_tag(pool_id, prefix)}:taps:{session_id}"


# -- the service's other keys -----------------------------------------------------------
# Each is one key used alone (no script or transaction spans two), so none needs a hash tag.


def call_inbox_key(prefix: str = DEFAULT_PREFIX) -> str:
    """Stream: call events waiting for SQL (attribution.inbox)."""
    return f"{prefix}:calls:inbox"


def call_unparsed_key(prefix: str = DEFAULT_PREFIX) -> str:
    """Stream: carrier events that could not be stored, kept as received."""
    return f"{prefix}:calls:unparsed"


def call_acted_key(provider: str, event_key: str, prefix: str = DEFAULT_PREFIX) -> str:
    """String: set once a carrier event has been acted on (a Telnyx transfer sent)."""
    return f"{prefix}:calls:acted:{provider}:{event_key}"


def conversion_rate_key(destination_id: int, minute: int, prefix: str = DEFAULT_PREFIX) -> str:
    """Counter: conversions sent to a destination in one minute."""
    return f"{prefix}:conversions:rate:{destination_id}:{minute}"


def report_rate_key(who: str, prefix: str = DEFAULT_PREFIX) -> str:
    """Counter: reports asked for by one token in the current window."""
    return f"{prefix}:report-rate:{who}"


def auth_failures_key(client: str, prefix: str = DEFAULT_PREFIX) -> str:
    """Counter: wrong tokens sent by one client in the current window."""
    return f"{prefix}:auth-failures:{client}"


def dashboard_login_key(login_id: str, prefix: str = DEFAULT_PREFIX) -> str:
    """String: one dashboard login (JSON)."""
    return f"{prefix}:dashboard-login:{login_id}"


def site_mirror_key(site_key: str, prefix: str = DEFAULT_PREFIX) -> str:
    """String: a site's settings mirrored from SQL, for SQL outages (pools.directory)."""
    return f"{prefix}:site:{site_key}"


def route_mirror_key(prefix: str = DEFAULT_PREFIX) -> str:
    """String: the call forwarding map mirrored from SQL, for SQL outages
    (attribution.forwarding)."""
    return f"{prefix}:routes"


def amp_client_key(site_key: str, client_digest: str, prefix: str = DEFAULT_PREFIX) -> str:
    """String: the session an AMP client id (hashed) holds on a site (attribution.amp)."""
    return f"{prefix}:amp:{site_key}:{client_digest}"


# -- pay-per-call routing (routing/) -----------------------------------------------------
# Every key of buyer 7 carries the hash tag ``{b7}``: its caps, live calls and duplicates
# sit in one Redis Cluster slot, so one script checks and reserves them all.


def buyer_tag(buyer_id: int, prefix: str = DEFAULT_PREFIX) -> str:
    return f"{prefix}:buyer:{{b{int(buyer_id)}}}"


def buyer_live_key(buyer_id: int, prefix: str = DEFAULT_PREFIX) -> str:
    """Sorted set: the buyer's calls ringing or connected -> when the hold lapses (ms)."""
    return f"{buyer_tag(buyer_id, prefix)}:live"


def buyer_target_live_key(buyer_id: int, target: int, prefix: str = DEFAULT_PREFIX) -> str:
    """Sorted set: the calls on one of the buyer's targets (by index) -> hold lapse (ms)."""
    return f"{buyer_tag(buyer_id, prefix)}:live:{int(target)}"


def buyer_count_key(buyer_id: int, period: str, bucket: str,
                    prefix: str = DEFAULT_PREFIX) -> str:
    """Hash: calls, connections, conversions and revenue (cents) in one hour, day or month
    of the buyer's zone (``bucket``: "2026120614", "20261206", "202612"), or in total."""
    return f"{buyer_tag(buyer_id, prefix)}:count:{period}:{bucket}"


def buyer_last_offer_key(buyer_id: int, prefix: str = DEFAULT_PREFIX) -> str:
    """String: when the buyer was last offered a call (ms), for spacing."""
    return f"{buyer_tag(buyer_id, prefix)}:last"


def buyer_duplicate_key(buyer_id: int, caller: str, prefix: str = DEFAULT_PREFIX) -> str:
    """String: set while ``caller`` counts as a duplicate for the buyer."""
    return f"{buyer_tag(buyer_id, prefix)}:dup:{caller}"


def routed_call_key(provider: str, call_id: str, prefix: str = DEFAULT_PREFIX) -> str:
    """String: a routed call's state (JSON, routing.calls): its plan's progress and answers,
    shared by every app server that gets one of its webhooks."""
    return f"{prefix}:routed:{provider}:{call_id}"


def routed_turn_key(provider: str, call_id: str, turn: int,
                    prefix: str = DEFAULT_PREFIX) -> str:
    """String: set by the first delivery of a routed call's turn; a redelivery replays."""
    return f"{routed_call_key(provider, call_id, prefix)}:turn:{int(turn)}"


def routing_mirror_key(prefix: str = DEFAULT_PREFIX) -> str:
    """String: numbers' plans, the plans and their buyers mirrored from SQL, for SQL
    outages (routing.directory)."""
    return f"{prefix}:routing"


# -- fraud signals (attribution/fraud/) ----------------------------------------------------
# A caller's keys carry the hash tag ``{c+14155550100}``: one script reads and records them.


def fraud_caller_calls_key(caller: str, prefix: str = DEFAULT_PREFIX) -> str:
    """Sorted set: the caller's recent calls ("<publisher>|<call id>") -> when (ms)."""
    return f"{prefix}:fraud:{{c{caller}}}:calls"


def fraud_mirror_key(prefix: str = DEFAULT_PREFIX) -> str:
    """String: block list, fraud policies and numbers' owners mirrored from SQL, for SQL
    outages (attribution.fraud.directory)."""
    return f"{prefix}:fraud"
