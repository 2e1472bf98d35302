"""The pool service is the only door into a pool's Redis data, and matching a call commits
nothing of its own: one ingest, one commit, by the caller."""

from __future__ import annotations

import ast
import datetime as dt
import inspect
import re
from pathlib import Path

import pytest
from sqlalchemy import create_engine, event, func, select

from attribution.calls import CallEventIn, ingest
from attribution.models import Call, Visit
from attribution.recorder import drain_pool
from dni_server.extensions import db
from factories import make_pool, make_site, numbers, post_session, record
from pool_helpers import load_pool
from pools import keys as pool_key_builders
from pools.errors import PoolUnavailable
from pools.leases import LeaseRequest, PoolService
from pools.models import Lease, PoolExhaustion

ROOT = Path(__file__).resolve().parent.parent
T0 = 1_700_000_000_000
N1, N2, N3 = numbers(3)

# -- the doors, read from the source ------------------------------------------------------

# Commands on a pool's hashes, sorted sets, sets and streams: only pools/ sends them.
POOL_DATA_COMMANDS = {"hget", "hgetall", "hset", "hdel", "zcount", "zcard", "zrange",
                      "zrangebyscore", "zadd", "zrem", "scard", "smembers", "sismember",
                      "xreadgroup", "xautoclaim", "xack", "xpending", "xclaim", "xgroup_create",
                      "xinfo_groups", "xtrim"}
# Everything in pools/keys.py that names a pool's keys.
POOL_KEY_NAMES = {"PoolKeys", "RECORDER_GROUP"} | {
    name for name, fn in inspect.getmembers(pool_key_builders, inspect.isfunction)
    if next(iter(inspect.signature(fn).parameters), None) == "pool_id"}
# An f-string starting with the Redis prefix, a colon and a key segment: a key written by
# hand (not a message "prefix: text", nor a SCAN pattern "prefix:*").
HAND_MADE_KEY = re.compile(r"""f["']\{[^}]*prefix[^}]*\}:[\w{]|["']dni:\w""")


def product_modules(*, outside_pools: bool) -> list[Path]:
    folders = ["attribution", "routing", "dni_server"] + ([] if outside_pools else ["pools"])
    found = [p for folder in folders for p in (ROOT / folder).rglob("*.py")
             if "migrations" not in p.parts]
    return sorted(found + list(ROOT.glob("*.py")))


def door_violations(path: Path) -> list[str]:
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        where = f"{path.name}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            name = node.func.attr
            if name in POOL_DATA_COMMANDS or (name == "keys" and node.args):
                out.append(f"{where} calls .{name}()")
        if isinstance(node, ast.Name) and node.id in POOL_KEY_NAMES:
            out.append(f"{where} uses {node.id}")
        if isinstance(node, ast.Attribute) and node.attr in POOL_KEY_NAMES:
            out.append(f"{where} uses .{node.attr}")
        if isinstance(node, ast.ImportFrom):
            out += [f"{where} imports {a.name}" for a in node.names if a.name in POOL_KEY_NAMES]
    return out


def test_the_scan_finds_what_it_forbids(tmp_path):
    """The checks below would see a raw read of a pool key, were one written."""
    sample = tmp_path / "sample.py"
    sample.write_text("from pools.keys import pool_keys\n"
                      "def holder(pools, pid, n):\n"
                      "    return pools.redis.hget(pools.keys(pid).holder, n)\n"
                      "KEY = f'{prefix}:calls:inbox'\n", encoding="utf-8")
    found = door_violations(sample)
    assert len(found) == 3 and any("hget" in f for f in found) and any(
        "pool_keys" in f for f in found) and any(".keys()" in f for f in found)
    assert HAND_MADE_KEY.findall(sample.read_text(encoding="utf-8"))


def test_no_module_outside_pools_reads_or_names_a_pool_key():
    violations = [v for path in product_modules(outside_pools=True) for v in door_violations(path)]
    assert violations == []


def test_every_redis_key_string_is_written_in_pools_keys():
    written = [f"{path.relative_to(ROOT)}:{i}: {line.strip()}"
               for path in product_modules(outside_pools=False)
               if path not in (ROOT / "pools" / "keys.py",
                               ROOT / "attribution" / "callbacks" / "keys.py")
               for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
               if HAND_MADE_KEY.search(line)]
    assert written == []


