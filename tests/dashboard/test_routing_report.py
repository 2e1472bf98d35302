"""The Report page with pay-per-call routing: buyer and target in its pickers, and the
routing metrics formatted as money, rates and seconds."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from dashboard_data import log_in

from attribution.models import Call
from attribution.zones import local_day
from dni_server.dashboard import filters
from dni_server.extensions import db
from factories import make_pool, make_site, numbers
from routing.models import CallRouting


def test_report_pickers_offer_buyer_and_target_and_group_by_them(dash_app, admin):
    buyer = admin.post("/v1/buyers", json={
        "name": "A", "timezone": "America/Chicago", "targets": [{"number": "+15125550101"}],
        "conversion": {"min_duration": 60}, "revenue": "45.00"}).get_json()
    plan = admin.post("/v1/routing-plans", json={
        "name": "Plan", "tiers": [{"buyers": [buyer["id"]]}],
        "fallback": {"message": "Nobody is free."}}).get_json()
    site = make_site(admin)
    pool = make_pool(admin, site, numbers=numbers(1))
    now = dt.datetime.now(dt.UTC)
    with dash_app.app_context():
        db.session.add(Call(provider="twilio", provider_call_id="CA-1", from_number="+15125550199",
                            from_valid=True, to_number=numbers(1)[0], started_at=now,
                            local_day=local_day(now, site["timezone"]),
                            status="completed", site_id=site["id"], pool_id=pool["id"],
                            method="unattributed", explanation={}))
        db.session.add(CallRouting(
            provider="twilio", provider_call_id="CA-1", plan_id=plan["id"], ivr={},
            offers=[{"buyer": buyer["id"], "target": "+15125550101", "at": now.isoformat(),
                     "outcome": "answered", "ring_seconds": 4.5}], skipped=[],
            buyer_id=buyer["id"], target="+15125550101", converted=True,
            revenue=Decimal("45.00"), outcome="completed"))
        db.session.commit()
    client = log_in(dash_app.test_client())
    day = local_day(now, site["timezone"]).isoformat()
    html = client.get("/dashboard/", query_string={"start": day, "end": day,
                                                   "group_by": "buyer", "then_by": "target"}).text
    assert '<option value="buyer" selected>' in html
    assert '<option value="target" selected>' in html
    assert "<th>buyer</th><th>target</th>" in html
    assert f"<td>{buyer['id']}</td><td>+15125550101</td>" in html


def test_routing_metrics_read_as_money_rates_and_seconds():
    assert filters.metric(Decimal("1234.5"), "buyer_revenue") == "1,234.50"
    assert filters.metric(0.6667, "answer_rate") == "66.7%"
    assert filters.metric(4.25, "avg_ring_seconds") == "4.2 s"
    assert filters.metric(None, "avg_ring_seconds") == "–"
    assert filters.metric(3, "converted_calls") == "3"
    assert filters.metric_label("buyer_revenue") == "Buyer revenue"
    assert filters.metric_label("answer_rate") == "Answer rate"
    assert filters.metric_label("avg_ring_seconds") == "Avg ring"
    # The rest is as before.
    assert filters.metric(0.5, "qualification_rate") == "50.0%"
    assert filters.metric(90, "average_talk_time") == "1:30"
