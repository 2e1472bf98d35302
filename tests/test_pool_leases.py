"""The pool invariants (docs/architecture.md), against a real Redis running the real scripts."""

from __future__ import annotations

import multiprocessing

import pytest
import redis as redis_lib

from pool_helpers import SITE, holders, lease, load_pool
from pools.errors import (
    LeaseNotHeld,
    MaxLeaseAgeExceeded,
    PoolExhausted,
    PoolNotLoaded,
    RateLimited,
    WrongSite,
)
from pools.leases import Lease, LeaseRequest, PoolService

N1, N2, N3 = "+16505550101", "+16505550102", "+16505550103"
T0 = 1_700_000_000_000


@pytest.fixture
def svc(redis_client):
    return PoolService(redis_client, prefix="t")


def test_a_session_keeps_its_number(svc):
    """Asking again, on any page of the visit, returns the number already held (renewed)."""
    load_pool(svc, 1, [N1, N2, N3])
    first = lease(svc, 1, "s1", T0)
    again = lease(svc, 1, "s1", T0 + 5_000)
    assert first.new and not again.new
    assert again.number == first.number
    assert again.started_at_ms == T0
    assert again.expires_at_ms == T0 + 5_000 + 60_000


def test_two_sessions_never_share_a_number(svc):
    load_pool(svc, 1, [N1, N2, N3])
    got = [lease(svc, 1, f"s{i}", T0).number for i in range(3)]
    assert sorted(got) == sorted([N1, N2, N3])


def test_longest_idle_number_is_leased_first(svc):
    """Reuse is least-recently-used: the number idle longest goes first."""
    load_pool(svc, 1, [N1, N2, N3], idle_since={N1: T0 - 10, N2: T0 - 30, N3: T0 - 20})
    assert lease(svc, 1, "a", T0).number == N2
    assert lease(svc, 1, "b", T0).number == N3
    assert lease(svc, 1, "c", T0).number == N1


def test_released_number_goes_to_the_back_of_the_queue(svc):
    load_pool(svc, 1, [N1, N2, N3])
    a = lease(svc, 1, "a", T0)
    assert svc.release(1, "a", T0 + 1_000)
    # N2 and N3 have been idle since the start; the just-released number waits its turn.
    assert [lease(svc, 1, s, T0 + 2_000).number for s in ("b", "c")] == [N2, N3]
    assert lease(svc, 1, "d", T0 + 3_000).number == a.number


def test_cooldown_keeps_a_fresh_number_out_while_policy_is_fallback(svc):
    """A number released less than the cool-down ago is not reused: fallback instead."""
    load_pool(svc, 1, [N1], cooldown_s=30)
    lease(svc, 1, "a", T0)
    svc.release(1, "a", T0 + 1_000)
    with pytest.raises(PoolExhausted):
        lease(svc, 1, "b", T0 + 20_000)
    assert lease(svc, 1, "b", T0 + 31_000).number == N1


def test_cooldown_yields_to_an_older_idle_number(svc):
    load_pool(svc, 1, [N1, N2], cooldown_s=30, idle_since={N2: T0 - 100_000})
    lease(svc, 1, "a", T0)  # takes N1 (never used)
    svc.release(1, "a", T0 + 1_000)
    assert lease(svc, 1, "b", T0 + 2_000).number == N2


def test_reuse_cooling_policy_leases_a_cooling_number_rather_than_fallback(svc):
    load_pool(svc, 1, [N1], cooldown_s=30, policy="reuse_cooling")
    lease(svc, 1, "a", T0)
    svc.release(1, "a", T0 + 1_000)
    assert lease(svc, 1, "b", T0 + 2_000).number == N1


def test_exhausted_pool_answers_without_double_leasing_and_counts(svc):
    load_pool(svc, 1, [N1, N2])
    lease(svc, 1, "a", T0)
    lease(svc, 1, "b", T0)
    for i in range(3):
        with pytest.raises(PoolExhausted):
            lease(svc, 1, f"x{i}", T0)
    assert set(holders(svc, 1).values()) == {"a", "b"}
    status = svc.status(1, T0)
    assert status["counters"]["exhausted"] == 3
    assert status["counters"]["peak_busy"] == 2


def test_lease_expires_lease_seconds_after_last_renewal(svc):
    load_pool(svc, 1, [N1], lease_s=60)
    lease(svc, 1, "a", T0)
    renewed = svc.renew_many([1], "a", SITE, T0 + 50_000)[0]
    assert isinstance(renewed, Lease) and renewed.expires_at_ms == T0 + 110_000
    # Still held just before the expiry...
    assert isinstance(svc.renew_many([1], "a", SITE, T0 + 109_999)[0], Lease)
    # ...and gone once a full lease period passes with no renewal.
    lapsed = svc.renew_many([1], "a", SITE, T0 + 109_999 + 60_000)[0]
    assert isinstance(lapsed, LeaseNotHeld)
    assert lapsed.target == "+18005550100" and lapsed.fallback == "+18005550100"