def test_the_other_keys_keep_their_names():
    """Renaming a key would strand what a running service holds under the old name."""
    k = pool_key_builders
    assert [k.call_inbox_key("p"), k.call_unparsed_key("p"), k.call_acted_key("twilio", "e1", "p"),
            k.conversion_rate_key(7, 123, "p"), k.report_rate_key("token:3", "p"),
            k.auth_failures_key("1.2.3.4", "p"), k.dashboard_login_key("L", "p"),
            k.site_mirror_key("site_x", "p"), k.route_mirror_key("p")] == [
        "p:calls:inbox", "p:calls:unparsed", "p:calls:acted:twilio:e1",
        "p:conversions:rate:7:123", "p:report-rate:token:3", "p:auth-failures:1.2.3.4",
        "p:dashboard-login:L", "p:site:site_x", "p:routes"]
    # Pay-per-call routing: a buyer's keys share its hash tag (routing/lua/*.lua run on one slot).
    assert [k.buyer_live_key(7, "p"), k.buyer_target_live_key(7, 0, "p"),
            k.buyer_count_key(7, "day", "20261206", "p"), k.buyer_last_offer_key(7, "p"),
            k.buyer_duplicate_key(7, "+14155550100", "p"), k.routed_call_key("twilio", "CA1", "p"),
            k.routing_mirror_key("p")] == [
        "p:buyer:{b7}:live", "p:buyer:{b7}:live:0", "p:buyer:{b7}:count:day:20261206",
        "p:buyer:{b7}:last", "p:buyer:{b7}:dup:+14155550100", "p:routed:twilio:CA1", "p:routing"]


# -- holder, counts, events ------------------------------------------------------------


@pytest.fixture
def svc(redis_client):
    return PoolService(redis_client, prefix="t")


def test_holder_names_the_live_session_and_its_start(svc):
    load_pool(svc, 1, [N1, N2])
    leased = svc.lease(LeaseRequest(1, "s1", T0))
    idle = ({N1, N2} - {leased.number}).pop()
    assert svc.holder(1, leased.number) == ("s1", T0)
    assert svc.holder(1, idle) is None
    svc.release(1, "s1", T0 + 1_000)
    assert svc.holder(1, leased.number) is None


def test_holder_says_when_redis_is_away(svc):
    svc.guard._open_until = svc.guard.clock() + 60  # as after a failed call
    with pytest.raises(PoolUnavailable):
        svc.holder(1, N1)


class RoundTrips:
    """Counts what a client sends: single commands, and pipelines executed."""

    def __init__(self, client, monkeypatch):
        self.commands, self.pipelines = 0, 0
        send, make_pipeline = client.execute_command, client.pipeline

        def command(*args, **kwargs):
            self.commands += 1
            return send(*args, **kwargs)

        def pipeline(*args, **kwargs):
            pipe = make_pipeline(*args, **kwargs)
            run = pipe.execute

            def execute(*a, **kw):
                self.pipelines += 1
                return run(*a, **kw)

            pipe.execute = execute
            return pipe

        monkeypatch.setattr(client, "execute_command", command)
        monkeypatch.setattr(client, "pipeline", pipeline)


def test_counts_reads_many_pools_in_one_round_trip(svc, monkeypatch):
    load_pool(svc, 1, [N1, N2, N3], lease_s=60)
    load_pool(svc, 2, [N1])
    svc.lease(LeaseRequest(1, "a", T0))
    svc.lease(LeaseRequest(1, "b", T0 + 10_000))
    trips = RoundTrips(svc.redis, monkeypatch)
    assert svc.counts([1, 2, 3], T0 + 30_000) == [(2, 3), (0, 1), (0, 0)]
    assert (trips.commands, trips.pipelines) == (0, 1)
    # "a" expired at T0 + 60 s and is not reclaimed yet: it counts as free.
    assert svc.counts([1], T0 + 65_000) == [(1, 3)]


def test_take_claims_ack_deletes_and_peek_claims_nothing(svc):
    load_pool(svc, 1, [N1, N2])
    svc.lease(LeaseRequest(1, "a", T0))
    svc.lease(LeaseRequest(1, "b", T0))
    stream = svc.keys(1).events
    peeked = svc.events.peek(1)
    assert [f["t"] for _, f in peeked] == ["lease", "lease"]
    assert svc.redis.xpending(stream, pool_key_builders.RECORDER_GROUP)["pending"] == 0

    taken = svc.events.take(1, "r1")
    assert taken == peeked
    assert svc.redis.xpending(stream, pool_key_builders.RECORDER_GROUP)["pending"] == 2
    # Not acknowledged (say the commit failed): the same consumer is handed them again.
    assert svc.events.take(1, "r1") == taken
    svc.events.ack(1, [eid for eid, _ in taken])
    assert svc.redis.xlen(stream) == 0 and svc.events.take(1, "r1") == []
    assert svc.events.peek(1) == []


def test_take_on_a_pool_not_loaded_is_empty(svc):
    assert svc.events.take(99, "r1") == [] and svc.events.peek(99) == []


def test_the_worker_acknowledges_only_after_its_commit(app, admin, redis_client):
    site = make_site(admin)
    pool = make_pool(admin, site)
    post_session(app.test_client(), site["key"])
    pools = app.extensions["dni"].pools
    stream = pools.keys(pool["id"]).events

    class CommitFails(Exception):
        pass

    with app.app_context():
        session = db.session

        def fail():
            raise CommitFails

        session.commit = fail  # the batch is written, the commit is lost
        try:
            with pytest.raises(CommitFails):
                drain_pool(pools, session, pool["id"], "r1")
        finally:
            del session.commit
        session.rollback()
        assert redis_client.xlen(stream) == 1  # still there, pending for r1
        assert drain_pool(pools, session, pool["id"], "r1") == 1
        assert session.scalar(select(func.count()).select_from(Lease)) == 1
    assert redis_client.xlen(stream) == 0


