"""Calls listed and reported by what their recordings said: ``GET /v1/calls?keyword=&tag=``,
the report's ``talk_share`` dimension and its ``heard`` / ``tag`` filters, on a fixed set of
analysed calls with hand-computed answers (no audio: the analyses are written as the worker
writes them)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from attribution import reports
from attribution.models import Call
from attribution.zones import local_day
from dni_server.extensions import db
from factories import AdminClient, make_pool, make_site, numbers

ZONE = "UTC"


def analysed(caller: float | None, agent: float | None, words=(), tags=()) -> dict:
    return {"status": "ok", "talk_seconds": {"caller": caller, "agent": agent},
            "keywords": [{"word": w, "side": "caller", "at_seconds": 2.0 + n, "score": 0.7}
                         for n, w in enumerate(words)], "tags": list(tags)}


# call id, publisher, insight, qualified, revenue
CALLS = [
    ("k1", "Acme", analysed(30, 10, ["appointment"], ["booking"]), True, "40"),   # share 0.75
    ("k2", "Acme", analysed(5, 45, ["wrong number"], ["50%", 'say "hi"']), False, "0"),  # 0.1
    ("k3", "Other", analysed(20, 20, ["appointment", "price"], ["booking", "pricing"]),
     True, "40"),                                                                  # 0.5
    ("k4", "Other", analysed(None, None) | {"talk_seconds": {"caller": None, "agent": None,
                                                             "mixed": 30.0}}, False, "0"),
    ("k5", "Acme", None, False, "0"),                                              # not analysed
    ("k6", "Acme", analysed(0, 0), False, "0"),                                    # nobody spoke
    ("k7", "Acme", analysed(50, 0, ["appointments"]), True, "25"),                 # share 1.0
]


@pytest.fixture
def data(app, admin):
    site = make_site(admin, timezone=ZONE)
    pool = make_pool(admin, site, numbers=numbers(2))
    moment = dt.datetime(2026, 5, 4, 14, 0, tzinfo=dt.UTC)
    with app.app_context():
        for n, (cid, publisher, insight, qualified, revenue) in enumerate(CALLS):
            started = moment + dt.timedelta(minutes=n)
            db.session.add(Call(
                provider="api", provider_call_id=cid, from_number=f"+1415555010{n}",
                from_valid=True, to_number=numbers(1)[0], started_at=started,
                local_day=local_day(started, ZONE), status="completed", duration=60,
                answered_at=started, qualified=qualified, revenue=Decimal(revenue),
                payout=Decimal("0"), repeat_caller=False, source="google", medium="cpc",
                site_id=site["id"], pool_id=pool["id"], publisher=publisher, method="session",
                explanation={}, insight=insight))
        db.session.commit()
    return site


def listed(client, **params) -> list[str]:
    response = client.get("/v1/calls", query_string=params)
    assert response.status_code == 200, response.get_json()
    return sorted(c["call_id"] for c in response.get_json()["calls"])


def test_calls_are_listed_by_spoken_keyword_and_tag(app, admin, data):
    assert listed(admin, keyword="appointment") == ["k1", "k3"]  # not "appointments"
    assert listed(admin, keyword="  Wrong   Number ") == ["k2"]  # as the analysis writes it
    assert listed(admin, tag="booking") == ["k1", "k3"]
    assert listed(admin, tag="50%") == ["k2"] and listed(admin, tag="5") == []  # exact
    assert listed(admin, tag='say "hi"') == ["k2"]
    assert listed(admin, keyword="appointment", tag="pricing") == ["k3"]
    assert listed(admin, keyword="booking") == []  # a tag is not a spoken word
    assert listed(admin, keyword="appointment", site=data["key"]) == ["k1", "k3"]
    assert listed(admin, tag="booking", qualified="true") == ["k1", "k3"]
    # A publisher's token lists its own calls only, filter or not.
    token = admin.post("/v1/tokens", json={"name": "Acme", "scope": "publisher",
                                           "publisher": "Acme"}).json["token"]
    acme = AdminClient(app.test_client(), token)
    assert listed(acme, keyword="appointment") == ["k1"]


@pytest.mark.parametrize("params", [{"keyword": ""}, {"tag": "   "}, {"keyword": "x" * 65}])
def test_a_bad_keyword_filter_is_a_422(admin, params):
    response = admin.get("/v1/calls", query_string=params)
    assert response.status_code == 422
    assert response.get_json()["error"]["code"] == "invalid"


def report(admin, **params) -> dict:
    params = {"start": "2026-05-01", "end": "2026-05-31", "metrics": "calls,qualified_calls,revenue"} | params
    response = admin.get("/v1/reports/attribution", query_string=params)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def test_the_report_groups_by_talk_share(admin, data):
    rows = {r["dimensions"]["talk_share"]: r["metrics"]
            for r in report(admin, group_by="talk_share")["rows"]}
    # k4 (mono), k5 (no analysis) and k6 (silence) have no share.
    assert rows == {
        None: {"calls": 3, "qualified_calls": 0, "revenue": "0.00"},
        "0-20%": {"calls": 1, "qualified_calls": 0, "revenue": "0.00"},
        "40-60%": {"calls": 1, "qualified_calls": 1, "revenue": "40.00"},
        "60-80%": {"calls": 1, "qualified_calls": 1, "revenue": "40.00"},
        "80-100%": {"calls": 1, "qualified_calls": 1, "revenue": "25.00"},
    }


def test_the_report_filters_by_heard_keyword_and_tag(admin, data):
    heard = report(admin, heard="appointment", group_by="publisher")
    assert {r["dimensions"]["publisher"]: r["metrics"]["calls"] for r in heard["rows"]} \
        == {"Acme": 1, "Other": 1}
    assert heard["totals"] == {"calls": 2, "qualified_calls": 2, "revenue": "80.00"}
    tagged = report(admin, tag="booking", group_by="talk_share")
    assert sorted(r["dimensions"]["talk_share"] for r in tagged["rows"]) == ["40-60%", "60-80%"]
    assert report(admin, tag="pricing", heard="wrong number")["rows"] == []


def test_a_publisher_s_filtered_report_stays_its_own(app, admin, data):
    token = admin.post("/v1/tokens", json={"name": "Other", "scope": "publisher",
                                           "publisher": "Other"}).json["token"]
    other = AdminClient(app.test_client(), token)
    shown = report(other, tag="booking", group_by="publisher")
    assert [r["dimensions"]["publisher"] for r in shown["rows"]] == ["Other"]
    assert shown["totals"]["calls"] == 1
    # Asking for another publisher changes nothing: the token's scope wins.
    assert report(other, tag="booking", publisher="Acme")["totals"]["calls"] == 1


def test_bad_insight_report_filters_are_refused(admin, data):
    response = admin.get("/v1/reports/attribution", query_string={
        "start": "2026-05-01", "end": "2026-05-31", "tag": "x" * 65})
    assert response.status_code == 422
    assert "tag" in response.get_json()["error"]["fields"]
    with pytest.raises(reports.ReportError):
        reports.ReportQuery(start=dt.date(2026, 5, 1), end=dt.date(2026, 5, 31),
                            filters={"heard": 3}).check()