def test_heartbeats_without_a_page_keep_the_session_active_and_its_count(svc):
    """A renewal with no page only extends the session's page counter (one command); a
    counter lost meanwhile comes back at 0, as before."""
    from pools import keys as k

    load_pool(svc, 1, [N1], lease_s=60)
    pages = k.session_pages_key(1, "a", svc.prefix)
    lease(svc, 1, "a", T0, url="https://x.example/")
    svc.redis.pexpire(pages, 1000)
    for i in range(1, 4):
        assert isinstance(svc.renew_many([1], "a", SITE, T0 + i * 1000)[0], Lease)
    assert svc.redis.get(pages) == "1" and svc.redis.pttl(pages) > 60_000
    svc.redis.delete(pages)
    assert isinstance(svc.renew_many([1], "a", SITE, T0 + 5000)[0], Lease)
    assert svc.redis.get(pages) == "0" and svc.redis.pttl(pages) > 60_000
    renewed = svc.renew_many([1], "a", SITE, T0 + 6000, "https://x.example/b")[0]
    assert renewed.expires_at_ms == T0 + 66_000 and svc.redis.get(pages) == "1"
    # The event carries whole numbers, written as the recorder reads them.
    [*_, (_, last)] = svc.events.peek(1)
    assert (last["x"], last["pc"], last["u"]) == (str(T0 + 66_000), "1", "https://x.example/b")


def test_reclaim_returns_expired_numbers_idle_since_their_expiry(svc):
    load_pool(svc, 1, [N1, N2], lease_s=60)
    lease(svc, 1, "a", T0)            # N1, expires T0+60s
    lease(svc, 1, "b", T0 + 10_000)   # N2, expires T0+70s
    assert svc.reclaim(1, T0 + 65_000) == 1
    assert holders(svc, 1) == {N2: "b"}
    idle = dict(svc.redis.zrange(svc.keys(1).idle, 0, -1, withscores=True))
    assert idle == {N1: T0 + 60_000}
    # The lapsed session does not get its number back by renewing.
    assert isinstance(svc.renew_many([1], "a", SITE, T0 + 66_000)[0], LeaseNotHeld)


def test_renewing_past_the_maximum_age_ends_the_lease(svc):
    load_pool(svc, 1, [N1], lease_s=60, max_age_s=120)
    lease(svc, 1, "a", T0)
    for t in range(30_000, 120_001, 30_000):
        assert isinstance(svc.renew_many([1], "a", SITE, T0 + t)[0], Lease)
    outcome = svc.renew_many([1], "a", SITE, T0 + 121_000)[0]
    assert isinstance(outcome, MaxLeaseAgeExceeded)
    assert holders(svc, 1) == {}
    # A new page load (an explicit lease) starts a fresh lease.
    fresh = lease(svc, 1, "a", T0 + 122_000)
    assert fresh.new and fresh.started_at_ms == T0 + 122_000


def test_renew_refuses_another_sites_key(svc):
    load_pool(svc, 1, [N1])
    lease(svc, 1, "a", T0)
    assert isinstance(svc.renew_many([1], "a", "site_other", T0)[0], WrongSite)


def test_unloaded_pool_says_so(svc):
    with pytest.raises(PoolNotLoaded):
        lease(svc, 99, "a", T0)
    assert isinstance(svc.renew_many([99], "a", SITE, T0)[0], PoolNotLoaded)


def test_rate_limit_per_ip_and_visitor_applies_to_new_leases_only(svc):
    load_pool(svc, 1, [N1, N2, N3])
    kw = dict(ip="198.51.100.7", rate_limit=2, rate_window_ms=60_000)
    lease(svc, 1, "a", T0, visitor_id="va", **kw)
    lease(svc, 1, "b", T0, visitor_id="vb", **kw)
    with pytest.raises(RateLimited):
        lease(svc, 1, "c", T0, visitor_id="vc", **kw)
    # The sessions already holding numbers keep them.
    assert lease(svc, 1, "a", T0 + 1, visitor_id="va", **kw).number == N1
    # Another IP is unaffected; the window passes.
    assert lease(svc, 1, "d", T0, ip="198.51.100.8", visitor_id="vd", rate_limit=2).number == N3
    assert svc.status(1, T0)["counters"]["rate_limited"] == 1


