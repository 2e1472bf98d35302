"""One EVALSHA on a connection of the calling thread's own: the snippet path's fast lane.

redis-py's ``Script.__call__`` goes through the client's command wrappers and checks a
connection out of the pool and back in on every call: about 25 µs of CPU, more than the
script itself costs Redis. The lease and renew paths run once per page view, so they send
the command on a connection each thread keeps, with the client's own settings (timeouts,
decoding, hiredis parser). Cluster clients, which route by slot, take the usual path.
"""

from __future__ import annotations

import os
import threading

import redis
from redis.commands.core import Script
from redis.exceptions import NoScriptError, RedisError


class DirectScripts:
    def __init__(self, client):
        self.client = client
        self.direct = type(client) is redis.Redis  # not a cluster, not a test double
        self._local = threading.local()

    def _connection(self):
        conn = getattr(self._local, "conn", None)
        if conn is None or self._local.pid != os.getpid():  # none yet, or inherited by fork
            conn = self._local.conn = self.client.connection_pool.make_connection()
            self._local.pid = os.getpid()
        return conn

    def run(self, script: Script, keys: list, args: list):
        """EVALSHA ``script``; EVAL it once when Redis has forgotten it (after a restart)."""
        if not self.direct:
            return script(keys=keys, args=args)
        conn = self._connection()
        try:
            conn.send_command("EVALSHA", script.sha, len(keys), *keys, *args)
            return conn.read_response()
        except NoScriptError:
            return script(keys=keys, args=args)  # loads it, then runs it
        except RedisError:
            conn.disconnect()  # a half-read reply must never be read as the next answer
            raise
