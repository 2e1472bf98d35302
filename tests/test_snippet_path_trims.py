"""The snippet path's shortcuts (issue 14) answer exactly what the long way answers."""

from __future__ import annotations

import os

import orjson
import pytest
from redis.exceptions import DataError

from attribution.sessions import SessionIds
from dni_server import DniFlask, logs
from dni_server.api.cors import GRANT, granted_json
from pool_helpers import load_pool
from pools.direct import DirectScripts, pack_command
from pools.leases import LeaseRequest, PoolService

T0 = 1_700_000_000_000


# -- session ids: a genuine id is checked once, a forged one never passes ---------------


def test_a_checked_session_id_is_remembered_and_a_forged_one_still_refused():
    ids = SessionIds(b"k" * 32)
    genuine = ids.new([3, 7])
    assert ids.pools(genuine) == [3, 7]
    assert genuine in ids._verified
    assert ids.pools(genuine) == [3, 7]  # from the memo
    body, _, signature = genuine.rpartition(".")
    forged_signature = f"{body}.{'0' * 16 if signature != '0' * 16 else '1' * 16}"
    forged_pools = genuine.replace(".3-7.", ".3-8.")
    assert ids.pools(forged_signature) is None
    assert ids.pools(forged_pools) is None
    assert ids.pools(None) is None and ids.pools("") is None
    assert forged_signature not in ids._verified and forged_pools not in ids._verified
    # Another secret does not accept it, memo or not.
    assert SessionIds(b"j" * 32).pools(genuine) is None


def test_the_remembered_pools_cannot_be_changed_by_a_caller():
    ids = SessionIds(b"k" * 32)
    genuine = ids.new([4])
    ids.pools(genuine).append(99)
    assert ids.pools(genuine) == [4]


def test_the_session_id_memo_stays_bounded():
    ids = SessionIds(b"k" * 32)
    ids.VERIFIED_KEPT = 3
    made = [ids.new([n]) for n in range(10)]
    for n, session_id in enumerate(made):
        assert ids.pools(session_id) == [n]
        assert len(ids._verified) <= 3
    assert ids.pools(ids.new([])) == []


# -- request ids: no system call each, still fresh per process -----------------------------


def test_request_ids_differ_between_a_forked_worker_and_its_parent():
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: what a gunicorn worker would hand out next
        try:
            os.write(write, logs.request_id_for(None).encode())
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    parent = logs.request_id_for(None)
    assert len(child) == len(parent) == 32
    assert child != parent


# -- the answer's headers and bytes -----------------------------------------------------


def test_granted_json_writes_what_jsonify_would_plus_the_grant():
    payload = {"session_id": "s", "numbers": [{"n": 1}], "renew_in": 100}
    response = granted_json(payload)
    assert response.get_data() == orjson.dumps(payload) + b"\n"
    assert sorted(response.headers.items()) == sorted([
        ("Content-Type", "application/json"), GRANT,
        ("Content-Length", str(len(response.get_data())))])
    assert response.mimetype == "application/json"


# -- ensure_sync: remembered per function, same answer as Flask's -----------------------


def test_ensure_sync_remembers_its_answer_and_takes_any_callable():
    app = DniFlask(__name__)

    def view():
        return "ok"

    assert app.ensure_sync(view) is view
    assert app.ensure_sync(view) is view and view in app._sync_callables

    class Unhashable:
        __hash__ = None

        def __call__(self):
            return "ok"

    odd = Unhashable()
    assert app.ensure_sync(odd) is odd

    async def coroutine_view():
        return "ok"

    # Flask's own answer for a coroutine function (it needs asgiref to run one): asked once,
    # and the same way as Flask asks.
    try:
        wrapped = app.ensure_sync(coroutine_view)
    except RuntimeError:
        assert coroutine_view not in app._sync_callables
    else:
        assert wrapped is not coroutine_view
        assert app.ensure_sync(coroutine_view) is wrapped


# -- EVALSHA packed by hiredis: the bytes redis-py sends --------------------------------


@pytest.mark.skipif(pack_command is None, reason="hiredis not installed")
def test_direct_packing_matches_redis_py(redis_client):
    direct = DirectScripts(redis_client)
    conn = direct._connection()
    args = ("EVALSHA", "a" * 40, 2, "k:{1}:x", "k:{1}:y", 17, 0.25, b"\x00raw", "é", "")
    assert pack_command(args) == b"".join(conn.pack_command(*args))
    assert direct._local.packs


@pytest.mark.skipif(pack_command is None, reason="hiredis not installed")
def test_direct_run_refuses_an_argument_redis_cannot_take(redis_client):
    svc = PoolService(redis_client, prefix="trim")
    with pytest.raises(DataError):
        svc.direct.run(svc.scripts.renew, ["k"], [None])


def test_a_lease_through_the_direct_lane_still_records_its_visit(redis_client):
    """The packed command carries bytes (the visit payload) and floats (shares) as before."""
    svc = PoolService(redis_client, prefix="trim")
    load_pool(svc, 1, ["+16505550101", "+16505550102"])
    payload = orjson.dumps({"landing_url": "https://x.example/?gclid=é"})
    lease = svc.lease(LeaseRequest(1, "s1", T0, ip="203.0.113.9", visitor_id="v1",
                                   payload=payload, url="https://x.example/", ip_share=0.5,
                                   subnet="203.0.113.0", subnet_share=0.5))
    assert lease.new
    events = redis_client.xrange(svc.keys(1).events)
    recorded = [fields for _, fields in events if fields.get("t") == "lease"]
    assert orjson.loads(recorded[0]["p"]) == {"landing_url": "https://x.example/?gclid=é"}
    assert recorded[0]["u"] == "https://x.example/"


def test_a_forked_child_gets_a_connection_of_its_own(redis_client):
    """The parent's socket must never carry the child's commands (replies would cross)."""
    svc = PoolService(redis_client, prefix="trim")
    load_pool(svc, 1, ["+16505550101"])
    parent = svc.direct._connection()
    assert svc.direct._connection() is parent  # kept between calls
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            own = svc.direct._connection()
            lease = svc.lease(LeaseRequest(1, "s-child", T0))
            os.write(write, f"{own is not parent} {lease.number}".encode())
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    answer = os.read(read, 100).decode()
    os.close(read)
    assert answer == "True +16505550101"
    assert svc.direct._connection() is parent
