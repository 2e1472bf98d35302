"""Back-off on wrong tokens: failures are counted per client in Redis, shared by every worker.

After ``limit`` wrong tokens from one client within ``window`` seconds, that client is
refused (before its token is even looked at) until the window ends, so guessing a token
costs the guesser time rather than the service. A client is an IPv4 address or an IPv6
/64 (one host may hold a whole /64); an IPv4-mapped IPv6 address counts as its IPv4.
"""

from __future__ import annotations

import logging

from redis.exceptions import RedisError

from attribution.sessions import rate_key_ip
from pools.keys import auth_failures_key
from pools.windows import count_in_window

log = logging.getLogger(__name__)


def client_key(ip: str | None) -> str:
    """The address a client's failures are counted under: the same key as the lease limits
    (an IPv4 address, an IPv6 /64, an IPv4-mapped address as its IPv4)."""
    return rate_key_ip(ip)


class GuessLimiter:
    """Counts wrong tokens per client; a limit of 0 turns the back-off off.

    Redis trouble lets requests through (logged): the back-off only slows guessing, the
    token check itself still decides, and an outage must not lock every admin out.
    """

    def __init__(self, redis, prefix: str, limit: int, window_seconds: int):
        self.redis = redis
        self.prefix = prefix
        self.limit = limit
        self.window_seconds = window_seconds

    def _key(self, ip: str | None) -> str:
        return auth_failures_key(client_key(ip), self.prefix)

    def wait_seconds(self, ip: str | None) -> int:
        """How long this client must wait before its next try (0: it may try now)."""
        if not self.limit:
            return 0
        try:
            pipe = self.redis.pipeline(transaction=False)
            pipe.get(self._key(ip))
            pipe.ttl(self._key(ip))
            count, ttl = pipe.execute()
        except RedisError as exc:
            log.warning("auth back-off unreadable, not applied: %s", exc.__class__.__name__)
            return 0
        if int(count or 0) < self.limit:
            return 0
        return ttl if ttl > 0 else 1

    def failed(self, ip: str | None) -> None:
        """Count one wrong token; the window starts at the first one."""
        if not self.limit:
            return
        try:
            count_in_window(self.redis, self._key(ip), self.window_seconds)
        except RedisError as exc:
            log.warning("auth back-off not counted: %s", exc.__class__.__name__)
