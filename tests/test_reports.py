"""Attribution reports against a fixed data set with hand-computed expectations."""

from __future__ import annotations

import csv
import datetime as dt
import io
from decimal import Decimal

import pytest
import sqlalchemy as sa

from attribution.models import Call, Visit
from attribution.zones import local_day
from dni_server.extensions import db
from factories import make_pool, make_site, numbers

ZONE = "America/New_York"


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


@pytest.fixture
def data(app, admin):
    """Six calls and seven visits on a New York site; one call and visit fall in June."""
    site = make_site(admin, timezone=ZONE)
    pool = make_pool(admin, site, numbers=numbers(2))
    rows = [
        # id, source, medium, started (UTC), qualified, duration, answered, revenue, payout,
        # caller, repeat, extra
        ("c1", "google", "cpc", "2026-05-04T14:00:00", True, 120, True, "40", "25", "+14155550101",
         False, {"keyword": "plumber", "device_type": "mobile", "pool_id": pool["id"],
                 "campaign": "spring", "publisher": "Acme"}),
        # 23:30 on May 4 in New York, though May 5 in UTC.
        ("c2", "google", "cpc", "2026-05-05T03:30:00", False, 20, True, "0", "0", "+14155550102",
         False, {"keyword": "drain", "device_type": "desktop", "pool_id": pool["id"],
                 "campaign": "=HYPERLINK(\"http://evil\")"}),
        ("c3", "bing", "cpc", "2026-05-05T04:30:00", True, 90, True, "40", "25", "+14155550101",
         True, {"pool_id": pool["id"], "campaign": 'say "hi", then, go'}),
        ("c4", "radio", "offline", "2026-05-10T15:00:00", True, 300, True, "100", "0",
         "+14155550103", False, {"label": "WXYZ 7am", "caller_region": "CA"}),
        ("c5", "(direct)", "(none)", "2026-05-31T12:00:00", False, None, False, "0", "0",
         "+14155550104", False, {}),
        ("c6", "google", "cpc", "2026-06-01T05:00:00", True, 80, True, "40", "25",
         "+14155550105", False, {}),
    ]
    with app.app_context():
        for cid, source, medium, started, qualified, duration, answered, revenue, payout, \
                caller, repeat, extra in rows:
            moment = at(started)
            db.session.add(Call(
                provider="api", provider_call_id=cid, from_number=caller, from_valid=True,
                to_number=numbers(1)[0], started_at=moment, local_day=local_day(moment, ZONE),
                answered_at=moment if answered else None, status="completed",
                duration=duration, qualified=qualified, revenue=Decimal(revenue),
                payout=Decimal(payout), repeat_caller=repeat, source=source, medium=medium,
                site_id=site["id"], method="session", explanation={}, **extra))
        for i, (source, medium, created) in enumerate([
                ("google", "cpc", "2026-05-04T13:00:00"), ("google", "cpc", "2026-05-04T15:00:00"),
                ("google", "cpc", "2026-05-05T03:00:00"), ("bing", "cpc", "2026-05-05T04:00:00"),
                ("(direct)", "(none)", "2026-05-20T10:00:00"),
                ("(direct)", "(none)", "2026-05-31T10:00:00"),
                ("google", "cpc", "2026-06-01T04:30:00")]):
            moment = at(created)
            db.session.add(Visit(session_id=f"s{i}", site_id=site["id"], visitor_id=f"v{i}",
                                 created_at=moment, local_day=local_day(moment, ZONE),
                                 source=source, medium=medium))
        db.session.commit()
    return {"site": site, "pool": pool}


def report(admin, **params):
    params = {"start": "2026-05-01", "end": "2026-05-31"} | params
    response = admin.get("/v1/reports/attribution", query_string=params)
    assert response.status_code == 200, response.json
    return response.json


def by_dims(result):
    return {tuple(r["dimensions"].values()): r["metrics"] for r in result["rows"]}


def test_source_medium_report(admin, data):
    result = report(admin)
    assert [tuple(r["dimensions"].values()) for r in result["rows"]] == [
        ("google", "cpc"), ("(direct)", "(none)"), ("bing", "cpc"), ("radio", "offline")]
    rows = by_dims(result)
    assert rows[("google", "cpc")] == {
        "calls": 2, "qualified_calls": 1, "unique_callers": 2, "first_time_callers": 2,
        "answered_calls": 2, "total_talk_time": 140, "revenue": "40.00", "payout": "25.00",
        "average_talk_time": 70.0, "calls_per_session": 0.6667, "margin": "15.00",
        "qualification_rate": 0.5, "sessions": 3}
    assert rows[("bing", "cpc")]["first_time_callers"] == 0
    assert rows[("radio", "offline")]["sessions"] == 0
    assert rows[("radio", "offline")]["calls_per_session"] is None
    assert rows[("radio", "offline")]["margin"] == "100.00"
    assert rows[("(direct)", "(none)")]["average_talk_time"] is None
    assert rows[("(direct)", "(none)")]["answered_calls"] == 0
    assert result["totals"] == {
        "calls": 5, "qualified_calls": 3, "unique_callers": 4, "first_time_callers": 4,
        "answered_calls": 4, "total_talk_time": 530, "revenue": "180.00", "payout": "50.00",
        "average_talk_time": 132.5, "calls_per_session": 0.8333, "margin": "130.00",
        "qualification_rate": 0.6, "sessions": 6}


