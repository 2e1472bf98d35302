"""Each active pool's accuracy over its last week, worked out by the worker, kept in Redis.

The dashboard's pool list flags every pool below its accuracy target, and modelling a week
of a busy pool takes seconds (``accuracy.pool_accuracy``): asked in the request, a list of
a few pools would outlast the web worker's 30 s timeout. So the worker models one pool at a
time, the one whose answer is oldest, each at most every ``REFRESH_SECONDS``, and the list
only reads what it stored. An answer is kept ``KEEP_SECONDS``: with no worker running, the
list says it has none rather than show an old one as current. A lock per pool keeps two
workers from modelling the same pool at once.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from redis.exceptions import RedisError
from sqlalchemy import select
from sqlalchemy.orm import Session

from attribution.accuracy import DEFAULT_TARGET, pool_accuracy
from pools import accuracy_store, catalog, keys
from pools.models import Pool

RECENT_DAYS = 7  # the traffic each answer learns from: the pool's last week
RECENT_MS = RECENT_DAYS * 86_400_000
REFRESH_SECONDS = 900  # a pool is modelled again at most this often
KEEP_SECONDS = 6 * 3600  # an answer older than this is gone (no worker is refreshing it)
LOCK_SECONDS = 300  # far longer than one model takes: a pool is modelled by one worker


@dataclass(frozen=True)
class Summary:
    """What the worker stored for one pool: the ``accuracy`` answer of the health API for
    its last week (None: the pool had no active numbers), and when."""

    computed_at_ms: int  # also the end of the week it learned from
    numbers: int
    answer: dict | None

    @property
    def start_ms(self) -> int:
        """The start of the week it learned from."""
        return self.computed_at_ms - RECENT_MS


def summarise(db: Session, redis, pool: Pool, now_ms: int,
              prefix: str = keys.DEFAULT_PREFIX) -> Summary:
    """Model ``pool``'s last ``RECENT_DAYS`` up to ``now_ms`` and store the answer."""
    numbers = catalog.active_numbers(db, pool.id)
    answer = pool_accuracy(db, pool, now_ms - RECENT_MS, now_ms, numbers, DEFAULT_TARGET) \
        if numbers else None
    summary = Summary(now_ms, numbers, answer)
    accuracy_store.save(redis, pool.id, json.dumps(asdict(summary)), KEEP_SECONDS, prefix)
    return summary


def stored(redis, pool_ids: list[int],
           prefix: str = keys.DEFAULT_PREFIX) -> dict[int, Summary | None]:
    """The stored summary of each pool (None: none yet, or Redis cannot be read now)."""
    if not pool_ids:
        return {}
    try:
        values = accuracy_store.read(redis, pool_ids, prefix)
    except RedisError:
        return dict.fromkeys(pool_ids)
    return {pool_id: Summary(**json.loads(value)) if value else None
            for pool_id, value in zip(pool_ids, values, strict=True)}


def due(summaries: dict[int, Summary | None], now_ms: int) -> list[int]:
    """Pools whose answer is missing or older than ``REFRESH_SECONDS``, oldest first."""
    late = [(s.computed_at_ms if s else -1, pool_id) for pool_id, s in summaries.items()
            if s is None or now_ms - s.computed_at_ms >= REFRESH_SECONDS * 1000]
    return [pool_id for _, pool_id in sorted(late)]


def refresh_one(db: Session, redis, now_ms: int,
                prefix: str = keys.DEFAULT_PREFIX) -> int | None:
    """Model the active pool whose answer is oldest, if one is due and no other worker is
    at it; the pool's id, or None when there was nothing to do."""
    pool_ids = list(db.scalars(select(Pool.id).where(Pool.active).order_by(Pool.id)))
    for pool_id in due(stored(redis, pool_ids, prefix), now_ms):
        if not accuracy_store.claim(redis, pool_id, LOCK_SECONDS, prefix):
            continue  # another worker is modelling it
        pool = db.get(Pool, pool_id)
        if pool is not None:
            summarise(db, redis, pool, now_ms, prefix)
        # Released once stored; a pass that failed leaves it to lapse, so a pool that
        # cannot be modelled is tried again only after ``LOCK_SECONDS``.
        accuracy_store.release(redis, pool_id, prefix)
        return pool_id
    return None
