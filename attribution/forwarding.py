"""Where each tracking number's calls are forwarded, kept in memory and mirrored in Redis.

Forwarding must survive a SQL outage: every process holds the whole number -> route map,
refreshed every ``ttl_seconds``, keeps serving the last map while SQL is down, and a
process that starts during an outage reads the copy mirrored in Redis.
"""

from __future__ import annotations

import json
import time

from sqlalchemy import select

from attribution.calls import Route
from attribution.models import StaticNumber
from pools.keys import route_mirror_key
from pools.mirror import MirroredCache
from pools.models import Pool, PoolNumber
from pools.phones import InvalidNumber, normalize

ALL = "routes"  # the cache's one entry: the map is read, kept and mirrored whole


def load_routes(db) -> dict[str, Route]:
    routes: dict[str, Route] = {}
    # Fallback numbers first, so a tracking number that is also a fallback keeps its pool.
    for number, destination, record, plan in db.execute(
            select(Pool.fallback, Pool.destination, Pool.record_calls, Pool.routing_plan_id)
            .order_by(Pool.id.desc())):
        routes[number] = Route(destination, record, plan)
    for number, destination, record, plan in db.execute(
            select(PoolNumber.number, Pool.destination, Pool.record_calls, Pool.routing_plan_id)
            .join(Pool).where(PoolNumber.status != "retired")):
        routes[number] = Route(destination, record, plan)
    for number, destination, record, plan in db.execute(
            select(StaticNumber.number, StaticNumber.destination, StaticNumber.record_calls,
                   StaticNumber.routing_plan_id).where(StaticNumber.status == "active")):
        routes[number] = Route(destination, record, plan)
    return routes


class RouteDirectory:
    """The whole number -> route map, read from SQL every ``ttl_seconds`` (``pools.mirror``);
    with SQL away and no copy in Redis either, calls are answered without forwarding."""

    def __init__(self, session_factory, redis, prefix: str, ttl_seconds: float = 10.0,
                 clock=time.monotonic):
        self.session_factory = session_factory
        self.mirror_key = route_mirror_key(prefix)
        self._cache = MirroredCache(
            self._load, redis=redis, key=lambda _all: self.mirror_key, encode=encode_routes,
            decode=decode_routes, ttl_seconds=ttl_seconds, default=dict, clock=clock)

    def route(self, dialled: str | None) -> Route:
        try:
            number = normalize(dialled or "", "US")
        except InvalidNumber:
            return Route(None)
        return self.routes().get(number, Route(None))

    def routes(self) -> dict[str, Route]:
        return self._cache.get(ALL)

    def invalidate(self) -> None:
        self._cache.invalidate()

    def _load(self, _all) -> dict[str, Route]:
        with self.session_factory() as db:
            return load_routes(db)


def encode_routes(routes: dict[str, Route]) -> str:
    return json.dumps({n: [r.destination, r.record, r.plan] for n, r in routes.items()})


def decode_routes(raw: str | bytes) -> dict[str, Route]:
    # A copy written before routing plans has two fields per number.
    return {n: Route(*fields) for n, fields in json.loads(raw).items()}
