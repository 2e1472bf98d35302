"""Reports cannot stall the service (issue 11, F7), and ``?site=`` tells a publisher nothing
about sites that are not its own (F18).

Against the real Redis and SQL database of the fixtures: pages with a maximum size and totals
over every row, a bound on days x dimensions, a statement time limit, a per-token rate limit,
and the same answer for an unknown and a foreign site key.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

import pytest
from sqlalchemy import insert

from attribution.models import Call, Visit
from dni_server.extensions import db
from factories import ADMIN_TOKEN, AdminClient, make_pool, make_site, numbers

MAY = {"start": "2026-05-01", "end": "2026-05-31"}
SOURCES = ["google", "bing", "yahoo", "radio", "tv", "email", "(direct)"]


def add_calls(app, site_id: int, count: int, *, publisher: str | None = None,
              sources: list[str] = SOURCES) -> None:
    """``count`` calls in May 2026, spread over ``sources`` and many attribution values."""
    start = dt.datetime(2026, 5, 1, 12, tzinfo=dt.UTC)
    rows = []
    for i in range(count):
        started = start + dt.timedelta(minutes=37 * i % (30 * 24 * 60))
        rows.append({
            "provider": "api", "provider_call_id": f"call-{publisher}-{i}",
            "from_number": f"+1415{i % 9000:07d}", "from_valid": True,
            "to_number": "+16505550101", "started_at": started, "local_day": started.date(),
            "answered_at": started, "status": "completed", "duration": 60 + i % 300,
            "qualified": i % 3 == 0, "revenue": Decimal("10"), "payout": Decimal("4"),
            "repeat_caller": i % 4 == 0, "source": sources[i % len(sources)],
            "medium": f"medium-{i % 11}", "campaign": f"campaign-{i % 97}",
            "keyword": f"keyword-{i % 89}", "landing_path": f"/p/{i % 83}",
            "device_type": ["mobile", "desktop", "tablet"][i % 3], "site_id": site_id,
            "method": "session", "publisher": publisher, "explanation": {},
            "first_touch": {}, "qualification_failures": []})
    with app.app_context():
        db.session.execute(insert(Call), rows)
        db.session.commit()


def add_visits(app, site_id: int, sources: list[str | None]) -> None:
    with app.app_context():
        for i, source in enumerate(sources):
            at = dt.datetime(2026, 5, 2 + i, 12, tzinfo=dt.UTC)
            db.session.add(Visit(session_id=f"s{i}", site_id=site_id, visitor_id=f"v{i}",
                                 created_at=at, local_day=at.date(), source=source))
        db.session.commit()


def report(client, **params):
    return client.get("/v1/reports/attribution", query_string=MAY | params)


# -- pages -----------------------------------------------------------------------------------


def test_report_rows_come_in_pages_with_totals_over_every_row(make_app):
    app = make_app(DNI_REPORT_MAX_ROWS="3")
    admin = AdminClient(app.test_client(), ADMIN_TOKEN)
    site_id = make_site(admin)["id"]
    add_calls(app, site_id, 70)
    add_visits(app, site_id, [*SOURCES, *SOURCES, None])  # two a source, one with none

    first = report(admin, group_by="source", metrics="calls,unique_callers,revenue,sessions")
    assert first.status_code == 200, first.json
    assert len(first.json["rows"]) == 3  # at most DNI_REPORT_MAX_ROWS, unasked
    assert first.json["totals"] == {"calls": 70, "unique_callers": 70, "revenue": "700.00",
                                    "sessions": 15}
    seen, page = [], first.json
    while True:
        seen += [row["dimensions"]["source"] for row in page["rows"]]
        assert page["totals"]["calls"] == 70  # every page totals the whole report
        assert page["totals"]["sessions"] == 15  # the visits with no call's source too
        assert all(row["metrics"]["sessions"] == 2 for row in page["rows"])
        if page["page"]["next"] is None:
            break
        page = admin.get(page["page"]["next"]).json
    assert sorted(seen) == sorted(SOURCES)  # each row exactly once, over three pages

    assert report(admin, group_by="source", limit="2", offset="6").json["rows"] == \
        [{"dimensions": {"source": seen[6]}, "metrics": report(
            admin, group_by="source", limit="1", offset="6").json["rows"][0]["metrics"]}]


@pytest.mark.parametrize("params, field", [
    ({"limit": "4"}, "limit"), ({"limit": "0"}, "limit"), ({"limit": "-1"}, "limit"),
    ({"offset": "x"}, "offset"), ({"offset": "²"}, "offset")])
def test_a_page_over_the_maximum_is_refused(make_app, params, field):
    app = make_app(DNI_REPORT_MAX_ROWS="3")
    admin = AdminClient(app.test_client(), ADMIN_TOKEN)
    response = report(admin, **params)
    assert response.status_code == 422, response.json
    assert field in response.json["error"]["fields"]


def test_csv_export_is_one_page_and_links_the_next(make_app):
    app = make_app(DNI_REPORT_MAX_ROWS="3")
    admin = AdminClient(app.test_client(), ADMIN_TOKEN)
    add_calls(app, make_site(admin)["id"], 14)
    response = report(admin, group_by="source", metrics="calls", format="csv")
    assert response.status_code == 200
    lines = response.text.lstrip("\ufeff").splitlines()
    assert len(lines) == 1 + 3 + 1  # header, a page of rows, totals
    assert lines[-1] == "Total,14"
    assert re.fullmatch(r'<http://[^>]+offset=3[^>]*>; rel="next"', response.headers["Link"])


def test_the_dashboard_report_table_is_paged(make_app):
    app = make_app(DNI_REPORT_MAX_ROWS="3")
    client = log_in(app.test_client())
    add_calls(app, make_site(AdminClient(app.test_client(), ADMIN_TOKEN))["id"], 70)
    html = client.get("/dashboard/", query_string=MAY | {"group_by": "source"}).text
    body = html.split("<tbody>")[1].split("</tbody>")[0]
    assert body.count("<tr>") == 3
    assert 'rel="next"' in html and "Rows 1 to 3" in html
    last = client.get("/dashboard/", query_string=MAY | {"group_by": "source", "page": "3"})
    assert last.status_code == 200 and "Rows 7 to 7" in last.text
    assert 'rel="next"' not in last.text and 'rel="prev"' in last.text
    assert '<td class="num">70</td>' in last.text.split("<tfoot>")[1]  # totals: every row


# -- range x dimensions ----------------------------------------------------------------------


def test_days_times_dimensions_over_the_bound_is_422_naming_the_limit(admin):
    # 2,557 days by two dimensions: 5,114 > 3,660.
    response = admin.get("/v1/reports/attribution", query_string={
        "start": "2020-01-01", "end": "2026-12-31", "group_by": "source,medium"})
    assert response.status_code == 422
    assert "3660" in response.json["error"]["fields"]["range"]
    assert response.json["error"]["code"] == "invalid"
    # The same range by one dimension, or a year by six, is within it.
    assert admin.get("/v1/reports/attribution", query_string={
        "start": "2020-01-01", "end": "2026-12-31", "group_by": "source"}).status_code == 200
    assert admin.get("/v1/reports/attribution", query_string={
        "start": "2026-01-01", "end": "2026-12-31",
        "group_by": "source,medium,campaign,keyword,device_type,day"}).status_code == 200


def test_the_bound_is_a_setting(make_app):
    app = make_app(DNI_REPORT_MAX_DAY_DIMENSIONS="60")
    admin = AdminClient(app.test_client(), ADMIN_TOKEN)
    assert report(admin, group_by="source").status_code == 200  # 31 x 1
    response = report(admin, group_by="source,medium")  # 31 x 2
    assert response.status_code == 422 and "60" in response.json["error"]["fields"]["range"]


# -- the statement time limit ----------------------------------------------------------------


def test_a_report_past_its_time_limit_is_stopped_with_503(make_app):
    app = make_app(DNI_REPORT_TIMEOUT_MS="1")
    admin = AdminClient(app.test_client(), ADMIN_TOKEN)
    add_calls(app, make_site(admin)["id"], 20_000)
    response = report(admin, group_by="campaign,keyword,landing_page,medium,source,day")
    assert response.status_code == 503, response.json
    error = response.json["error"]
    assert error["code"] == "report_timeout" and error["fields"] == {"timeout_ms": 1}
    assert "DNI_REPORT_TIMEOUT_MS" in error["message"]
    # The connection goes back to the pool without the limit: other queries still run.
    assert admin.get("/v1/sites").status_code == 200
    assert admin.get("/v1/calls", query_string={"limit": "5"}).status_code == 200


def test_the_dashboard_says_when_a_report_ran_out_of_time(make_app):
    app = make_app(DNI_REPORT_TIMEOUT_MS="1")
    add_calls(app, make_site(AdminClient(app.test_client(), ADMIN_TOKEN))["id"], 20_000)
    client = log_in(app.test_client())
    response = client.get("/dashboard/", query_string=MAY | {
        "group_by": "campaign", "then_by": "keyword"})
    assert response.status_code == 503
    assert "DNI_REPORT_TIMEOUT_MS" in response.text


def test_a_worker_runs_only_so_many_reports_at_once(admin):
    from dni_server.api import reports as api

    held = [api._report_slots.acquire(blocking=False) for _ in range(api.REPORT_THREADS)]
    try:
        assert all(held)
        busy = report(admin)
    finally:
        for _ in held:
            api._report_slots.release()
    assert busy.status_code == 503 and busy.json["error"]["code"] == "reports_busy"
    assert busy.headers["Retry-After"] == "2"
    assert report(admin).status_code == 200


# -- the rate limit --------------------------------------------------------------------------


def test_reports_and_exports_are_rate_limited_per_token(make_app):
    app = make_app(DNI_REPORT_RATE="2/60")
    admin = AdminClient(app.test_client(), ADMIN_TOKEN)
    assert report(admin).status_code == 200
    assert report(admin, format="csv").status_code == 200
    refused = report(admin)
    assert refused.status_code == 429
    assert refused.json["error"]["code"] == "rate_limited"
    assert "2/60" in refused.json["error"]["fields"]["limit"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 60

    # Another token has a budget of its own; it too is limited.
    reader = AdminClient(app.test_client(), make_token(admin, "read_only"))
    assert report(reader).status_code == 200
    assert report(reader, format="csv").status_code == 200
    assert report(reader).status_code == 429


def test_the_dashboard_report_counts_against_the_same_budget(make_app):
    app = make_app(DNI_REPORT_RATE="2/60")
    client = log_in(app.test_client())
    assert client.get("/dashboard/", query_string=MAY).status_code == 200
    assert client.get("/dashboard/report.csv", query_string=MAY).status_code == 200
    refused = client.get("/dashboard/", query_string=MAY)
    assert refused.status_code == 429 and "DNI_REPORT_RATE" in refused.text
    assert refused.headers["Retry-After"]
    assert client.get("/dashboard/report.csv", query_string=MAY).status_code == 429
    # The bootstrap admin token shares it over the API.
    assert report(AdminClient(app.test_client(), ADMIN_TOKEN)).status_code == 429


# -- ?site= ------------------------------------------------------------------------------------


def test_a_publisher_cannot_tell_a_foreign_site_from_an_unknown_one(app, admin):
    own = make_site(admin, name="Acme's")
    make_pool(admin, own, publisher="Acme")
    foreign = make_site(admin, name="Beta's")
    make_pool(admin, foreign, publisher="Beta", numbers=numbers(3, start=150))
    empty = make_site(admin, name="Nobody's")
    acme = AdminClient(app.test_client(), make_token(admin, "publisher", "Acme"))

    assert report(acme, site=own["key"]).status_code == 200
    answers = []
    for ref in (foreign["key"], empty["key"], "site_doesnotexist", str(foreign["id"]),
                "999999"):
        response = report(acme, site=ref)
        answers.append((response.status_code, response.json["error"]["code"],
                        response.json["error"]["message"].replace(repr(ref), "REF")))
    assert set(answers) == {(404, "unknown_site", "unknown site REF")}

    # On the dashboard too.
    pages = log_in(app.test_client(), make_token(admin, "publisher", "Acme"))
    shown = [pages.get("/dashboard/", query_string=MAY | {"site": ref})
             for ref in (foreign["key"], "site_doesnotexist")]
    assert [r.status_code for r in shown] == [400, 400]
    assert all("unknown site" in r.text for r in shown)
    # Admins still filter by any site.
    assert report(admin, site=foreign["key"]).status_code == 200


@pytest.mark.parametrize("path", ["/v1/pools", "/v1/calls"])
def test_other_site_filters_do_not_tell_a_publisher_which_sites_exist(app, admin, path):
    own = make_site(admin, name="Acme's")
    make_pool(admin, own, publisher="Acme")
    foreign = make_site(admin, name="Beta's")
    make_pool(admin, foreign, publisher="Beta", numbers=numbers(3, start=150))
    acme = AdminClient(app.test_client(), make_token(admin, "publisher", "Acme"))

    assert acme.get(path, query_string={"site": own["key"]}).status_code == 200
    answers = set()
    for ref in (foreign["key"], "site_doesnotexist"):
        response = acme.get(path, query_string={"site": ref})
        answers.add((response.status_code, response.json["error"]["code"],
                     response.json["error"]["message"].replace(repr(ref), "REF")))
    assert answers == {(404, "unknown_site", "unknown site REF")}
    assert admin.get(path, query_string={"site": foreign["key"]}).status_code == 200


def test_conversion_exports_share_the_report_budget_and_range_bound(make_app):
    app = make_app(DNI_REPORT_RATE="2/60", DNI_REPORT_MAX_DAY_DIMENSIONS="100")
    admin = AdminClient(app.test_client(), ADMIN_TOKEN)
    site = make_site(admin, name="Exports")
    window = {"site": site["key"], "start": "2026-05-01", "end": "2026-05-31"}
    too_long = admin.get("/v1/conversions/export/microsoft.csv",
                         query_string=window | {"start": "2026-01-01"})
    assert too_long.status_code == 422 and "range" in too_long.json["error"]["fields"]
    assert report(admin).status_code == 200
    assert admin.get("/v1/conversions/export/microsoft.csv", query_string=window).status_code == 200
    refused = admin.get("/v1/conversions/export/google.csv", query_string=window)
    assert refused.status_code == 429 and refused.json["error"]["code"] == "rate_limited"


# -- helpers ---------------------------------------------------------------------------------


def make_token(admin, scope: str, publisher: str | None = None) -> str:
    response = admin.post("/v1/tokens", json={"name": f"{scope} {publisher}", "scope": scope,
                                               "publisher": publisher})
    assert response.status_code == 201, response.get_json()
    return response.get_json()["token"]


def log_in(client, token: str = ADMIN_TOKEN):
    """Sign the test client in to the dashboard through its form."""
    page = client.get("/dashboard/login")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    response = client.post("/dashboard/login", data={"token": token, "csrf_token": csrf})
    assert response.status_code == 302, response.text
    return client