def test_days_are_the_sites_local_days(admin, data):
    rows = by_dims(report(admin, group_by="day", metrics="calls,sessions"))
    assert rows == {("2026-05-04",): {"calls": 2, "sessions": 3},
                    ("2026-05-05",): {"calls": 1, "sessions": 1},
                    ("2026-05-10",): {"calls": 1, "sessions": 0},
                    ("2026-05-31",): {"calls": 1, "sessions": 1}}
    # The June call is 01:00 on June 1 in New York: in a June report, not May's.
    june = report(admin, start="2026-06-01", end="2026-06-01", metrics="calls")
    assert june["totals"] == {"calls": 1}
    may_4 = report(admin, start="2026-05-04", end="2026-05-04", metrics="calls")
    assert may_4["totals"] == {"calls": 2}  # 23:30 local on May 4 counts on May 4


def test_weeks_start_on_monday_and_months(admin, data):
    weeks = by_dims(report(admin, group_by="week", metrics="calls"))
    assert weeks == {("2026-05-04",): {"calls": 4}, ("2026-05-25",): {"calls": 1}}
    months = by_dims(report(admin, start="2026-05-01", end="2026-06-30", group_by="month",
                            metrics="calls,revenue"))
    assert months == {("2026-05",): {"calls": 5, "revenue": "180.00"},
                      ("2026-06",): {"calls": 1, "revenue": "40.00"}}


@pytest.mark.parametrize("group_by, expected", [
    ("keyword", {("plumber",): 1, ("drain",): 1, (None,): 3}),
    ("device_type", {("mobile",): 1, ("desktop",): 1, (None,): 3}),
    ("label", {("WXYZ 7am",): 1, (None,): 4}),
    ("publisher", {("Acme",): 1, (None,): 4}),
    ("caller_region", {("CA",): 1, (None,): 4}),
    ("source,campaign", {("google", "spring"): 1, ("google", '=HYPERLINK("http://evil")'): 1,
                         ("bing", 'say "hi", then, go'): 1, ("radio", None): 1,
                         ("(direct)", None): 1}),
])
def test_other_groupings(admin, data, group_by, expected):
    rows = by_dims(report(admin, group_by=group_by, metrics="calls"))
    assert {k: v["calls"] for k, v in rows.items()} == expected


def test_a_dimension_visits_lack_has_no_session_counts(admin, data):
    rows = report(admin, group_by="caller_region")["rows"]
    assert all(r["metrics"]["sessions"] is None for r in rows)


@pytest.mark.parametrize("params, calls", [
    ({"qualified": "true"}, 3),
    ({"qualified": "false"}, 2),
    ({"caller": "repeat"}, 1),
    ({"caller": "first_time"}, 4),
    ({"publisher": "Acme"}, 1),
])
def test_filters(admin, data, params, calls):
    assert report(admin, metrics="calls", **params)["totals"]["calls"] == calls


def test_site_and_pool_filters(admin, data):
    assert report(admin, metrics="calls", site=data["site"]["key"])["totals"]["calls"] == 5
    assert report(admin, metrics="calls", pool=str(data["pool"]["id"]))["totals"]["calls"] == 3
    other = make_site(admin, name="Other")
    assert report(admin, metrics="calls", site=other["key"])["totals"]["calls"] == 0


@pytest.mark.parametrize("params, field", [
    ({"group_by": "colour"}, "group_by"),
    ({"metrics": "happiness"}, "metrics"),
    ({"start": "May 1"}, "start"),
    ({"start": "2026-06-01", "end": "2026-05-01"}, "end"),
    ({"caller": "sometimes"}, "caller"),
    ({"qualified": "maybe"}, "qualified"),
    ({"format": "xls"}, "format"),
    ({"pool": "x"}, "pool"),
])
def test_bad_report_parameters_are_422(admin, data, params, field):
    response = admin.get("/v1/reports/attribution",
                         query_string={"start": "2026-05-01", "end": "2026-05-31"} | params)
    assert response.status_code == 422
    assert field in response.json["error"]["fields"]


