"""Decide what happens when Redis is down or slow: fail fast, answer with fallbacks."""

from __future__ import annotations

import logging
import threading
import time
from typing import NoReturn

from redis.exceptions import (
    ClusterDownError,
    NoScriptError,
    RedisClusterException,
    RedisError,
    ResponseError,
    TryAgainError,
)

from pools.errors import PoolUnavailable

log = logging.getLogger(__name__)
# Answers of a Redis Cluster that has lost a primary (or is moving a slot): an outage too.
CLUSTER_OUTAGES = (ClusterDownError, TryAgainError)


class RedisGuard:
    """Turn Redis failures into PoolUnavailable, and stop trying for a moment after one.

    Each failed call costs up to the socket timeout; while Redis is down, a short pause
    (``cooloff_seconds``) answers at once instead, so the snippet API stays within budget.
    """

    def __init__(self, cooloff_seconds: float = 1.0, clock=time.monotonic):
        self.cooloff_seconds = cooloff_seconds
        self.clock = clock
        self.failures = 0
        self._open_until = 0.0
        self._lock = threading.Lock()

    def call(self, fn, *args, **kwargs):
        if self.clock() < self._open_until:
            self.failures += 1
            raise PoolUnavailable()
        try:
            return fn(*args, **kwargs)
        except (NoScriptError, ResponseError) as exc:
            if not isinstance(exc, CLUSTER_OUTAGES):
                raise  # Redis answered: a script or data problem, not an outage.
            self._trip(exc)
        except (RedisError, RedisClusterException) as exc:
            self._trip(exc)

    def _trip(self, exc: Exception) -> NoReturn:
        with self._lock:
            self.failures += 1
            self._open_until = self.clock() + self.cooloff_seconds
        log.warning("redis unavailable, serving fallbacks for %.1fs: %s",
                    self.cooloff_seconds, exc)
        raise PoolUnavailable() from exc

    def reset(self) -> None:
        self._open_until = 0.0
