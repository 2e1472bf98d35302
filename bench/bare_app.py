"""The baseline for bench/api_throughput.py: a bare Flask JSON endpoint.

``POST /bare`` does what every snippet call must do at the least (parse a small JSON body,
answer a small JSON object) and nothing else, so the service's throughput as a ratio to it
measures the cost of our own code, not Flask's or gunicorn's. Deliberately plain Flask:
its default JSON provider, no extensions, no database, no Redis.

``POST /floor`` (``--floor``) is the same plus one lease-like EVALSHA: the least any
endpoint that touches Redis can cost, so a gap between it and the heartbeat is our code,
and a gap between it and ``/bare`` is the round trip.

    gunicorn --config gunicorn.conf.py bench.bare_app:app
"""

from __future__ import annotations

import os
import time

import redis
from flask import Flask, jsonify, request

app = Flask(__name__)

# Like renew.lua: read the pool's settings and the session's number, push the expiry,
# count, and append to an event stream (capped here, as nothing drains it).
FLOOR_SCRIPT = """
local meta = redis.call('HMGET', KEYS[1], 'site', 'lease_ms')
local number = redis.call('HGET', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[3], tonumber(ARGV[2]) + 300000, ARGV[1])
redis.call('HINCRBY', KEYS[4], 'renewals', 1)
redis.call('XADD', KEYS[5], 'MAXLEN', '~', 10000, '*', 's', ARGV[1], 'at', ARGV[2])
return {0, number or '', ARGV[2]}
"""
FLOOR_KEYS = [f"bench:floor:{{1}}:{name}" for name in ("meta", "session", "busy", "stats",
                                                        "events")]
_floor = None  # made on first use, in the worker (not before gunicorn forks)


@app.post("/bare")
def bare():
    # force=True: the snippet sends its JSON as text/plain (no CORS preflight), and the
    # benchmark sends the bare endpoint the same headers as the real ones.
    body = request.get_json(force=True, silent=True)
    if not isinstance(body, dict):
        return jsonify(error="send a JSON object"), 400
    return jsonify(ok=True, site=body.get("site"), renew_in=100)


@app.post("/floor")
def floor():
    global _floor
    body = request.get_json(force=True, silent=True)
    if not isinstance(body, dict):
        return jsonify(error="send a JSON object"), 400
    if _floor is None:
        client = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"], decode_responses=True)
        _floor = client.register_script(FLOOR_SCRIPT)
    code, number, at = _floor(keys=FLOOR_KEYS, args=["s1", time.time_ns() // 1_000_000])
    return jsonify(ok=True, site=body.get("site"), number=number, at=at, renew_in=100)