def test_reports_need_the_token(client):
    assert client.get("/v1/reports/attribution").status_code == 401


def test_csv_export_is_quoted_and_neutralises_formulas(admin, data):
    response = admin.get("/v1/reports/attribution", query_string={
        "start": "2026-05-01", "end": "2026-05-31", "group_by": "source,campaign",
        "metrics": "calls,revenue,margin", "format": "csv"})
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert 'filename="attribution-2026-05-01-2026-05-31.csv"' in \
        response.headers["Content-Disposition"]
    text = response.get_data(as_text=True)
    assert text.startswith("\ufeff")
    rows = list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))
    assert rows[0] == ["source", "campaign", "calls", "revenue", "margin"]
    assert ["google", "'=HYPERLINK(\"http://evil\")", "1", "0.00", "0.00"] in rows
    assert ["bing", 'say "hi", then, go', "1", "40.00", "15.00"] in rows
    assert rows[-1] == ["Total", "", "5", "180.00", "130.00"]
    assert '"say ""hi"", then, go"' in text  # quoted the way spreadsheets expect


def test_csv_safe_cells():
    from attribution.reports import csv_safe

    for raw in ("=1+1", "+1 800 555", "-2", "@SUM(A1)", "\tx", "\rx"):
        assert csv_safe(raw).startswith("'")
    assert csv_safe("google") == "google" and csv_safe(None) == ""


def test_only_the_metrics_asked_for_are_computed():
    from attribution.reports import ReportQuery, statements

    may = {"start": dt.date(2026, 5, 1), "end": dt.date(2026, 5, 31)}
    query = ReportQuery(**may, metrics=["margin"])
    assert query.sql_metrics == ["calls", "revenue", "payout"]
    assert set(statements(query, "sqlite")) == {"rows"}  # no unique callers, no sessions
    query = ReportQuery(**may, metrics=["calls_per_session", "unique_callers"])
    assert query.sql_metrics == ["calls", "unique_callers"]
    assert set(statements(query, "postgresql")) == {"rows", "callers", "sessions"}
    query = ReportQuery(**may, group_by=["caller_region"], metrics=["sessions"])
    assert set(statements(query, "sqlite")) == {"rows"}  # visits have no caller region


def test_a_report_without_grouping_is_its_totals(app, data):
    from attribution.reports import ReportQuery, run

    with app.app_context():
        result = run(db.session, ReportQuery(start=dt.date(2026, 5, 1), end=dt.date(2026, 5, 31),
                                             group_by=[]))
    assert result["rows"] == [{"dimensions": {}, "metrics": result["totals"]}]
    assert result["totals"]["calls"] == 5 and result["totals"]["unique_callers"] == 4
    assert result["totals"]["sessions"] == 6 and result["totals"]["revenue"] == "180.00"


@pytest.mark.parametrize("group_by, calls_index, visits_index", [
    (["source", "medium"], "ix_calls_report_source", "ix_visits_report_source"),
    (["day"], "ix_calls_report_day", "ix_visits_report_day"),
])
def test_report_queries_read_only_the_report_indexes(app, data, group_by, calls_index,
                                                     visits_index):
    """Every statement of a whole-year report is answered from a covering report index.

    SQLite's choice is fixed by the query's shape (it has no statistics here), so the exact
    index is checked. PostgreSQL prefers a sequential scan of six rows, so sequential and
    bitmap scans are switched off: what remains must be an index-only scan of a report
    index, which shows the index covers every column the statement reads.
    """
    from attribution.reports import ReportQuery, plan, statements

    query = ReportQuery(start=dt.date(2025, 6, 1), end=dt.date(2026, 5, 31), group_by=group_by)
    with app.app_context():
        dialect = db.engine.dialect.name
        if dialect == "postgresql":
            db.session.execute(sa.text("SET LOCAL enable_seqscan = off"))
            db.session.execute(sa.text("SET LOCAL enable_bitmapscan = off"))
        plans = {name: "\n".join(plan(db.session, stmt))
                 for name, stmt in statements(query, dialect).items()}
        db.session.rollback()
    assert set(plans) == {"rows", "callers", "sessions"}
    if dialect == "sqlite":
        assert f"COVERING INDEX {calls_index}" in plans["rows"], plans["rows"]
        assert "COVERING INDEX ix_calls_report_caller" in plans["callers"], plans["callers"]
        assert f"COVERING INDEX {visits_index}" in plans["sessions"], plans["sessions"]
    else:
        assert "Index Only Scan using ix_calls_report_" in plans["rows"], plans["rows"]
        assert "Index Only Scan using ix_calls_report_" in plans["callers"], plans["callers"]
        assert "Index Only Scan using ix_visits_" in plans["sessions"], plans["sessions"]
