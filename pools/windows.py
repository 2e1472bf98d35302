"""Fixed-window counters in Redis, for the service's rate limits outside the pool scripts
(reports per token, wrong tokens per client): one script call counts and tells the time
left."""

from __future__ import annotations

from importlib import resources

WINDOW_COUNT = (resources.files("pools") / "lua" / "window_count.lua").read_text(encoding="utf-8")


def count_in_window(redis, key: str, window_seconds: int) -> tuple[int, int]:
    """Count one more under ``key`` (a name from ``pools.keys``); returns (count including
    this one, seconds left in its window). Raises Redis errors as they come."""
    used, ttl = redis.eval(WINDOW_COUNT, 1, key, window_seconds)
    return int(used), int(ttl)
