"""The baseline for bench/api_throughput.py: a bare Flask JSON endpoint.

``POST /bare`` does what every snippet call must do at the least (parse a small JSON body,
answer a small JSON object) and nothing else, so the service's throughput as a ratio to it
measures the cost of our own code, not Flask's or gunicorn's. Deliberately plain Flask:
its default JSON provider, no extensions, no database, no Redis.

``POST /floor`` (``--floor``) is the same plus one lease-like EVALSHA: the least any
endpoint that touches Redis can cost, so a gap between it and the heartbeat is our code,
and a gap between it and ``/bare`` is the round trip.

``POST /floor/renew/<pool id>/<session id>`` and ``POST /floor/lease/<pool id>`` (``--script-floors``)
are the bare endpoint plus the service's own renewal or lease, through the service's own
pool client (``pools.leases.PoolService``: the real ``renew.lua`` and ``lease.lua`` with
the arguments the service passes in the benchmark, a visit's JSON included) and nothing
else: what a heartbeat and a new session would cost if the rest of their Python were free.
Their ratio to ``/floor`` is the most the endpoints could reach with today's scripts.

    gunicorn --config gunicorn.conf.py bench.bare_app:app
"""

from __future__ import annotations

import os
import secrets
import sys
import time
from pathlib import Path

import orjson
import redis
from flask import Flask, jsonify, request

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # gunicorn from the root
from attribution.visits import capture  # noqa: E402
from pools.leases import LeaseRequest, PoolService  # noqa: E402

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


_pools = None  # made on first use, in the worker, like _floor
# A visit as a new session's lease event carries it (attribution.sessions._visit_payload):
# the benchmark's landing URL and referrer read by the service's own code, and the facts
# the lease event adds. The script stores it as it is.
VISIT = orjson.dumps({
    **capture("https://example.com/?utm_source=google&utm_medium=cpc&gclid=abc",
              "https://www.google.com/", ()).columns(),
    "session_id": "0" * 24 + ".1." + "0" * 16, "visitor_id": "v_" + "0" * 16, "site_id": 1,
    "created_at_ms": 1_700_000_000_000, "ip": "127.0.0.1",
    "user_agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
                  "Chrome/124.0 Safari/537.36", "click_id_at_ms": 1_700_000_000_000})


def pools() -> PoolService:
    global _pools
    if _pools is None:
        client = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"], decode_responses=True)
        _pools = PoolService(client, prefix=os.environ.get("DNI_REDIS_PREFIX", "dni"))
    return _pools


def _body_or_400():
    body = request.get_json(force=True, silent=True)
    return body if isinstance(body, dict) else None


@app.post("/floor/renew/<int:pool_id>/<session_id>")
def floor_renew(pool_id: int, session_id: str):
    """The bare endpoint plus the service's renewal of this session's lease."""
    body = _body_or_400()
    if body is None:
        return jsonify(error="send a JSON object"), 400
    renewed = pools().renew_many([pool_id], session_id, str(body.get("site")),
                                 time.time_ns() // 1_000_000)[0]
    return jsonify(ok=True, number=getattr(renewed, "number", None), renew_in=100)


@app.post("/floor/lease/<int:pool_id>")
def floor_lease(pool_id: int):
    """The bare endpoint plus the service's lease for a new session."""
    body = _body_or_400()
    if body is None:
        return jsonify(error="send a JSON object"), 400
    lease = pools().lease(LeaseRequest(pool_id, secrets.token_hex(12), time.time_ns() // 1_000_000,
                                       "127.0.0.1", "v_bench", payload=VISIT,
                                       url=str(body.get("url"))))
    return jsonify(ok=True, number=lease.number, renew_in=100)
