"""Where the worker keeps each pool's modelled accuracy in Redis (``attribution.accuracy_summary``
decides what and when): pools/ is the only door into keys named by a pool, so the reads and
writes are here. Values are opaque text to this module.
"""

from __future__ import annotations

from pools import keys


def save(redis, pool_id: int, value: str, keep_seconds: int,
         prefix: str = keys.DEFAULT_PREFIX) -> None:
    redis.set(keys.accuracy_summary_key(pool_id, prefix), value, ex=keep_seconds)


def read(redis, pool_ids: list[int], prefix: str = keys.DEFAULT_PREFIX) -> list[str | None]:
    """Each pool's stored value (None: none), in one round trip."""
    pipe = redis.pipeline(transaction=False)
    for pool_id in pool_ids:
        pipe.get(keys.accuracy_summary_key(pool_id, prefix))
    return pipe.execute()


def claim(redis, pool_id: int, seconds: int, prefix: str = keys.DEFAULT_PREFIX) -> bool:
    """True when this caller may model the pool now (nobody else claimed it in ``seconds``)."""
    return bool(redis.set(keys.accuracy_lock_key(pool_id, prefix), "1", nx=True, ex=seconds))


def release(redis, pool_id: int, prefix: str = keys.DEFAULT_PREFIX) -> None:
    redis.delete(keys.accuracy_lock_key(pool_id, prefix))
