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
    """Turn Redis failures into PoolUnavailable, and stop trying while Redis stays away.

    Each failed call costs up to the socket timeout. The breaker opens on a *sustained*
    failure only: at least ``failures_to_open`` calls in a row have failed, over at least
    ``sustained_seconds`` (no success in between). Then, for ``cooloff_seconds``, calls
    answer PoolUnavailable at once, so the snippet API stays within budget; after that one
    call tries Redis again, and if it fails too (the streak goes on) the breaker reopens.
    One slow call, or a burst of timeouts during a short stall (a busy machine, a fork
    for a snapshot), answers that call with a fallback and nothing more: opening there
    would turn a 200 ms hiccup into a second of fallbacks for every visitor.
    """

    def __init__(self, cooloff_seconds: float = 1.0, clock=time.monotonic, *,
                 failures_to_open: int = 3, sustained_seconds: float = 0.5):
        self.cooloff_seconds = cooloff_seconds
        self.failures_to_open = failures_to_open
        self.sustained_seconds = sustained_seconds
        self.clock = clock
        self.failures = 0  # every call answered PoolUnavailable, in all
        self._streak = 0  # calls failed in a row
        self._streak_since = 0.0  # when the first of them failed
        self._open_until = 0.0
        self._lock = threading.Lock()

    @property
    def is_open(self) -> bool:
        return self.clock() < self._open_until

    def call(self, fn, *args, **kwargs):
        if self.is_open:
            self.failures += 1
            raise PoolUnavailable()
        try:
            result = fn(*args, **kwargs)
        except (NoScriptError, ResponseError) as exc:
            if not isinstance(exc, CLUSTER_OUTAGES):
                raise  # Redis answered: a script or data problem, not an outage.
            self._fail(exc)
        except (RedisError, RedisClusterException) as exc:
            self._fail(exc)
        self._streak = 0  # a success ends the streak: no lock, a stale reset is harmless
        return result

    def _fail(self, exc: Exception) -> NoReturn:
        with self._lock:
            now = self.clock()
            self.failures += 1
            if self._streak == 0:
                self._streak_since = now
            self._streak += 1
            opens = (self._streak >= self.failures_to_open
                     and now - self._streak_since >= self.sustained_seconds)
            if opens:
                self._open_until = now + self.cooloff_seconds
        if opens:
            log.warning("redis unavailable for %.1fs (%d calls failed), serving fallbacks "
                        "for %.1fs: %s", now - self._streak_since, self._streak,
                        self.cooloff_seconds, exc)
        else:
            log.info("redis call failed (%d in a row): %s", self._streak, exc)
        raise PoolUnavailable() from exc

    def reset(self) -> None:
        self._open_until = 0.0
        self._streak = 0
