"""Tenant isolation of calls (issue 11, F1 and F5): a caller's history and a number's lease
history never cross sites or publishers, and a call's answer (API and dashboard) carries
nothing of another tenant's visit."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest

from attribution.models import Call
from dni_server.extensions import db
from factories import AdminClient, make_pool, make_site, numbers, record
from pools.leases import LeaseRequest

T0 = int(dt.datetime(2026, 5, 4, 14, 0, tzinfo=dt.UTC).timestamp() * 1000)
DAY_MS = 86_400_000
CALLER = "+14158675309"
NUMBER_A, NUMBER_B, NUMBER_B2 = numbers(3, 121)
# Everything of publisher A's visit that must never reach publisher B.
A_VISIT = {"session_id": "visit-of-publisher-a", "utm_campaign": "a-secret-campaign",
           "keyword": "a-secret-keyword", "gclid": "GCLID-OF-A", "source": "a-source",
           "landing_url": "https://a.example/a-landing-page"}


def iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat()


def now_ms() -> int:
    return int(dt.datetime.now(dt.UTC).timestamp() * 1000)


def lease_at(app, pool: dict, session: str, at_ms: int, **visit) -> None:
    payload = json.dumps({"session_id": session, "site_id": pool["site_id"],
                          "visitor_id": "v_" + session, "created_at_ms": at_ms, **visit})
    assert app.extensions["dni"].pools.lease(LeaseRequest(pool["id"], session, at_ms,
                                                          payload=payload))


def release_at(app, pool: dict, session: str, at_ms: int) -> None:
    assert app.extensions["dni"].pools.release(pool["id"], session, at_ms)


def post_call(admin, call_id: str, to: str, at_ms: int, **fields) -> dict:
    response = admin.post("/v1/calls", json={"call_id": call_id, "from": CALLER, "to": to,
                                             "started_at": iso(at_ms)} | fields)
    assert response.status_code == 201, response.json
    return response.json


def token_client(app, admin, scope: str, publisher: str | None = None) -> AdminClient:
    response = admin.post("/v1/tokens", json={"name": f"{scope} {publisher}", "scope": scope,
                                               "publisher": publisher})
    assert response.status_code == 201, response.json
    return AdminClient(app.test_client(), response.json["token"])


def dashboard_login(app, token: str):
    client = app.test_client()
    page = client.get("/dashboard/login")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    response = client.post("/dashboard/login", data={"token": token, "csrf_token": csrf})
    assert response.status_code == 302, response.text
    return client


def assert_nothing_of_a(text: str) -> None:
    for name, value in A_VISIT.items():
        assert value not in text, f"publisher A's {name} leaked: {value}"


def stored(app, call_id: int) -> Call:
    with app.app_context():
        return db.session.get(Call, call_id)


# -- F1: a caller's history is scoped to the site and the publisher ------------------------


@pytest.fixture
def two_publishers(app, admin):
    """Publishers A and B with a pool each on one site; the caller rang A's number first."""
    site = make_site(admin)
    pool_a = make_pool(admin, site, numbers=[NUMBER_A], publisher="A", cooldown_seconds=0)
    pool_b = make_pool(admin, site, target="+18005550102", numbers=[NUMBER_B, NUMBER_B2],
                       publisher="B", cooldown_seconds=0, qualification={"unique_days": 30})
    lease_at(app, pool_a, A_VISIT["session_id"], T0, **{
        k: v for k, v in A_VISIT.items() if k != "session_id"})
    lease_at(app, pool_b, "visit-of-publisher-b", T0 + DAY_MS, source="b-source")
    record(app)
    call_a = post_call(admin, "to-a", NUMBER_A, T0 + 5_000)
    assert call_a["attribution"]["session_id"] == A_VISIT["session_id"]
    call_b = post_call(admin, "to-b", NUMBER_B, T0 + DAY_MS + 5_000, duration=90,
                       status="completed")
    return {"site": site, "pool_a": pool_a, "pool_b": pool_b, "call_a": call_a,
            "call_b": call_b, "publisher_b": token_client(app, admin, "publisher", "B")}


def test_publisher_b_sees_nothing_of_publisher_as_visit_in_its_call(two_publishers):
    """Reproduces F1: B's call used to carry A's campaign, keyword, gclid and session id."""
    world = two_publishers
    b = world["publisher_b"]
    detail = b.get(f"/v1/calls/{world['call_b']['id']}")
    assert detail.status_code == 200
    assert detail.json["caller"]["repeat"] is False
    assert detail.json["caller"]["first_touch"] is None
    assert_nothing_of_a(detail.text)
    listed = b.get("/v1/calls")
    assert [c["id"] for c in listed.json["calls"]] == [world["call_b"]["id"]]
    assert_nothing_of_a(listed.text)
    assert listed.json["calls"][0]["caller"]["first_touch"] is None


