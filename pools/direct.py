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
from redis.connection import HiredisRespSerializer
from redis.exceptions import DataError, NoScriptError, RedisError

try:
    from hiredis import pack_command
except ImportError:  # redis-py's own packer then
    pack_command = None

# Bumped in a forked child: a connection made before the fork belongs to the parent. Read
# on every call instead of os.getpid(), which is a system call each time.
_forks = [0]
os.register_at_fork(after_in_child=lambda: _forks.__setitem__(0, _forks[0] + 1))


class DirectScripts:
    def __init__(self, client):
        self.client = client
        self.direct = type(client) is redis.Redis  # not a cluster, not a test double
        self._local = threading.local()

    def _connection(self):
        conn = getattr(self._local, "conn", None)
        if conn is None or self._local.forks != _forks[0]:  # none yet, or inherited by fork
            conn = self._local.conn = self.client.connection_pool.make_connection()
            self._local.forks = _forks[0]
            # hiredis packs the command itself: redis-py's packer, in front of the same
            # call, first copies the arguments through a generator (~35 for a lease).
            self._local.packs = (pack_command is not None
                                 and type(conn._command_packer) is HiredisRespSerializer)
        return conn

    def run(self, script: Script, keys: list, args: list):
        """EVALSHA ``script``; EVAL it once when Redis has forgotten it (after a restart)."""
        if not self.direct:
            return script(keys=keys, args=args)
        conn = self._connection()
        try:
            if self._local.packs:
                try:
                    packed = pack_command(("EVALSHA", script.sha, len(keys), *keys, *args))
                except TypeError as exc:  # an argument Redis cannot take, as redis-py says it
                    raise DataError(exc) from None
                conn.send_packed_command((packed,))
            else:
                conn.send_command("EVALSHA", script.sha, len(keys), *keys, *args)
            return conn.read_response()
        except NoScriptError:
            return script(keys=keys, args=args)  # loads it, then runs it
        except RedisError:
            conn.disconnect()  # a half-read reply must never be read as the next answer
            raise
