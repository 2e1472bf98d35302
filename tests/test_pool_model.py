"""Random sequences of lease/renew/release/expire against a plain Python model of a pool."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from pool_helpers import SITE, holders, lease, load_pool
from pools.errors import LeaseNotHeld, MaxLeaseAgeExceeded, PoolExhausted
from pools.leases import Lease, PoolService

NUMBERS = ["+16505550101", "+16505550102", "+16505550103"]
SESSIONS = ["s1", "s2", "s3", "s4", "s5"]
LEASE_MS, MAX_AGE_MS, COOLDOWN_MS = 10_000, 35_000, 4_000


class PoolModel:
    """What a pool should do, written as plainly as possible."""

    def __init__(self, policy: str):
        self.policy = policy
        self.idle = {n: 0 for n in NUMBERS}          # number -> idle since
        self.busy: dict[str, list] = {}               # number -> [session, start, expiry]
        self.by_session: dict[str, str] = {}

    def _end(self, number: str, at: int) -> None:
        session, _, _ = self.busy.pop(number)
        self.by_session.pop(session, None)
        self.idle[number] = at

    def reclaim(self, now: int) -> None:
        for number, (_, _, expiry) in list(self.busy.items()):
            if expiry <= now:
                self._end(number, expiry)

    def lease(self, session: str, now: int):
        self.reclaim(now)
        if session in self.by_session:
            number = self.by_session[session]
            if now - self.busy[number][1] <= MAX_AGE_MS:
                self.busy[number][2] = now + LEASE_MS
                return ("held", number)
            self._end(number, now)
        if not self.idle:
            return ("exhausted",)
        number = min(self.idle, key=lambda n: (self.idle[n], n))
        if self.policy == "fallback" and now - self.idle[number] < COOLDOWN_MS:
            return ("exhausted",)
        del self.idle[number]
        self.busy[number] = [session, now, now + LEASE_MS]
        self.by_session[session] = number
        return ("new", number)

    def renew(self, session: str, now: int):
        if session not in self.by_session:
            return ("not_held",)
        number = self.by_session[session]
        _, start, expiry = self.busy[number]
        if expiry <= now:
            self._end(number, expiry)
            return ("not_held",)
        if now - start > MAX_AGE_MS:
            self._end(number, now)
            return ("max_age",)
        self.busy[number][2] = now + LEASE_MS
        return ("renewed", number)

    def release(self, session: str, now: int) -> bool:
        if session not in self.by_session:
            return False
        self._end(self.by_session[session], now)
        return True


def machine_for(svc: PoolService, policy: str):
    class PoolMachine(RuleBasedStateMachine):
        def __init__(self):
            super().__init__()
            svc.redis.flushdb()
            load_pool(svc, 1, NUMBERS, lease_s=LEASE_MS // 1000, max_age_s=MAX_AGE_MS // 1000,
                      cooldown_s=COOLDOWN_MS // 1000, policy=policy)
            self.model = PoolModel(policy)
            self.now = 1_000_000

        @rule(dt=st.integers(0, 12_000))
        def advance(self, dt):
            self.now += dt

        @rule(session=st.sampled_from(SESSIONS))
        def lease(self, session):
            expected = self.model.lease(session, self.now)
            try:
                got = lease(svc, 1, session, self.now)
                actual = ("new" if got.new else "held", got.number)
            except PoolExhausted:
                actual = ("exhausted",)
            assert actual == expected

        @rule(session=st.sampled_from(SESSIONS))
        def renew(self, session):
            expected = self.model.renew(session, self.now)
            got = svc.renew_many([1], session, SITE, self.now)[0]
            if isinstance(got, Lease):
                actual = ("renewed", got.number)
            elif isinstance(got, LeaseNotHeld):
                actual = ("not_held",)
            elif isinstance(got, MaxLeaseAgeExceeded):
                actual = ("max_age",)
            else:
                raise AssertionError(got)
            assert actual == expected

        @rule(session=st.sampled_from(SESSIONS))
        def release(self, session):
            assert svc.release(1, session, self.now) == self.model.release(session, self.now)

        @rule()
        def reclaim(self):
            self.model.reclaim(self.now)
            svc.reclaim(1, self.now)

        @invariant()
        def same_holders(self):
            assert holders(svc, 1) == {n: s for n, (s, _, _) in self.model.busy.items()}

        @invariant()
        def no_number_twice(self):
            idle = set(svc.redis.zrange(svc.keys(1).idle, 0, -1))
            busy = set(svc.redis.zrange(svc.keys(1).busy, 0, -1))
            assert not idle & busy
            assert idle | busy == set(NUMBERS)

    return PoolMachine


@pytest.mark.parametrize("policy", ["fallback", "reuse_cooling"])
def test_pool_scripts_match_the_model(redis_client, policy):
    svc = PoolService(redis_client, prefix="m")
    run_state_machine_as_test(
        machine_for(svc, policy),
        settings=settings(max_examples=60, stateful_step_count=40, deadline=None,
                          suppress_health_check=[HealthCheck.function_scoped_fixture]),
    )
