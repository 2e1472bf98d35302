"""Routing plans and their buyers: read from SQL every ``ttl_seconds``, kept per process
and mirrored in Redis, like call forwarding's map (``attribution.forwarding``, which also
says which plan routes each number). The routing path reads only these: no SQL per call,
and plans keep being served while SQL is away.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

from sqlalchemy import select

from pools.keys import routing_mirror_key
from pools.mirror import MirroredCache
from routing.models import Buyer, RoutingPlan

ALL = "routing"


@dataclass(frozen=True)
class RoutingMap:
    """plan id -> plan contract; buyer id -> buyer contract (with ``paused``)."""

    plans: dict[int, dict] = field(default_factory=dict)
    buyers: dict[int, dict] = field(default_factory=dict)


def load_map(db) -> RoutingMap:
    plans = {p.id: dict(p.spec) for p in db.scalars(select(RoutingPlan))}
    buyers = {b.id: dict(b.spec, paused=b.paused) for b in db.scalars(select(Buyer))}
    return RoutingMap(plans, buyers)


class RoutingDirectory:
    """Plans and buyers, from SQL every ``ttl_seconds``, served stale (or from their Redis
    copy) while SQL is down; with neither, no plan is known (calls are forwarded)."""

    def __init__(self, session_factory, redis, prefix: str, ttl_seconds: float = 10.0,
                 clock=time.monotonic):
        self.session_factory = session_factory
        key = routing_mirror_key(prefix)
        self._cache = MirroredCache(
            self._load, redis=redis, key=lambda _all: key, encode=encode_map,
            decode=decode_map, ttl_seconds=ttl_seconds, default=RoutingMap, clock=clock)

    def current(self) -> RoutingMap:
        return self._cache.get(ALL)

    def invalidate(self) -> None:
        self._cache.invalidate()

    def _load(self, _all) -> RoutingMap:
        with self.session_factory() as db:
            return load_map(db)


def encode_map(routing: RoutingMap) -> str:
    return json.dumps({"plans": routing.plans, "buyers": routing.buyers})


def decode_map(raw: str | bytes) -> RoutingMap:
    data = json.loads(raw)
    return RoutingMap({int(k): v for k, v in data["plans"].items()},
                      {int(k): v for k, v in data["buyers"].items()})
