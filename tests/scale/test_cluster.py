"""The service on a real three-primary Redis Cluster, with no code change: only REDIS_URL.

Every app here is built with ``REDIS_URL=redis+cluster://127.0.0.1:<port>`` (the root
conftest's ``make_app``, pointed at the cluster by the two fixtures below), so the pool
invariants, two-pool sessions and a whole call run through the same code as production.
"""

from __future__ import annotations

import multiprocessing
import xml.etree.ElementTree as ET

import pytest
from scale_servers import free_port, root_conftest, start_cluster, wait_until
from sqlalchemy import select

from dni_server import create_app
from dni_server.extensions import db
from dni_server.redis_client import make_redis
from dni_server.timefmt import now_ms
from factories import (
    ADMIN_TOKEN,
    TWILIO_TOKEN,
    AdminClient,
    heartbeat,
    make_pool,
    make_site,
    numbers,
    post_session,
    record,
    twilio_call,
    twilio_post,
)
from pool_helpers import holders
from pools.errors import PoolExhausted
from pools.leases import LeaseRequest
from pools.models import Lease

T0 = 1_700_000_000_000


@pytest.fixture(scope="session")
def redis_url(redis_cluster) -> str:
    """Overrides the root fixture: every app of this module runs on the cluster."""
    return redis_cluster.url


@pytest.fixture
def redis_client(redis_cluster):
    """A cluster client on an empty cluster (every primary flushed before and after)."""
    redis_cluster.flush()
    yield redis_cluster.client()
    redis_cluster.flush()


@pytest.fixture
def app(make_app):
    return make_app(DNI_TWILIO_AUTH_TOKEN=TWILIO_TOKEN, DNI_REDIS_TIMEOUT_MS="2000")


@pytest.fixture
def admin(app):
    return AdminClient(app.test_client(), ADMIN_TOKEN)


def pool_node(cluster, app, pool_id: int) -> int:
    """The port of the primary that serves the pool's keys."""
    return cluster.node_of_key(app.extensions["dni"].pools.keys(pool_id).meta)


def pool_on_a_new_node(admin, cluster, app, site, used: set[int], **fields) -> dict:
    """Create a pool whose hash tag lands on a primary not in ``used``.

    Pool ids come from SQL in order; throwaway pools on a site of their own take up the
    ids whose slots sit on a node already used, so the pools of the test spread out.
    """
    spare_site = make_site(admin, name="Spacer")
    keys = app.extensions["dni"].pools
    with app.app_context():
        from pools.models import Pool

        last = db.session.scalar(select(Pool.id).order_by(Pool.id.desc()).limit(1)) or 0
    for attempt in range(8):
        if cluster.node_of_key(keys.keys(last + 1).meta) not in used:
            break
        last = make_pool(admin, spare_site, name=f"Spacer {attempt}", target="+18005550111",
                         numbers=numbers(1, start=190 - attempt))["id"]
    pool = make_pool(admin, site, **fields)
    node = pool_node(cluster, app, pool["id"])
    assert node not in used, "the pool must sit on a primary of its own"
    used.add(node)
    return pool


def evalsha_calls(cluster) -> dict[int, int]:
    """EVALSHA and EVAL commands each primary has run so far."""
    out = {}
    for node in cluster.nodes:
        stats = node.client().info("commandstats")
        out[node.port] = sum(stats.get(f"cmdstat_{name}", {}).get("calls", 0)
                             for name in ("evalsha", "eval"))
    return out


def test_redis_url_may_list_several_nodes(redis_cluster, redis_client):
    """One listed node down at start: the client learns the cluster from another."""
    live = redis_cluster.nodes[1].port
    client = make_redis(f"redis+cluster://127.0.0.1:{free_port()},127.0.0.1:{live}", 2.0)
    try:
        client.set("{1}:probe", "x")
        assert sorted(n.port for n in client.get_primaries()) == \
            sorted(n.port for n in redis_cluster.nodes)
        assert client.get("{1}:probe") == "x"
    finally:
        client.close()


# -- the pool invariants, through the app ------------------------------------------------


def test_every_pool_key_and_script_stays_in_one_slot(app, admin, redis_cluster):
    site = make_site(admin)
    pool = make_pool(admin, site, numbers=numbers(3))
    svc = app.extensions["dni"].pools
    body = post_session(app.test_client(), site["key"]).get_json()
    assert body["numbers"][0]["fallback"] is False
    # Every key the pool has written, and the rate keys of that lease, hash to one slot.
    tag = svc.keys(pool["id"]).meta.rsplit(":", 1)[0]
    written = [k for n in redis_cluster.nodes for k in n.client().keys(f"{tag}:*")]
    assert {"meta", "idle", "busy", "holder", "session", "stats", "events"} <= \
        {k.split(":")[3] for k in written}
    assert any(":rate:" in k for k in written)
    assert {redis_cluster.keyslot(k) for k in written} == {redis_cluster.keyslot(tag + ":meta")}
    # ...and all of them live on the one primary serving that slot.
    owner = pool_node(redis_cluster, app, pool["id"])
    for node in redis_cluster.nodes:
        assert bool(node.client().keys(f"{tag}:*")) == (node.port == owner)