def test_a_call_is_first_time_for_its_publisher_and_qualifies_under_unique_days(
        app, admin, two_publishers):
    world = two_publishers
    call_b = world["call_b"]
    assert call_b["qualified"] is True, call_b["qualification_failures"]
    row = stored(app, call_b["id"])
    assert (row.repeat_caller, row.first_call_id, row.first_touch) == (False, None, {})
    # A disposition re-evaluates the rules: A's call still does not count.
    again = admin.post(f"/v1/calls/{call_b['id']}/disposition", json={"disposition": "lead"})
    assert again.status_code == 200, again.json
    assert again.json["qualified"] is True, again.json["qualification_failures"]
    # The report's first-time callers count B's caller as new to B.
    report = world["publisher_b"].get("/v1/reports/attribution", query_string={
        "start": "2026-05-01", "end": "2026-05-31", "group_by": "publisher",
        "metrics": "calls,first_time_callers"})
    assert report.status_code == 200, report.json
    [b_row] = report.json["rows"]
    assert b_row["metrics"]["calls"] == 1 and b_row["metrics"]["first_time_callers"] == 1


def test_a_second_call_to_the_same_publisher_is_a_repeat_with_its_own_first_touch(
        admin, two_publishers):
    world = two_publishers
    second = post_call(admin, "to-b-again", NUMBER_B2, T0 + 2 * DAY_MS, duration=90,
                       status="completed")
    caller = world["publisher_b"].get(f"/v1/calls/{second['id']}").json["caller"]
    assert caller["repeat"] is True
    assert caller["first_touch"]["call_id"] == world["call_b"]["id"]
    assert caller["first_touch"]["session_id"] == "visit-of-publisher-b"
    assert caller["first_touch"]["source"] == "b-source"
    assert second["qualification_failures"] == ["repeat_caller"]  # B's own rule still applies


def test_the_dashboard_call_page_shows_publisher_b_nothing_of_a(app, admin, two_publishers):
    world = two_publishers
    token = admin.post("/v1/tokens", json={"name": "b", "scope": "publisher",
                                           "publisher": "B"}).json["token"]
    page = dashboard_login(app, token).get(f"/dashboard/calls/{world['call_b']['id']}")
    assert page.status_code == 200
    assert "first-time caller" in page.text
    assert_nothing_of_a(page.text)


def test_a_first_touch_stored_across_publishers_before_the_fix_is_not_shown(
        app, admin, two_publishers):
    """Rows written by the old code keep A's first touch in the database: never shown."""
    world = two_publishers
    with app.app_context():
        row = db.session.get(Call, world["call_b"]["id"])
        row.repeat_caller, row.first_call_id = True, world["call_a"]["id"]
        row.first_touch = {"session_id": A_VISIT["session_id"], "gclid": A_VISIT["gclid"],
                           "campaign": A_VISIT["utm_campaign"], "call_id": world["call_a"]["id"]}
        db.session.commit()
    b = world["publisher_b"]
    detail = b.get(f"/v1/calls/{world['call_b']['id']}")
    assert detail.json["caller"]["first_touch"] is None
    assert_nothing_of_a(detail.text)
    assert_nothing_of_a(b.get("/v1/calls").text)
    token = admin.post("/v1/tokens", json={"name": "b", "scope": "publisher",
                                           "publisher": "B"}).json["token"]
    page = dashboard_login(app, token).get(f"/dashboard/calls/{world['call_b']['id']}")
    assert page.status_code == 200
    assert_nothing_of_a(page.text)
    assert f"/dashboard/calls/{world['call_a']['id']}\"" not in page.text


def test_a_callers_history_does_not_cross_sites(app, admin):
    site_1, site_2 = make_site(admin, name="One"), make_site(admin, name="Two")
    pool_1 = make_pool(admin, site_1, numbers=[NUMBER_A], cooldown_seconds=0)
    make_pool(admin, site_2, numbers=[NUMBER_B], cooldown_seconds=0,
              qualification={"unique_days": 30})
    lease_at(app, pool_1, "visit-on-site-one", T0, utm_campaign="site-one-campaign")
    record(app)
    post_call(admin, "one", NUMBER_A, T0 + 5_000)
    two = post_call(admin, "two", NUMBER_B, T0 + DAY_MS)
    assert two["caller"]["repeat"] is False and two["caller"]["first_touch"] is None
    assert two["qualified"] is True
    assert "site-one-campaign" not in json.dumps(two)


# -- F5: a number moved to another pool is matched within its pool only --------------------


