"""Reports by buyer and target: routed calls in SQL with their routing logs, against
hand-computed figures; offers counted under the buyer they rang; tenancy of the routing."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from sqlalchemy import select

from attribution import reports
from attribution.models import Call
from attribution.zones import local_day
from dni_server.extensions import db
from factories import AdminClient, make_pool, make_site, numbers
from pools.models import Site
from routing import reports as routing_reports
from routing.models import CallRouting, CallRoutingOffer

ZONE = "America/New_York"
ROUTING_METRICS = ("calls,connected_calls,converted_calls,buyer_revenue,revenue,payout,margin,"
                   "offers,answered_offers,answer_rate,avg_ring_seconds")


def buyer_body(name: str, number: str, **fields) -> dict:
    return {"name": name, "timezone": "America/Chicago", "targets": [{"number": number}],
            "conversion": {"min_duration": 60, "from": "answer"}, "revenue": "45"} | fields


def create(admin, path: str, body: dict) -> dict:
    response = admin.post(path, json=body)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def offer(buyer: dict, outcome: str, ring: float | None) -> dict:
    return {"buyer": buyer["id"], "target": buyer["targets"][0]["number"],
            "at": "2026-05-04T14:00:00+00:00", "outcome": outcome, "ring_seconds": ring}


@pytest.fixture
def data(app, admin):
    """Six calls in May on a New York site: four routed on the network's plan (one of them
    a publisher's), one on the publisher's own plan, one not routed."""
    site = make_site(admin, timezone=ZONE)
    pool = make_pool(admin, site, numbers=numbers(2))
    a = create(admin, "/v1/buyers", buyer_body("A", "+12125550101"))
    b = create(admin, "/v1/buyers", buyer_body("B", "+12125550102"))
    c = create(admin, "/v1/buyers", buyer_body("C", "+12125550103", publisher="Acme"))
    d = create(admin, "/v1/buyers", buyer_body("D", "+12125550104"))
    network = create(admin, "/v1/routing-plans", {
        "name": "Network", "tiers": [{"buyers": [a["id"], b["id"], d["id"]]}],
        "fallback": {"message": "Nobody is free."}})
    acme = create(admin, "/v1/routing-plans", {
        "name": "Acme", "publisher": "Acme", "tiers": [{"buyers": [c["id"]]}],
        "fallback": {"message": "Nobody is free."}})
    calls = [
        # id, source, revenue, payout, publisher, plan, offers, winner, converted, earned
        ("c1", "google", "0", "25", None, network,
         [offer(a, "no_answer", 30), offer(b, "accepted", 5)], b, True, "45"),
        ("c2", "google", "0", "0", None, network, [offer(a, "answered", 4)], a, False, "0"),
        ("c3", "google", "0", "0", None, network,
         [offer(a, "busy", 1), offer(d, "no_answer", 20)], None, False, "0"),
        ("c4", "radio", "100", "0", None, None, None, None, False, "0"),
        ("c5", "bing", "0", "10", "Acme", acme, [offer(c, "accepted", 6)], c, True, "30"),
        ("c6", "bing", "0", "12", "Acme", network, [offer(a, "accepted", 3)], a, True, "50"),
    ]
    with app.app_context():
        for i, (cid, source, revenue, payout, publisher, plan, offers, winner, converted,
                earned) in enumerate(calls):
            moment = dt.datetime(2026, 5, 4 + i, 15, tzinfo=dt.UTC)
            db.session.add(Call(
                provider="twilio", provider_call_id=cid, from_number=f"+1415555010{i}",
                from_valid=True, to_number=numbers(1)[0], started_at=moment,
                local_day=local_day(moment, ZONE), answered_at=moment, status="completed",
                duration=90, qualified=True, revenue=Decimal(revenue), payout=Decimal(payout),
                source=source, medium="cpc", site_id=site["id"], pool_id=pool["id"],
                publisher=publisher, method="session", explanation={}))
            if plan is not None:
                db.session.add(CallRouting(
                    provider="twilio", provider_call_id=cid, plan_id=plan["id"],
                    ivr={"zip": None, "tags": {}, "pressed": None}, offers=offers, skipped=[],
                    buyer_id=winner and winner["id"],
                    target=winner and winner["targets"][0]["number"], converted=converted,
                    revenue=Decimal(earned), outcome="completed" if winner else "fallback"))
        db.session.commit()
    return {"a": a, "b": b, "c": c, "d": d}


def report(client, **params):
    params = {"start": "2026-05-01", "end": "2026-05-31", "metrics": ROUTING_METRICS} | params
    response = client.get("/v1/reports/attribution", query_string=params)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def by_dims(result) -> dict:
    return {tuple(r["dimensions"].values()): r["metrics"] for r in result["rows"]}


def test_by_buyer_counts_calls_under_the_winner_and_offers_under_the_buyer_rung(admin, data):
    a, b, c, d = (data[k]["id"] for k in "abcd")
    result = report(admin, group_by="buyer")
    rows = by_dims(result)
    assert rows[(a,)] == {
        "calls": 2, "connected_calls": 2, "converted_calls": 1, "buyer_revenue": "50.00",
        "revenue": "0.00", "payout": "12.00", "margin": "38.00", "offers": 4,
        "answered_offers": 2, "answer_rate": 0.5, "avg_ring_seconds": 9.5}
    assert rows[(b,)] == {
        "calls": 1, "connected_calls": 1, "converted_calls": 1, "buyer_revenue": "45.00",
        "revenue": "0.00", "payout": "25.00", "margin": "20.00", "offers": 1,
        "answered_offers": 1, "answer_rate": 1.0, "avg_ring_seconds": 5.0}
    assert rows[(c,)]["buyer_revenue"] == "30.00" and rows[(c,)]["margin"] == "20.00"
    # D answered nothing and took no call: a row all the same, with its offer.
    assert rows[(d,)] == {
        "calls": 0, "connected_calls": 0, "converted_calls": 0, "buyer_revenue": "0.00",
        "revenue": "0.00", "payout": "0.00", "margin": "0.00", "offers": 1,
        "answered_offers": 0, "answer_rate": 0.0, "avg_ring_seconds": 20.0}
    # No buyer: the call that went to the fallback, and the one never routed.
    assert rows[(None,)] == {
        "calls": 2, "connected_calls": 0, "converted_calls": 0, "buyer_revenue": "0.00",
        "revenue": "100.00", "payout": "0.00", "margin": "100.00", "offers": 0,
        "answered_offers": 0, "answer_rate": None, "avg_ring_seconds": None}
    assert [r["metrics"]["calls"] for r in result["rows"]] == [2, 2, 1, 1, 0]
    assert result["totals"] == {
        "calls": 6, "connected_calls": 4, "converted_calls": 3, "buyer_revenue": "125.00",
        "revenue": "100.00", "payout": "47.00", "margin": "178.00", "offers": 7,
        "answered_offers": 4, "answer_rate": 0.5714, "avg_ring_seconds": 9.9}


def test_totals_stay_whole_a_page_at_a_time(admin, data):
    whole = report(admin, group_by="buyer")
    first = report(admin, group_by="buyer", limit=2)
    second = report(admin, group_by="buyer", limit=2, offset=2)
    third = report(admin, group_by="buyer", limit=2, offset=4)
    assert first["totals"] == second["totals"] == third["totals"] == whole["totals"]
    assert first["rows"] + second["rows"] + third["rows"] == whole["rows"]
    assert third["page"]["next_offset"] is None


def test_by_buyer_and_target(admin, data):
    a, b = data["a"], data["b"]
    rows = by_dims(report(admin, group_by="buyer,target",
                          metrics="connected_calls,buyer_revenue,answer_rate"))
    assert rows[(b["id"], "+12125550102")] == {"connected_calls": 1, "buyer_revenue": "45.00",
                                               "answer_rate": 1.0}
    assert rows[(a["id"], "+12125550101")]["answer_rate"] == 0.5
    rows = by_dims(report(admin, group_by="target", metrics="calls,offers"))
    assert rows[("+12125550104",)] == {"calls": 0, "offers": 1}


def test_attribution_dimensions_with_routing_metrics(admin, data):
    rows = by_dims(report(admin, group_by="source",
                          metrics="calls,offers,answer_rate,margin,sessions"))
    assert rows == {
        ("google",): {"calls": 3, "offers": 5, "answer_rate": 0.4, "margin": "20.00",
                      "sessions": 0},
        ("bing",): {"calls": 2, "offers": 2, "answer_rate": 1.0, "margin": "58.00",
                    "sessions": 0},
        ("radio",): {"calls": 1, "offers": 0, "answer_rate": None, "margin": "100.00",
                     "sessions": 0}}


def test_a_publisher_sees_only_its_own_plans_routing(app, admin, data):
    token = create(admin, "/v1/tokens", {"name": "acme", "scope": "publisher",
                                         "publisher": "Acme"})["token"]
    acme = AdminClient(app.test_client(), token)
    result = report(acme, group_by="buyer")
    rows = by_dims(result)
    # c6 went to the network's buyer A on the network's plan: the call is Acme's, the
    # buyer and its revenue are not.
    assert set(rows) == {(data["c"]["id"],), (None,)}
    assert rows[(data["c"]["id"],)]["buyer_revenue"] == "30.00"
    assert rows[(None,)] == {
        "calls": 1, "connected_calls": 0, "converted_calls": 0, "buyer_revenue": "0.00",
        "revenue": "0.00", "payout": "12.00", "margin": "-12.00", "offers": 0,
        "answered_offers": 0, "answer_rate": None, "avg_ring_seconds": None}
    assert result["totals"]["buyer_revenue"] == "30.00"


def test_unknown_names_are_refused_with_the_routing_ones_listed(admin, data):
    response = admin.get("/v1/reports/attribution", query_string={
        "group_by": "buyer", "metrics": "calls,buyer_profit"})
    assert response.status_code == 422
    assert "buyer_revenue" in response.get_json()["error"]["fields"]["metrics"]


def test_a_report_without_routing_joins_nothing(app, admin):
    """Where no call was ever routed, the default report is the attribution one: no join."""
    with app.app_context():
        ext = routing_reports.extension(db.session)
        query = reports.ReportQuery(start=dt.date(2026, 5, 1), end=dt.date(2026, 5, 31),
                                    extension=ext)
        sql = str(reports.statements(query, "sqlite")["rows"])
        assert "call_routing" not in sql
        query.group_by = ["buyer"]
        rows = reports.statements(query, "sqlite")["rows"]
        assert "call_routing" in str(rows)
        if db.session.get_bind().dialect.name == "sqlite":
            # Joined, each call's row is read in day order, not in a grouping's.
            assert any("ix_calls_report_day" in step for step in reports.plan(db.session, rows))


# -- the columns the report reads, kept with each log (migration 0012) -------------------------


def test_a_routing_log_carries_its_calls_site_day_and_publisher_and_its_offers(app, data):
    with app.app_context():
        rows = {r.provider_call_id: r for r in db.session.scalars(select(CallRouting))}
        calls = {c.provider_call_id: c for c in db.session.scalars(select(Call))}
        for cid, row in rows.items():
            call = calls[cid]
            assert (row.site_id, row.local_day, row.publisher) == (
                call.site_id, call.local_day, call.publisher)
            offers = db.session.scalars(select(CallRoutingOffer).where(
                CallRoutingOffer.routing_id == row.id).order_by(CallRoutingOffer.id)).all()
            assert [(o.buyer_id, o.target, o.outcome, o.ring_seconds) for o in offers] == [
                (o["buyer"], o["target"], o["outcome"], o["ring_seconds"]) for o in row.offers]
        # c5 is on a New York site: 15:00 UTC on 8 May is the 8th there; Acme's call.
        assert (rows["c5"].local_day, rows["c5"].publisher) == (dt.date(2026, 5, 8), "Acme")


def test_a_log_written_before_its_call_is_filled_at_its_next_write(app, data):
    """SQL had no call yet when the log was first written (its inbox was replayed later):
    the report columns stay empty until the log is written again; its offers are rewritten
    only when they change."""
    with app.app_context():
        plan = db.session.scalar(select(CallRouting.plan_id).where(
            CallRouting.provider_call_id == "c1"))
        a = data["a"]
        row = CallRouting(provider="twilio", provider_call_id="late", plan_id=plan,
                          offers=[offer(a, "no_answer", 30)])
        db.session.add(row)
        db.session.commit()
        assert (row.site_id, row.local_day, row.publisher) == (None, None, None)
        site = db.session.scalar(select(Call.site_id).where(Call.provider_call_id == "c1"))
        moment = dt.datetime(2026, 5, 20, 3, tzinfo=dt.UTC)  # the 19th in New York
        db.session.add(Call(
            provider="twilio", provider_call_id="late", from_number="+14155550199",
            from_valid=True, to_number=numbers(1)[0], started_at=moment,
            local_day=local_day(moment, ZONE), status="completed", site_id=site,
            publisher="Acme", method="session", explanation={}))
        db.session.flush()
        row.outcome = "fallback"
        db.session.commit()
        assert (row.site_id, row.local_day, row.publisher) == (
            site, dt.date(2026, 5, 19), "Acme")
        first = db.session.scalars(select(CallRoutingOffer.id).where(
            CallRoutingOffer.routing_id == row.id)).all()
        row.offers = row.offers + [offer(data["b"], "accepted", 5)]
        db.session.commit()
        now = db.session.scalars(select(CallRoutingOffer).where(
            CallRoutingOffer.routing_id == row.id)).all()
        assert len(first) == 1 and [o.outcome for o in now] == ["no_answer", "accepted"]


def test_offers_alone_or_joined_to_the_calls_count_the_same(app, admin, data):
    """The offers are counted on the routing logs alone when the filters allow it (site,
    publisher, the days), and through the calls otherwise: the same numbers."""
    with app.app_context():
        key = db.session.scalar(select(Site.key).join(Call, Call.site_id == Site.id).limit(1))
    alone = report(admin, group_by="buyer", site=key)
    joined = report(admin, group_by="buyer", site=key, qualified="true")  # every call is
    assert alone == {**joined, "query": alone["query"]}
    with app.app_context():
        query = reports.ReportQuery(start=dt.date(2026, 5, 1), end=dt.date(2026, 5, 31),
                                    group_by=["buyer"], metrics=["offers"],
                                    extension=routing_reports.extension(db.session))
        side = str(reports.statements(query, "sqlite")["side"])
        assert "call_routing_offers" in side and "FROM calls" not in side
        query.filters = {"qualified": True}
        assert "calls" in str(reports.statements(query, "sqlite")["side"]).split("FROM", 1)[1]


def test_migration_0012_backfills_and_comes_back_down(tmp_path):
    """Logs written before 0012: downgraded to 0011 (columns and offer rows gone), upgraded
    again, the call's site, day and publisher and the offers come back from the calls and
    the JSON."""
    import os
    import uuid

    import sqlalchemy as sa
    from flask import Flask
    from flask_migrate import Migrate, downgrade, upgrade

    from dni_server import MIGRATIONS
    from pools.models import Site as SiteRow

    base = os.environ.get("DATABASE_URL")
    admin_engine, name = None, None
    if base:
        base = base.replace("postgresql://", "postgresql+psycopg://", 1)
        name = f"dni_test_0012_{uuid.uuid4().hex[:8]}"
        admin_engine = sa.create_engine(base, isolation_level="AUTOCOMMIT")
        with admin_engine.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        url = base.rsplit("/", 1)[0] + "/" + name
    else:
        url = "sqlite:///" + str(tmp_path / "m.sqlite3")
    app = Flask("migrate_0012")
    app.config["SQLALCHEMY_DATABASE_URI"] = url
    engine = sa.create_engine(url)
    try:
        db.init_app(app)
        Migrate(app, db)
        with app.app_context():
            upgrade(directory=MIGRATIONS)
        with sa.orm.Session(engine) as session:
            site = SiteRow(key="site_m", name="M", domains=[], keyword_params=[],
                           timezone=ZONE)
            session.add(site)
            session.flush()
            moment = dt.datetime(2026, 5, 20, 3, tzinfo=dt.UTC)
            session.add(Call(provider="twilio", provider_call_id="m1",
                             from_number="+14155550100", from_valid=True,
                             to_number="+16505550101", started_at=moment,
                             local_day=local_day(moment, ZONE), status="completed",
                             site_id=site.id, publisher="Acme", method="session",
                             explanation={}))
            offers = [{"buyer": 7, "target": "+12125550101", "outcome": "busy",
                       "ring_seconds": 1.0, "at": moment.isoformat()},
                      {"buyer": 8, "target": "+12125550102", "outcome": "answered",
                       "ring_seconds": 4.5, "at": moment.isoformat()}]
            session.add(CallRouting(provider="twilio", provider_call_id="m1", offers=offers))
            session.commit()
            site_id = site.id
        with app.app_context():
            downgrade(directory=MIGRATIONS, revision="0011")
        columns = {c["name"] for c in sa.inspect(engine).get_columns("call_routing")}
        assert "local_day" not in columns
        assert "call_routing_offers" not in sa.inspect(engine).get_table_names()
        with app.app_context():
            upgrade(directory=MIGRATIONS, revision="0012")
        with engine.connect() as conn:
            row = conn.execute(sa.text(
                "SELECT id, site_id, local_day, publisher FROM call_routing")).one()
            got = conn.execute(sa.text(
                "SELECT buyer_id, target, outcome, ring_seconds FROM call_routing_offers "
                "WHERE routing_id = :id ORDER BY buyer_id"), {"id": row.id}).all()
        assert (row.site_id, str(row.local_day), row.publisher) == (site_id, "2026-05-19",
                                                                     "Acme")
        assert [tuple(r) for r in got] == [(7, "+12125550101", "busy", 1.0),
                                           (8, "+12125550102", "answered", 4.5)]
        with app.app_context():
            upgrade(directory=MIGRATIONS)
    finally:
        engine.dispose()
        if admin_engine is not None:
            with admin_engine.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin_engine.dispose()