def test_lease_is_sticky_across_pages_and_heartbeats(app, admin):
    site = make_site(admin)
    make_pool(admin, site, numbers=numbers(3))
    client = app.test_client()
    first = post_session(client, site["key"], "https://shop.example/a").get_json()
    number = first["numbers"][0]["number"]
    assert number in numbers(3)
    again = post_session(client, site["key"], "https://shop.example/b",
                         session_id=first["session_id"]).get_json()
    assert again["numbers"][0]["number"] == number
    for page in ("/c", "/d"):
        beat = heartbeat(client, site["key"], first["session_id"], "https://shop.example" + page)
        assert beat.status_code == 200 and beat.json["numbers"][0]["number"] == number
    other = post_session(client, site["key"]).get_json()
    assert other["numbers"][0]["number"] not in (number, None)


def test_least_recently_used_and_cool_down(app, admin):
    site = make_site(admin)
    pool = make_pool(admin, site, numbers=numbers(3), cooldown_seconds=60)
    svc = app.extensions["dni"].pools
    pid = pool["id"]
    leased = [svc.lease(LeaseRequest(pid, f"s{i}", T0 + i)).number for i in range(3)]
    assert sorted(leased) == numbers(3)
    # Released in the order 2, 0: number 2 has been idle longest, so it goes first...
    svc.release(pid, "s2", T0 + 1_000)
    svc.release(pid, "s0", T0 + 2_000)
    # ...but only once its cool-down has passed: before that the pool is exhausted.
    with pytest.raises(PoolExhausted):
        svc.lease(LeaseRequest(pid, "early", T0 + 30_000))
    assert svc.lease(LeaseRequest(pid, "late", T0 + 61_500)).number == leased[2]
    with pytest.raises(PoolExhausted):  # number 0 is still cooling
        svc.lease(LeaseRequest(pid, "later", T0 + 61_600))
    assert svc.lease(LeaseRequest(pid, "last", T0 + 62_500)).number == leased[0]


def test_exhausted_pool_answers_the_fallback_and_counts(app, admin):
    site = make_site(admin)
    pool = make_pool(admin, site, numbers=numbers(2), fallback="+18005550177")
    client = app.test_client()
    # Four visitors from four networks: the per-IP and per-subnet caps stay out of the way.
    answers = [post_session(client, site["key"], ip=f"198.51.{100 + i}.7").get_json()
               for i in range(4)]
    entries = [a["numbers"][0] for a in answers]
    assert sorted(e["number"] for e in entries[:2]) == numbers(2)
    assert [(e["number"], e["fallback"], e["reason"]) for e in entries[2:]] == \
        [("+18005550177", True, "pool_exhausted")] * 2
    status = app.extensions["dni"].pools.status(pool["id"], T0)
    assert status["counters"]["exhausted"] == 2 and status["busy"] == 2


def test_release_and_reclaim_return_numbers_to_the_pool(app, admin):
    site = make_site(admin)
    pool = make_pool(admin, site, numbers=numbers(2), lease_seconds=60, cooldown_seconds=0)
    svc, pid = app.extensions["dni"].pools, pool["id"]
    a = svc.lease(LeaseRequest(pid, "a", T0))
    svc.lease(LeaseRequest(pid, "b", T0))
    assert svc.release(pid, "a", T0 + 5_000) is True
    assert svc.release(pid, "a", T0 + 5_001) is False
    assert svc.reclaim(pid, T0 + 59_000) == 0
    assert svc.reclaim(pid, T0 + 61_000) == 1  # b's lease expired at T0 + 60 s
    status = svc.status(pid, T0 + 61_000)
    assert (status["idle"], status["busy"]) == (2, 0)
    assert svc.lease(LeaseRequest(pid, "c", T0 + 62_000)).number == a.number  # idle longest
    # Every lease and its end reached SQL through the pool's stream (XREADGROUP on the cluster);
    # the worker's pass reclaims at the real clock, long after T0, so c's lease ends too.
    record(app)
    with app.app_context():
        rows = db.session.execute(select(Lease.session_id, Lease.end_reason)
                                  .where(Lease.pool_id == pid)).all()
    assert sorted(rows, key=lambda r: r[0]) == [("a", "released"), ("b", "expired"),
                                                   ("c", "expired")]