def test_retiring_a_leased_number_waits_for_the_lease_to_end(svc):
    load_pool(svc, 1, [N1, N2])
    held = lease(svc, 1, "a", T0).number
    result = load_pool(svc, 1, [n for n in (N1, N2) if n != held])
    assert result.removed == [] and result.retiring == 1
    assert holders(svc, 1) == {held: "a"}  # never yanked from a live visitor
    assert lease(svc, 1, "a", T0 + 1_000).number == held
    svc.release(1, "a", T0 + 2_000)
    assert held not in svc.redis.zrange(svc.keys(1).idle, 0, -1)
    assert lease(svc, 1, "b", T0 + 3_000).number != held


def test_retiring_an_idle_number_removes_it_at_once(svc):
    load_pool(svc, 1, [N1, N2])
    result = load_pool(svc, 1, [N2])
    assert result.removed == [N1]
    assert lease(svc, 1, "a", T0).number == N2
    with pytest.raises(PoolExhausted):
        lease(svc, 1, "b", T0)


def command_names(packed) -> list[str]:
    """The names of the commands in what a connection sends: RESP arrays of bulk strings."""
    data = packed if isinstance(packed, bytes) else b"".join(packed)
    names, at = [], 0
    while at < len(data):
        end = data.index(b"\r\n", at)
        count, at = int(data[at + 1:end]), end + 2
        for i in range(count):
            end = data.index(b"\r\n", at)
            length = int(data[at + 1:end])
            if i == 0:
                names.append(data[end + 2:end + 2 + length].decode().upper())
            at = end + 2 + length + 2
    return names


def test_every_operation_is_one_round_trip(svc, monkeypatch):
    """The lease path is one EVALSHA: count what this client sends to Redis.

    Counted where the connection writes, not from the server's statistics, which other tests
    on a shared Redis add to.
    """
    load_pool(svc, 1, [N1, N2])
    lease(svc, 1, "warm", T0)  # loads each script once
    svc.renew_many([1], "warm", SITE, T0)
    sends = []
    real_send = redis_lib.connection.AbstractConnection.send_packed_command

    def counted_send(connection, command, check_health=True):
        sends.append(command_names(command))
        return real_send(connection, command, check_health)

    monkeypatch.setattr(redis_lib.connection.AbstractConnection, "send_packed_command",
                        counted_send)
    lease(svc, 1, "a", T0 + 1)  # a new lease
    lease(svc, 1, "a", T0 + 2)  # the same session asking again: still one script call
    svc.renew_many([1], "a", SITE, T0 + 3)
    assert sends == [["EVALSHA"]] * 3


def test_lease_many_covers_several_pools_in_one_pipeline(svc):
    load_pool(svc, 1, [N1])
    load_pool(svc, 2, [N2])
    out = svc.lease_many([LeaseRequest(1, "a", T0), LeaseRequest(2, "a", T0),
                          LeaseRequest(3, "a", T0)])
    assert [o.number for o in out[:2]] == [N1, N2]
    assert isinstance(out[2], PoolNotLoaded)


# -- concurrency across processes --------------------------------------------------------


def _race(redis_url: str, worker: int, sessions: int, start, results) -> None:
    client = redis_lib.Redis.from_url(redis_url, decode_responses=True)
    svc = PoolService(client, prefix="t")
    start.wait()
    got = []
    for i in range(sessions):
        try:
            got.append((f"w{worker}s{i}", svc.lease(LeaseRequest(1, f"w{worker}s{i}", T0)).number))
        except PoolExhausted:
            got.append((f"w{worker}s{i}", None))
    results.put(got)


def test_many_processes_racing_for_a_small_pool_never_share_a_number(svc, redis_url):
    """Several processes lease at once from a 5-number pool: 5 winners, the rest fallback."""
    pool = [f"+1650555{n:04d}" for n in range(101, 106)]
    load_pool(svc, 1, pool)
    ctx = multiprocessing.get_context("spawn")
    start, results = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_race, args=(redis_url, w, 40, start, results)) for w in range(4)]
    for p in procs:
        p.start()
    start.set()
    outcomes = [item for _ in procs for item in results.get(timeout=60)]
    for p in procs:
        p.join(30)
    winners = [(s, n) for s, n in outcomes if n is not None]
    assert len(outcomes) == 160
    assert len(winners) == 5
    assert sorted(n for _, n in winners) == sorted(pool)
    assert holders(svc, 1) == {n: s for s, n in winners}
    assert svc.status(1, T0)["counters"]["exhausted"] == 155