def test_a_number_moved_to_another_pool_is_not_matched_to_the_old_pools_visit(app, admin):
    """Reproduces F5: the call used to be credited to site E's visit (session_expired)."""
    site_e, site_f = make_site(admin, name="E"), make_site(admin, name="F")
    pool_e = make_pool(admin, site_e, numbers=[NUMBER_A], cooldown_seconds=0)
    pool_b = make_pool(admin, site_f, numbers=[NUMBER_B], publisher="B", cooldown_seconds=0)
    started = now_ms() - 60_000
    lease_at(app, pool_e, "visit-on-site-e", started,
             landing_url="https://e.example/e-landing-page", utm_campaign="e-campaign")
    ended = now_ms()
    release_at(app, pool_e, "visit-on-site-e", ended)
    record(app)
    retired = admin.delete(f"/v1/pools/{pool_e['id']}/numbers/{NUMBER_A}")
    assert retired.status_code == 200 and retired.json["status"] == "retired", retired.json
    added = admin.post(f"/v1/pools/{pool_b['id']}/numbers", json={"numbers": [NUMBER_A]})
    assert added.status_code == 201, added.json
    # 16 s after E's lease ended, and after the number joined B's pool.
    call = post_call(admin, "moved", NUMBER_A, max(ended + 16_000, now_ms() + 1_000))
    assert call["attribution"]["method"] == "unattributed"
    assert call["attribution"]["session_id"] is None
    assert call["attribution"]["pool_id"] == pool_b["id"]
    row = stored(app, call["id"])
    assert (row.site_id, row.publisher) == (site_f["id"], "B")
    detail = token_client(app, admin, "publisher", "B").get(f"/v1/calls/{call['id']}")
    assert detail.status_code == 200
    for leaked in ("visit-on-site-e", "e-landing-page", "e-campaign"):
        assert leaked not in detail.text


def test_candidate_leases_come_from_the_pool_the_number_serves(app, admin):
    """Both pools leased the number: the call goes to the lease of the pool it serves now,
    even when the old pool's lease is the later one."""
    site_e, site_f = make_site(admin, name="E"), make_site(admin, name="F")
    pool_e = make_pool(admin, site_e, numbers=[NUMBER_A], cooldown_seconds=0)
    pool_b = make_pool(admin, site_f, numbers=[NUMBER_B], publisher="B", cooldown_seconds=0,
                       attribution_window_seconds=3600)
    lease_at(app, pool_e, "visit-on-site-e", now_ms() - 60_000, utm_campaign="e-campaign")
    release_at(app, pool_e, "visit-on-site-e", now_ms())
    record(app)
    admin.delete(f"/v1/pools/{pool_e['id']}/numbers/{NUMBER_A}")
    admin.post(f"/v1/pools/{pool_b['id']}/numbers", json={"numbers": [NUMBER_A]})
    # Pool B leased the number earlier in its (SQL) history than E's lease: an old row.
    with app.app_context():
        from pools.models import Lease

        start = now_ms() - 120_000
        db.session.add(Lease(pool_id=pool_b["id"], number=NUMBER_A, session_id="visit-on-b",
                             started_at_ms=start, last_renewed_at_ms=start,
                             expires_at_ms=start + 30_000, ended_at_ms=start + 30_000,
                             end_reason="released"))
        db.session.commit()
    call = post_call(admin, "moved", NUMBER_A, now_ms() + 1_000)
    assert call["attribution"]["pool_id"] == pool_b["id"]
    assert call["attribution"]["session_id"] != "visit-on-site-e"
    with app.app_context():
        leases = db.session.get(Call, call["id"]).explanation["leases"]
    assert [lease["session_id"] for lease in leases] == ["visit-on-b"]


def test_the_candidate_lease_query_reads_an_index(app):
    """The per-call lease lookup (also the matching benchmark's path) is served by an index
    on the pool, the number and the start, never by a scan of the lease table."""
    from attribution.matching import candidate_leases_query

    with app.app_context():
        engine = db.engine
        sql = str(candidate_leases_query(7, NUMBER_A, T0).compile(
            dialect=engine.dialect, compile_kwargs={"literal_binds": True}))
        with engine.connect() as connection:
            if engine.dialect.name == "sqlite":
                plan = " ".join(str(row) for row in connection.exec_driver_sql(
                    "EXPLAIN QUERY PLAN " + sql))
            else:
                # An empty table is cheaper to scan: ask whether an index can serve it.
                connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
                plan = " ".join(row[0] for row in connection.exec_driver_sql("EXPLAIN " + sql))
    assert ("SEARCH leases USING" in plan) if engine.dialect.name == "sqlite" \
        else ("Index" in plan and "Seq Scan" not in plan), plan