def test_retiring_a_leased_number_waits_for_its_lease(app, admin):
    site = make_site(admin)
    pool = make_pool(admin, site, numbers=numbers(1))
    client = app.test_client()
    body = post_session(client, site["key"]).get_json()
    leased = body["numbers"][0]["number"]
    assert admin.delete(f"/v1/pools/{pool['id']}/numbers/{leased}").json["status"] == "retiring"
    beat = heartbeat(client, site["key"], body["session_id"])
    assert beat.json["numbers"][0]["number"] == leased
    app.extensions["dni"].pools.release(pool["id"], body["session_id"], 2**41)
    record(app)
    listed = admin.get(f"/v1/pools/{pool['id']}/numbers").json["numbers"]
    assert listed[0]["status"] == "retired"
    assert post_session(client, site["key"]).json["numbers"][0]["reason"] == "pool_exhausted"


def _race(url: str, pool_id: int, worker: int, sessions: int, start, results) -> None:
    from pools.leases import PoolService

    svc = PoolService(make_redis(url, 10.0))
    start.wait()
    got = []
    for i in range(sessions):
        session = f"w{worker}s{i}"
        try:
            got.append((session, svc.lease(LeaseRequest(pool_id, session, T0)).number))
        except PoolExhausted:
            got.append((session, None))
    svc.redis.close()
    results.put(got)


def test_processes_racing_for_a_small_pool_never_share_a_number(app, admin, redis_cluster):
    site = make_site(admin)
    pool = make_pool(admin, site, numbers=numbers(4))
    ctx = multiprocessing.get_context("spawn")
    start, results = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_race, args=(redis_cluster.url, pool["id"], w, 25, start, results))
             for w in range(3)]
    for p in procs:
        p.start()
    start.set()
    outcomes = [item for _ in procs for item in results.get(timeout=120)]
    for p in procs:
        p.join(30)
    winners = [(s, n) for s, n in outcomes if n is not None]
    assert len(outcomes) == 75
    assert sorted(n for _, n in winners) == numbers(4)  # each number to exactly one session
    svc = app.extensions["dni"].pools
    assert holders(svc, pool["id"]) == {n: s for s, n in winners}
    assert svc.status(pool["id"], T0)["counters"]["exhausted"] == 71


# -- sessions with numbers from two pools -----------------------------------------------


def test_a_session_with_two_pools_on_two_nodes(app, admin, redis_cluster):
    site = make_site(admin)
    used: set[int] = set()
    sales = pool_on_a_new_node(admin, redis_cluster, app, site, used, name="Sales",
                               target="+18005550100", numbers=numbers(2), cooldown_seconds=0)
    service = pool_on_a_new_node(admin, redis_cluster, app, site, used, name="Service",
                                 target="+18005550200", numbers=numbers(2, start=150),
                                 cooldown_seconds=0)
    client = app.test_client()
    post_session(client, site["key"], ip="198.51.101.1")  # loads the scripts on both nodes
    before = evalsha_calls(redis_cluster)
    body = post_session(client, site["key"], ip="198.51.102.1").get_json()
    after = evalsha_calls(redis_cluster)
    # One EVALSHA per pool, each on the pool's own primary; nothing on the third.
    assert {port: after[port] - before[port] for port in after} == \
        {port: 1 if port in used else 0 for port in after}
    by_target = {e["target"]: e for e in body["numbers"]}
    assert by_target["+18005550100"]["number"] in numbers(2)
    assert by_target["+18005550200"]["number"] in numbers(2, start=150)
    assert not any(e.get("fallback") for e in body["numbers"])

    beat = heartbeat(client, site["key"], body["session_id"], "https://shop.example/next")
    assert {e["target"]: e["number"] for e in beat.json["numbers"]} == \
        {t: e["number"] for t, e in by_target.items()}
    # One pool exhausted does not take the other's number away.
    svc = app.extensions["dni"].pools
    svc.release(service["id"], body["session_id"], now_ms())
    third = post_session(client, site["key"], ip="198.51.103.1").get_json()
    reasons = {e["target"]: e.get("reason") for e in third["numbers"]}
    assert reasons == {"+18005550100": "pool_exhausted", "+18005550200": None}

    record(app)
    with app.app_context():
        rows = db.session.execute(select(Lease.pool_id, Lease.number)
                                  .where(Lease.session_id == body["session_id"])).all()
    assert sorted(rows) == sorted([(sales["id"], by_target["+18005550100"]["number"]),
                                   (service["id"], by_target["+18005550200"]["number"])])


# -- a whole call ------------------------------------------------------------------------


