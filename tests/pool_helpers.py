"""Load a pool straight into Redis for tests of the pool scripts alone."""

from __future__ import annotations

from pools.leases import LeaseRequest, PoolService

SITE = "site_test"
TARGET = "+18005550100"


def load_pool(svc: PoolService, pool_id: int, numbers: list[str], *, lease_s: int = 60,
              max_age_s: int = 3600, cooldown_s: int = 0, policy: str = "fallback",
              leases=(), idle_since=None):
    spec = {
        "mode": "load",
        "meta": {"site": SITE, "target": TARGET, "fallback": TARGET,
                 "lease_ms": lease_s * 1000, "max_age_ms": max_age_s * 1000,
                 "cooldown_ms": cooldown_s * 1000, "policy": policy},
        "active": list(numbers),
        "idle_since": dict(idle_since or {}),
        "leases": [list(map(str, lease)) for lease in leases],
    }
    return svc.sync(pool_id, spec)


def lease(svc: PoolService, pool_id: int, session: str, now_ms: int, **kwargs):
    return svc.lease(LeaseRequest(pool_id, session, now_ms, **kwargs))


def holders(svc: PoolService, pool_id: int) -> dict[str, str]:
    """number -> session, straight from Redis."""
    raw = svc.redis.hgetall(svc.keys(pool_id).holder)
    return {number: value.split("|")[0] for number, value in raw.items()}
