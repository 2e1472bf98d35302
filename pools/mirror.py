"""A time-limited per-process cache of values read from SQL, mirrored in Redis for outages.

The snippet's site settings (``pools.directory``) and the call forwarding map
(``attribution.forwarding``) must keep being served while SQL is away. Each process keeps
what it read for ``ttl_seconds``; when SQL fails it keeps serving what it has, and a
process that has nothing yet (it just started, or meets a site for the first time) reads
the copy this class writes to Redis whenever SQL gives a new value.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

log = logging.getLogger(__name__)
V = TypeVar("V")
NOTHING = object()  # without SQL: neither a cached value, nor a copy, nor a default


class MirroredCache(Generic[V]):
    """Values by name: ``load(name)`` reads SQL (None = no such value: cached, never mirrored).

    ``key(name)`` is the Redis key of a value's copy (from ``pools.keys``), ``encode`` and
    ``decode`` turn a value into what is stored there and back. Without SQL, a stale value
    or the Redis copy is served, else ``default()`` if given, else the SQL error is raised.
    """

    def __init__(self, load: Callable[[Hashable], V | None], *, redis, key: Callable[[Hashable], str],
                 encode: Callable[[V], str | bytes], decode: Callable[[str | bytes], V],
                 ttl_seconds: float, mirror_seconds: int | None = None,
                 default: Callable[[], V] | None = None, max_entries: int = 10_000,
                 clock: Callable[[], float] = time.monotonic):
        self.load = load
        self.redis = redis  # None: no copy, the per-process cache only
        self.key = key
        self.encode = encode
        self.decode = decode
        self.ttl_seconds = ttl_seconds
        self.mirror_seconds = mirror_seconds  # None: the copy does not expire
        self.default = default
        self.max_entries = max_entries
        self.clock = clock
        self._entries: OrderedDict[Hashable, tuple[float, V | None]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, name: Hashable) -> V | None:
        now = self.clock()
        entry = self._entries.get(name)
        if entry is not None and now - entry[0] < self.ttl_seconds:
            return entry[1]
        try:
            value = self.load(name)
        except SQLAlchemyError:
            value = self._without_sql(name, entry)
            if value is NOTHING:
                raise
        else:
            if value is not None and (entry is None or entry[1] != value):
                self._write_copy(name, value)
        self._keep(name, now, value)
        return value

    def invalidate(self, name: Hashable | None = None) -> None:
        """Read SQL again on the next ``get``; what was read stays the outage fallback."""
        with self._lock:
            for each in list(self._entries) if name is None else [name]:
                if each in self._entries:
                    self._entries[each] = (float("-inf"), self._entries[each][1])

    def _without_sql(self, name: Hashable, entry: tuple[float, V | None] | None):
        if entry is not None:
            log.warning("SQL unavailable, serving the cached copy of %s", name)
            return entry[1]
        value = self._read_copy(name)
        if value is not None:
            log.warning("SQL unavailable, serving the Redis copy of %s", name)
            return value
        if self.default is None:
            return NOTHING
        log.warning("SQL unavailable and no copy of %s: serving the default", name)
        return self.default()

    def _keep(self, name: Hashable, now: float, value: V | None) -> None:
        with self._lock:
            self._entries[name] = (now, value)
            self._entries.move_to_end(name)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def _write_copy(self, name: Hashable, value: V) -> None:
        if self.redis is None:
            return
        try:
            self.redis.set(self.key(name), self.encode(value), ex=self.mirror_seconds)
        except RedisError:
            pass  # the copy is a spare; SQL stays the source

    def _read_copy(self, name: Hashable) -> V | None:
        if self.redis is None:
            return None
        try:
            raw = self.redis.get(self.key(name))
        except RedisError:
            return None
        return None if raw is None else self.decode(raw)
