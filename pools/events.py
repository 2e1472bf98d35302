"""A pool's event stream: the lease history the scripts append, read on its way to SQL.

Every pool script appends what it did (lease, renew, end, exhausted, retired, ad) to the
pool's stream. Two readers take it from there:

* the recorders (``dni worker``, any number of them) read it through the consumer group
  ``recorders`` with :meth:`PoolEvents.take`, write it to SQL, commit, and only then
  :meth:`PoolEvents.ack` it: a crash before the commit leaves the entries pending, and
  another recorder claims them;
* matching a call reads it with :meth:`PoolEvents.peek`, outside the group: it writes the
  events into the request's own transaction so a lease seconds old is found, and
  acknowledges nothing. The request may still roll back; the entries stay in the stream
  until a recorder has committed them (every write is idempotent, so recording an event
  twice changes nothing).
"""

from __future__ import annotations

from redis.exceptions import ResponseError

from pools import keys as k

CLAIM_IDLE_MS = 30_000  # entries a dead recorder left unacknowledged this long are taken over
BATCH = 1000  # entries read at once

Entry = tuple[str, dict]  # (stream id, fields)


class PoolEvents:
    """Read, claim and acknowledge the entries of each pool's event stream."""

    def __init__(self, redis, prefix: str = k.DEFAULT_PREFIX):
        self.redis = redis
        self.prefix = prefix

    def _stream(self, pool_id: int) -> str:
        return k.pool_keys(pool_id, self.prefix).events

    def take(self, pool_id: int, consumer: str, count: int = BATCH) -> list[Entry]:
        """Up to ``count`` entries for ``consumer`` of the recorders' group, oldest first.

        Its own unacknowledged entries first (a failed commit), then others' stale ones
        (a dead recorder), then new ones. Each is pending until :meth:`ack`. Empty when the
        pool is not loaded (loading it creates the group).
        """
        stream = self._stream(pool_id)
        try:
            entries = self._read_group(consumer, stream, "0", count)
            if not entries:
                entries = self.redis.xautoclaim(stream, k.RECORDER_GROUP, consumer,
                                                CLAIM_IDLE_MS, "0-0", count=count)[1]
            if not entries:
                entries = self._read_group(consumer, stream, ">", count)
        except ResponseError as exc:
            if "NOGROUP" in str(exc):
                return []
            raise
        return _with_fields(entries)

    def _read_group(self, consumer: str, stream: str, start: str, count: int) -> list:
        reply = self.redis.xreadgroup(k.RECORDER_GROUP, consumer, {stream: start}, count=count)
        return reply[0][1] if reply else []

    def peek(self, pool_id: int, count: int = BATCH) -> list[Entry]:
        """The newest ``count`` entries not yet recorded, oldest first, read without claiming
        them. The newest: a call is about a lease of the last moments, and after an outage
        the backlog can be far longer than one read."""
        return _with_fields(self.redis.xrevrange(self._stream(pool_id), count=count)[::-1])

    def ack(self, pool_id: int, ids: list[str]) -> None:
        """Acknowledge and delete recorded entries, in one round trip. Call it only after
        the SQL they produced is committed."""
        if not ids:
            return
        stream = self._stream(pool_id)
        pipe = self.redis.pipeline(transaction=False)
        pipe.xack(stream, k.RECORDER_GROUP, *ids)
        pipe.xdel(stream, *ids)
        pipe.execute()


def _with_fields(entries: list) -> list[Entry]:
    """Drop entries deleted since they were delivered (a claim returns them without fields)."""
    return [(eid, fields) for eid, fields in entries if fields]