def test_a_visit_becomes_an_attributed_call_on_the_cluster(app, admin):
    site = make_site(admin)
    make_pool(admin, site, numbers=numbers(3))
    landing = "https://plumbing.example/?utm_source=google&utm_medium=cpc&gclid=Cj0K_cluster"
    session = post_session(app.test_client(), site["key"], landing).get_json()
    number = session["numbers"][0]["number"]

    client = app.test_client()
    sid = "CA" + "c" * 32
    answer = twilio_post(client, "/webhooks/twilio/voice", twilio_call(sid, number))
    assert ET.fromstring(answer.data).find("Dial/Number").text == "+12125550199"
    for seq, status, extra in (("1", "ringing", {}), ("2", "in-progress", {}),
                               ("3", "completed", {"CallDuration": "95"})):
        response = twilio_post(client, "/webhooks/twilio/status", twilio_call(
            sid, number, CallStatus=status, SequenceNumber=seq,
            CallbackSource="call-progress-events", **extra))
        assert response.status_code in (200, 204)
    record(app)  # the worker's pass: lease history, inbox and pools, all on the cluster

    call = admin.get(f"/v1/calls/{sid}").json
    a = call["attribution"]
    assert (a["method"], a["session_id"]) == ("session", session["session_id"])
    assert (a["source"], a["medium"], a["gclid"]) == ("google", "cpc", "Cj0K_cluster")
    assert (call["status"], call["duration"]) == ("completed", 95)
    # The routes mirror and the call inbox are single keys, each in its own slot.
    services = app.extensions["dni"]
    assert services.redis.get(services.routes.mirror_key)
    assert services.inbox.waiting() == 0


# -- a primary lost ----------------------------------------------------------------------


def test_a_lost_primary_gives_fallbacks_not_errors(request, database_url, tmp_path):
    """A cluster of its own loses one primary: sessions, heartbeats and calls keep answering
    (fallbacks, reason ``unavailable``): for the lost node's pool at once (connection
    refused), for every pool once the cluster declares itself down (CLUSTERDOWN)."""
    cluster = start_cluster(str(tmp_path / "cluster"), node_timeout_ms=1000)
    root = root_conftest(request.config)
    app = create_app(root.app_config(database_url, cluster.url, DNI_REDIS_TIMEOUT_MS=500,
                                     DNI_TWILIO_AUTH_TOKEN=TWILIO_TOKEN),
                     instance_path=str(tmp_path / "instance"))
    try:
        admin = AdminClient(app.test_client(), ADMIN_TOKEN)
        lost_site, kept_site = make_site(admin, name="Lost"), make_site(admin, name="Kept")
        used: set[int] = set()
        lost = pool_on_a_new_node(admin, cluster, app, lost_site, used, numbers=numbers(2),
                                  fallback="+18005550177")
        pool_on_a_new_node(admin, cluster, app, kept_site, used, fallback="+18005550188",
                           numbers=numbers(2, start=150))
        client = app.test_client()
        first = post_session(client, lost_site["key"]).get_json()
        assert first["numbers"][0]["fallback"] is False
        owner = pool_node(cluster, app, lost["id"])
        survivors = [n for n in cluster.nodes if n.port != owner]
        next(n for n in cluster.nodes if n.port == owner).stop()

        def session_on(site) -> tuple[str, str | None]:
            app.extensions["dni"].sessions.pools.guard.reset()  # no cool-off between checks
            response = post_session(client, site["key"])
            assert response.status_code == 200
            entry = response.json["numbers"][0]
            return entry["number"], entry.get("reason")

        assert session_on(lost_site) == ("+18005550177", "unavailable")
        assert session_on(kept_site)[0] in numbers(2, start=150)  # its node is fine
        wait_until(lambda: all(n.client().execute_command("CLUSTER INFO")["cluster_state"] == "fail"
                               for n in survivors), 30, "cluster_state:fail")
        assert session_on(lost_site) == ("+18005550177", "unavailable")
        assert session_on(kept_site) == ("+18005550188", "unavailable")
        beat = heartbeat(client, lost_site["key"], first["session_id"])
        assert beat.status_code == 200 and beat.json["numbers"][0]["reason"] == "unavailable"
        # The caller is still forwarded and the call kept.
        sid = "CA" + "d" * 32
        answer = twilio_post(client, "/webhooks/twilio/voice",
                             twilio_call(sid, first["numbers"][0]["number"]))
        assert ET.fromstring(answer.data).find("Dial/Number").text == "+12125550199"
        assert admin.get(f"/v1/calls/{sid}").status_code == 200
    finally:
        services = app.extensions["dni"]
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
        services.redis.close()
        services.redis_admin.close()
        cluster.stop()
        root.empty_tables(database_url)