# -- no hidden commit --------------------------------------------------------------------


def call_event(to: str, key: str = "CA-doors") -> CallEventIn:
    return CallEventIn(provider="api", provider_call_id=key, event_key=f"{key}:1", kind="api",
                       occurred_at=dt.datetime.now(dt.UTC), from_raw="+14158675309", to_raw=to)


def rows_in_sql(app) -> tuple[int, int, int]:
    """(calls, visits, leases) as another connection sees them: only what is committed."""
    engine = create_engine(app.config["SQLALCHEMY_DATABASE_URI"])
    try:
        with engine.connect() as conn:
            return tuple(conn.scalar(select(func.count()).select_from(model))
                         for model in (Call, Visit, Lease))
    finally:
        engine.dispose()


def test_ingest_with_pending_lease_events_leaves_the_commit_to_the_caller(app, admin,
                                                                         redis_client):
    site = make_site(admin)
    pool = make_pool(admin, site)
    session_id = post_session(app.test_client(), site["key"]).get_json()["session_id"]
    services = app.extensions["dni"]
    held = next(n for n in numbers(3) if services.pools.holder(pool["id"], n))
    stream = services.pools.keys(pool["id"]).events
    assert redis_client.xlen(stream) == 1  # the lease, not recorded yet

    with app.app_context():
        engine = db.engine
        commits = []

        def counted(_conn):
            commits.append(True)

        event.listen(engine, "commit", counted)
        try:
            call, new = ingest(db.session, call_event(held), pools=services.pools)
            # The call was matched with the lease's visit, inside this transaction...
            assert new and (call.method, call.session_id) == ("session", session_id)
            assert db.session.scalar(select(func.count()).select_from(Visit)) == 1
            assert commits == []  # ...and nothing was committed on the way.
            db.session.rollback()
        finally:
            event.remove(engine, "commit", counted)
    assert rows_in_sql(app) == (0, 0, 0)
    assert redis_client.xlen(stream) == 1  # nothing acknowledged for the rolled-back work

    # The worker records the events later; the call, sent again, is stored once.
    record(app)
    assert rows_in_sql(app) == (0, 1, 1) and redis_client.xlen(stream) == 0
    with app.app_context():
        ingest(db.session, call_event(held), pools=services.pools)
        db.session.commit()
    assert rows_in_sql(app) == (1, 1, 1)



def test_a_call_after_a_long_backlog_records_only_its_numbers_latest_events(app, admin,
                                                                            redis_client):
    """After an outage the stream holds more events than one read: a call still finds the
    lease of moments ago, and writes nothing of the rest (the worker does that, once)."""
    site = make_site(admin)
    pool = make_pool(admin, site)
    services = app.extensions["dni"]
    stream = services.pools.keys(pool["id"]).events
    for i in range(1200):  # older events, none about a number: visitors turned away
        redis_client.xadd(stream, {"t": "exhausted", "s": f"s_backlog{i}", "at": T0 + i})
    session_id = post_session(app.test_client(), site["key"]).get_json()["session_id"]
    held = next(n for n in numbers(3) if services.pools.holder(pool["id"], n))

    with app.app_context():
        call, _ = ingest(db.session, call_event(held, "CA-backlog"), pools=services.pools)
        assert (call.method, call.session_id) == ("session", session_id)
        assert db.session.scalar(select(func.count()).select_from(Lease)) == 1
        assert db.session.scalar(select(func.count()).select_from(Visit)) == 1
        assert db.session.scalar(select(func.count()).select_from(PoolExhaustion)) == 0
        db.session.commit()
    assert redis_client.xlen(stream) == 1201  # all still there for the worker


def test_a_call_through_the_api_commits_once_and_leaves_the_events_to_the_worker(
        app, admin, redis_client):
    site = make_site(admin)
    pool = make_pool(admin, site)
    session_id = post_session(app.test_client(), site["key"]).get_json()["session_id"]
    pools = app.extensions["dni"].pools
    held = next(n for n in numbers(3) if pools.holder(pool["id"], n))
    stream = pools.keys(pool["id"]).events
    with app.app_context():
        engine = db.engine
    commits = []

    def counted(_conn):
        commits.append(True)

    event.listen(engine, "commit", counted)
    try:
        response = admin.post("/v1/calls", json={
            "call_id": "CA-doors-api", "to": held, "from": "+14158675309",
            "started_at": dt.datetime.now(dt.UTC).isoformat()})
    finally:
        event.remove(engine, "commit", counted)
    assert response.status_code == 201, response.get_json()
    attribution = response.get_json()["attribution"]
    assert (attribution["method"], attribution["session_id"]) == ("session", session_id)
    assert len(commits) == 1
    assert rows_in_sql(app) == (1, 1, 1)  # the lease and its visit, committed with the call
    assert redis_client.xlen(stream) == 1  # acknowledged by the worker only
    record(app)
    assert rows_in_sql(app) == (1, 1, 1) and redis_client.xlen(stream) == 0
