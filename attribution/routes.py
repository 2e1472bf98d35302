"""Where each tracking number's calls are forwarded, kept in memory and mirrored in Redis.

Forwarding must survive a SQL outage: every process holds the whole number -> route map,
refreshed every ``ttl_seconds``, keeps serving the last map while SQL is down, and a
process that starts during an outage reads the copy mirrored in Redis.
"""

from __future__ import annotations

import json
import logging
import threading
import time

from redis.exceptions import RedisError
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from attribution.calls import Route
from attribution.models import StaticNumber
from pools.models import Pool, PoolNumber
from pools.phones import InvalidNumber, normalize

log = logging.getLogger(__name__)


def load_routes(db) -> dict[str, Route]:
    routes: dict[str, Route] = {}
    # Fallback numbers first, so a tracking number that is also a fallback keeps its pool.
    for number, destination, record in db.execute(
            select(Pool.fallback, Pool.destination, Pool.record_calls).order_by(Pool.id.desc())):
        routes[number] = Route(destination, record)
    for number, destination, record in db.execute(
            select(PoolNumber.number, Pool.destination, Pool.record_calls).join(Pool)
            .where(PoolNumber.status != "retired")):
        routes[number] = Route(destination, record)
    for number, destination, record in db.execute(
            select(StaticNumber.number, StaticNumber.destination, StaticNumber.record_calls)
            .where(StaticNumber.status == "active")):
        routes[number] = Route(destination, record)
    return routes


class RouteDirectory:
    def __init__(self, session_factory, redis, prefix: str, ttl_seconds: float = 10.0,
                 clock=time.monotonic):
        self.session_factory = session_factory
        self.redis = redis
        self.mirror_key = f"{prefix}:routes"
        self.ttl_seconds = ttl_seconds
        self.clock = clock
        self._routes: dict[str, Route] | None = None
        self._read_at = 0.0
        self._lock = threading.Lock()

    def route(self, dialled: str | None) -> Route:
        try:
            number = normalize(dialled or "", "US")
        except InvalidNumber:
            return Route(None)
        return self.routes().get(number, Route(None))

    def routes(self) -> dict[str, Route]:
        if self._routes is not None and self.clock() - self._read_at < self.ttl_seconds:
            return self._routes
        with self._lock:
            try:
                with self.session_factory() as db:
                    self._routes = load_routes(db)
                self._read_at = self.clock()
                self._mirror()
            except SQLAlchemyError:
                log.warning("SQL unavailable: forwarding with the last known routes")
                if self._routes is None:
                    self._routes = self._from_mirror()
                self._read_at = self.clock()
        return self._routes

    def invalidate(self) -> None:
        self._read_at = 0.0

    def _mirror(self) -> None:
        try:
            self.redis.set(self.mirror_key, json.dumps(
                {n: [r.destination, r.record] for n, r in self._routes.items()}))
        except RedisError:
            pass

    def _from_mirror(self) -> dict[str, Route]:
        try:
            raw = self.redis.get(self.mirror_key)
        except RedisError:
            raw = None
        return {n: Route(d, r) for n, (d, r) in json.loads(raw).items()} if raw else {}
