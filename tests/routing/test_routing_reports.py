"""Reports by buyer and target: routed calls in SQL with their routing logs, against
hand-computed figures; offers counted under the buyer they rang; tenancy of the routing."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from attribution import reports
from attribution.models import Call
from attribution.zones import local_day
from dni_server.extensions import db
from factories import AdminClient, make_pool, make_site, numbers
from routing import reports as routing_reports
from routing.models import CallRouting

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
