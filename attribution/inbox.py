"""Where call events wait when SQL is down: a Redis stream, else a local spool file.

The caller is forwarded first; the event waits here and the worker stores it once SQL is
back (``ingest`` is idempotent, so an event replayed twice is still one event).

A signed carrier event that cannot be stored at all (a bug in reading it, or a value SQL
refuses) is kept as received in a second stream, ``<prefix>:calls:unparsed`` (else the
``call-unparsed.jsonl`` file beside the spool), for a person to look at: never dropped,
and never in the way of the events behind it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import fcntl
import json
import logging
import os

from redis.exceptions import RedisError
from sqlalchemy.exc import DataError, SQLAlchemyError
from sqlalchemy.orm import Session

from attribution.calls import CallEventIn, ingest
from pools import keys
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
        self.stream = keys.call_inbox_key(prefix)
        self.unparsed_stream = keys.call_unparsed_key(prefix)
        self.spool_path = spool_path
        self.unparsed_path = os.path.join(os.path.dirname(spool_path) or ".", "call-unparsed.jsonl")

    def push(self, event: CallEventIn) -> str:
        """Keep an event for later; returns where it went ("redis" or "spool")."""
        text = to_json(event)
        try:
            self.redis.xadd(self.stream, {"event": text})
            return "redis"
        except RedisError:
            _append(self.spool_path, text)
            log.warning("SQL and Redis both unavailable: call event spooled to %s",
                        self.spool_path)
            return "spool"

    def keep_unparsed(self, provider: str, raw: str, reason: str) -> str:
        """Keep an event that could not be stored, as received; returns where it went."""
        text = json.dumps({"provider": provider, "reason": reason[:500], "raw": raw,
                           "kept_at": dt.datetime.now(dt.UTC).isoformat()})
        log.error("%s event kept unparsed (%s)", provider, reason[:200])
        try:
            self.redis.xadd(self.unparsed_stream, {"event": text})
            return "redis"
        except RedisError:
            _append(self.unparsed_path, text)
            return "spool"

    def unparsed(self, limit: int = 100) -> list[dict]:
        """The events kept unparsed (oldest first), for operators and tests."""
        try:
            entries = self.redis.xrange(self.unparsed_stream, count=limit)
        except RedisError:
            entries = []
        kept = [json.loads(fields["event"]) for _, fields in entries]
        if os.path.exists(self.unparsed_path):
            with open(self.unparsed_path, encoding="utf-8") as fh:
                kept += [json.loads(line) for line in fh if line.strip()]
        return kept[:limit]

    def replay(self, db: Session, pools: PoolService | None = None, limit: int = 500) -> int:
        """Store waiting events; each is removed only after its SQL commit."""
        done = self._replay_spool(db, pools)
        try:
            entries = self.redis.xrange(self.stream, count=limit)
        except RedisError:
            return done
        for entry_id, fields in entries:
            self._store(db, fields["event"], pools)
            self.redis.xdel(self.stream, entry_id)
            done += 1
        return done

    def _store(self, db: Session, text: str, pools: PoolService | None) -> None:
        """Store one waiting event; one that can never be stored is kept aside, so it does
        not hold up the others. SQL being away still raises: everything waits."""
        try:
            ingest(db, from_json(text), pools=pools)
            db.commit()
        except SQLAlchemyError as exc:
            db.rollback()
            if not isinstance(exc, DataError):
                raise
            self.keep_unparsed("inbox", text, f"{type(exc).__name__}: {exc}")
        except Exception as exc:  # a bug in reading it: kept, never dropped
            db.rollback()
            self.keep_unparsed("inbox", text, f"{type(exc).__name__}: {exc}")

    def _replay_spool(self, db: Session, pools: PoolService | None) -> int:
        if not os.path.exists(self.spool_path):
            return 0
        with open(self.spool_path, "r+", encoding="utf-8") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            lines = [line for line in fh if line.strip()]
            for line in lines:
                self._store(db, line, pools)
            fh.seek(0)
            fh.truncate()
        return len(lines)

    def waiting(self) -> int:
        try:
            return int(self.redis.xlen(self.stream))
        except RedisError:
            return -1


def _append(path: str, text: str) -> None:
    """One line added to a local file (private: it holds callers' numbers), on disk before
    this returns."""
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "a",
                   encoding="utf-8") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        fh.write(text + "\n")
        fh.flush()
        os.fsync(fh.fileno())
