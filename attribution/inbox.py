"""Where call events wait when SQL is down: a Redis stream, else a local spool file.

The caller is forwarded first; the event waits here and the worker stores it once SQL is
back (``ingest`` is idempotent, so an event replayed twice is still one event).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import fcntl
import json
import logging
import os

from redis.exceptions import RedisError
from sqlalchemy.orm import Session

from attribution.calls import CallEventIn, ingest
from pools.leases import PoolService

log = logging.getLogger(__name__)
INBOX_GROUP = "call-ingest"


def to_json(event: CallEventIn) -> str:
    data = dataclasses.asdict(event)
    for name, value in data.items():
        if isinstance(value, dt.datetime):
            data[name] = value.isoformat()
    return json.dumps(data, default=str)


def from_json(text: str) -> CallEventIn:
    data = json.loads(text)
    for f in dataclasses.fields(CallEventIn):
        if data.get(f.name) and f.name in ("occurred_at", "answered_at", "ended_at"):
            data[f.name] = dt.datetime.fromisoformat(data[f.name])
    return CallEventIn(**data)


class CallInbox:
    def __init__(self, redis, prefix: str, spool_path: str):
        self.redis = redis
        self.stream = f"{prefix}:calls:inbox"
        self.spool_path = spool_path

    def push(self, event: CallEventIn) -> str:
        """Keep an event for later; returns where it went ("redis" or "spool")."""
        text = to_json(event)
        try:
            self.redis.xadd(self.stream, {"event": text})
            return "redis"
        except RedisError:
            with open(self.spool_path, "a", encoding="utf-8") as fh:
                fcntl.flock(fh, fcntl.LOCK_EX)
                fh.write(text + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            log.warning("SQL and Redis both unavailable: call event spooled to %s",
                        self.spool_path)
            return "spool"

    def replay(self, db: Session, pools: PoolService | None = None, limit: int = 500) -> int:
        """Store waiting events; each is removed only after its SQL commit."""
        done = self._replay_spool(db, pools)
        try:
            entries = self.redis.xrange(self.stream, count=limit)
        except RedisError:
            return done
        for entry_id, fields in entries:
            ingest(db, from_json(fields["event"]), pools=pools)
            db.commit()
            self.redis.xdel(self.stream, entry_id)
            done += 1
        return done

    def _replay_spool(self, db: Session, pools: PoolService | None) -> int:
        if not os.path.exists(self.spool_path):
            return 0
        with open(self.spool_path, "r+", encoding="utf-8") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            lines = [line for line in fh.read().splitlines() if line.strip()]
            for line in lines:
                ingest(db, from_json(line), pools=pools)
            db.commit()
            fh.seek(0)
            fh.truncate()
        return len(lines)

    def waiting(self) -> int:
        try:
            return int(self.redis.xlen(self.stream))
        except RedisError:
            return -1
