"""A per-process cache of each site's pool configuration, read from SQL.

New sessions look their site up here; a site is read from SQL at most once per
``ttl_seconds`` per process, and a stale entry keeps serving if SQL is down. Each new
config read is also mirrored to Redis, so a process that starts (or meets a site for the
first time) while SQL is away can still lease numbers (``pools.mirror``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import orjson
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from pools.keys import site_mirror_key
from pools.mirror import MirroredCache
from pools.models import Site

MIRROR_SECONDS = 30 * 86_400  # a site unused this long is read from SQL again anyway


@dataclass(frozen=True)
class PoolConfig:
    id: int
    name: str
    target: str
    fallback: str
    priority: int
    rules: tuple
    lease_seconds: int


@dataclass(frozen=True)
class SiteConfig:
    id: int
    key: str
    name: str
    domains: tuple
    keyword_params: tuple
    timezone: str
    pools: tuple[PoolConfig, ...]

    def pool(self, pool_id: int) -> PoolConfig | None:
        return next((p for p in self.pools if p.id == pool_id), None)

    def targets(self) -> dict[str, str]:
        """Each swap target and the fallback shown when no pool of it can serve."""
        out: dict[str, str] = {}
        for pool in sorted(self.pools, key=lambda p: (-p.priority, p.id)):
            out.setdefault(pool.target, pool.fallback)
        return out


def site_config(site: Site) -> SiteConfig:
    return SiteConfig(
        id=site.id, key=site.key, name=site.name, domains=tuple(site.domains or ()),
        keyword_params=tuple(site.keyword_params or ()), timezone=site.timezone,
        pools=tuple(
            PoolConfig(p.id, p.name, p.target, p.fallback, p.priority, tuple(p.rules or ()),
                       p.lease_seconds)
            for p in site.pools if p.active
        ),
    )


class SiteDirectory:
    """Site configs by public key, cached; unknown keys are cached too (as None)."""

    def __init__(self, session_factory, ttl_seconds: float = 5.0, max_entries: int = 10_000,
                 clock=time.monotonic, mirror=None, prefix: str = "dni"):
        self.session_factory = session_factory
        self._cache = MirroredCache(
            self._load, redis=mirror, key=lambda site_key: site_mirror_key(site_key, prefix),
            encode=orjson.dumps, decode=decode_site_config, ttl_seconds=ttl_seconds,
            mirror_seconds=MIRROR_SECONDS, max_entries=max_entries, clock=clock)

    def get(self, key: str) -> SiteConfig | None:
        """The site's config; without SQL the cached or mirrored one, else the SQL error."""
        return self._cache.get(key)

    def invalidate(self, key: str | None = None) -> None:
        self._cache.invalidate(key)

    def _load(self, key: str) -> SiteConfig | None:
        with self.session_factory() as db:
            site = db.scalar(
                select(Site).where(Site.key == key).options(selectinload(Site.pools))
            )
            return None if site is None else site_config(site)


def decode_site_config(raw: str | bytes) -> SiteConfig:
    """A ``SiteConfig`` back from its JSON copy in Redis."""
    data = orjson.loads(raw)
    pools = tuple(PoolConfig(**{**p, "rules": tuple(p["rules"])}) for p in data.pop("pools"))
    return SiteConfig(**{**data, "domains": tuple(data["domains"]),
                         "keyword_params": tuple(data["keyword_params"]), "pools": pools})
