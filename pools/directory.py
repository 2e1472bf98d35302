"""A per-process cache of each site's pool configuration, read from SQL.

New sessions look their site up here; a site is read from SQL at most once per
``ttl_seconds`` per process, and a stale entry keeps serving if SQL is down. Each config
read is also mirrored to Redis, so a process that starts (or meets a site for the first
time) while SQL is away can still lease numbers.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

import orjson
from redis.exceptions import RedisError
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import selectinload

from pools.models import Site

log = logging.getLogger(__name__)
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
        self.mirror = mirror  # a Redis client, or None
        self.prefix = prefix
        self.ttl_seconds = ttl_seconds
        self.max_entries = max_entries
        self.clock = clock
        self._entries: OrderedDict[str, tuple[float, SiteConfig | None]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> SiteConfig | None:
        now = self.clock()
        entry = self._entries.get(key)
        if entry is not None and now - entry[0] < self.ttl_seconds:
            return entry[1]
        try:
            config = self._load(key)
        except SQLAlchemyError:
            if entry is not None:
                log.warning("SQL unavailable, serving cached config of site %s", key)
                return entry[1]
            config = self._mirrored(key)
            if config is None:
                raise
            log.warning("SQL unavailable, serving the mirrored config of site %s", key)
        else:
            if config is not None and (entry is None or entry[1] != config):
                self._mirror(config)
        with self._lock:
            self._entries[key] = (now, config)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return config

    def invalidate(self, key: str | None = None) -> None:
        with self._lock:
            if key is None:
                self._entries.clear()
            else:
                self._entries.pop(key, None)

    def _load(self, key: str) -> SiteConfig | None:
        with self.session_factory() as db:
            site = db.scalar(
                select(Site).where(Site.key == key).options(selectinload(Site.pools))
            )
            return None if site is None else site_config(site)

    def _mirror_key(self, key: str) -> str:
        return f"{self.prefix}:site:{key}"

    def _mirror(self, config: SiteConfig) -> None:
        if self.mirror is None:
            return
        try:
            self.mirror.set(self._mirror_key(config.key), orjson.dumps(config), ex=MIRROR_SECONDS)
        except RedisError:
            pass  # the mirror is a spare; SQL stays the source

    def _mirrored(self, key: str) -> SiteConfig | None:
        if self.mirror is None:
            return None
        try:
            raw = self.mirror.get(self._mirror_key(key))
        except RedisError:
            return None
        if raw is None:
            return None
        data = orjson.loads(raw)
        pools = tuple(PoolConfig(**{**p, "rules": tuple(p["rules"])}) for p in data.pop("pools"))
        return SiteConfig(**{**data, "domains": tuple(data["domains"]),
                             "keyword_params": tuple(data["keyword_params"]), "pools": pools})
