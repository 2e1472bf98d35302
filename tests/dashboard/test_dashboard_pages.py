"""The dashboard through Flask's test client: login, CSRF, scoping, escaping, CSV, headers."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest
from dashboard_data import XSS, XSS_ESCAPED, csrf_of, log_in, make_token

MAY = {"start": "2026-05-01", "end": "2026-05-31"}
PAGES = ["/dashboard/", "/dashboard/calls", "/dashboard/pools", "/dashboard/static-numbers",
         "/dashboard/report.csv"]


@pytest.mark.parametrize("path", PAGES)
def test_every_page_redirects_to_login_when_signed_out(dash_app, path):
    """A signed-out visitor is sent to the login form, with the page to return to."""
    response = dash_app.test_client().get(path)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/dashboard/login?next=")


def test_a_bad_token_is_refused(dash_app):
    """A wrong token re-renders the form with an error and no session."""
    client = dash_app.test_client()
    page = client.get("/dashboard/login")
    response = client.post("/dashboard/login", data={"token": "nope",
                                                     "csrf_token": csrf_of(page.text)})
    assert response.status_code == 401
    assert "not valid" in response.text
    assert client.get("/dashboard/").status_code == 302


def test_login_without_csrf_token_is_400(dash_app):
    """A form posted without this session's CSRF token is refused before anything happens."""
    client = dash_app.test_client()
    client.get("/dashboard/login")
    response = client.post("/dashboard/login", data={"token": "test-admin-token-0123456789abcdef"})
    assert response.status_code == 400
    assert response.mimetype == "text/html"  # the dashboard's own error page, not API JSON
    response = client.post("/dashboard/login", data={"token": "test-admin-token-0123456789abcdef",
                                                     "csrf_token": "forged"})
    assert response.status_code == 400


def test_logout_needs_csrf_and_ends_the_session(dash_app):
    client = log_in(dash_app.test_client())
    assert client.post("/dashboard/logout").status_code == 400
    assert client.get("/dashboard/").status_code == 200
    page = client.get("/dashboard/")
    response = client.post("/dashboard/logout", data={"csrf_token": csrf_of(page.text)})
    assert response.status_code == 302
    assert client.get("/dashboard/").status_code == 302


def test_session_cookie_is_httponly_and_samesite_lax(dash_app):
    client = dash_app.test_client()
    response = client.get("/dashboard/login")
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_login_never_redirects_off_the_dashboard(dash_app):
    client = dash_app.test_client()
    page = client.get("/dashboard/login")
    response = client.post("/dashboard/login", data={
        "token": "test-admin-token-0123456789abcdef", "csrf_token": csrf_of(page.text),
        "next": "//evil.example/dashboard"})
    assert response.headers["Location"] == "/dashboard/"


def test_report_shows_rows_totals_and_chart_data(dash_app, data):
    client = log_in(dash_app.test_client())
    response = client.get("/dashboard/", query_string=MAY | {"group_by": "source"})
    assert response.status_code == 200
    html = response.text
    for source in ("google", "bing", "radio"):
        assert f"<td>{source}</td>" in html
    assert 'id="report-chart"' in html and 'data-chart="report-chart"' in html
    assert "/dashboard/report.csv?" in html


def chart_of(html: str, chart_id: str = "report-chart") -> dict:
    """The chart's JSON island, as dashboard.js reads it."""
    found = re.search(rf'<script type="application/json" id="{chart_id}">(.*?)</script>', html,
                      re.S)
    assert found, f"no {chart_id} data island"
    return json.loads(found.group(1))


def test_report_groups_by_two_dimensions(dash_app, data):
    client = log_in(dash_app.test_client())
    html = client.get("/dashboard/", query_string=MAY | {"group_by": "source",
                                                         "then_by": "medium"}).text
    assert "<th>source</th><th>medium</th>" in html
    assert "<td>google</td><td>cpc</td>" in html and "<td>radio</td><td>offline</td>" in html
    assert '<option value="medium" selected>' in html  # the form remembers the second
    chart = chart_of(html)
    assert chart["labels"] == ["bing / cpc", "google / cpc", "radio / offline"]
    assert chart["series"] == [{"label": "Calls", "data": [1, 1, 1]}]
    # The same dimension twice is one grouping; the CSV carries both columns.
    html = client.get("/dashboard/", query_string=MAY | {"group_by": "source",
                                                         "then_by": "source"}).text
    assert "<th>source</th><th>source</th>" not in html
    rows = list(csv.reader(io.StringIO(client.get("/dashboard/report.csv", query_string=MAY | {
        "group_by": "source", "then_by": "medium"}).text.lstrip("\ufeff"))))
    assert rows[0][:3] == ["source", "medium", "calls"]
    assert ["google", "cpc", "1"] in [row[:3] for row in rows]


def test_chart_metric_picker(dash_app, data):
    client = log_in(dash_app.test_client())
    html = client.get("/dashboard/", query_string=MAY | {"group_by": "source",
                                                         "metric": "revenue"}).text
    chart = chart_of(html)
    assert chart["series"] == [{"label": "Revenue", "data": [40.0, 40.0, 40.0]}]
    assert chart["decimals"] is True and chart["metric"] == "revenue"
    assert "<h2>Revenue by source," in html
    chart = chart_of(client.get("/dashboard/", query_string=MAY | {
        "group_by": "source", "metric": "qualification_rate"}).text)
    assert chart["series"][0]["data"] == [0.0, 1.0, 1.0]
    # An unknown metric charts calls rather than failing.
    chart = chart_of(client.get("/dashboard/", query_string=MAY | {"metric": "nope"}).text)
    assert chart["metric"] == "calls" and chart["decimals"] is False


def test_time_and_a_dimension_draw_a_line_per_value(dash_app, data):
    client = log_in(dash_app.test_client())
    chart = chart_of(client.get("/dashboard/", query_string=MAY | {
        "group_by": "day", "then_by": "source"}).text)
    assert chart["type"] == "line" and chart["split_by"] == "source"
    assert chart["labels"] == ["2026-05-04", "2026-05-05", "2026-05-10"]
    assert chart["series"] == [{"label": "bing", "data": [0, 1, 0]},
                               {"label": "google", "data": [1, 0, 0]},
                               {"label": "radio", "data": [0, 0, 1]}]
    # Either order of the two; rates leave gaps (null), not zeros, where a day has no row.
    chart = chart_of(client.get("/dashboard/", query_string=MAY | {
        "group_by": "source", "then_by": "day", "metric": "qualification_rate"}).text)
    assert chart["labels"] == ["2026-05-04", "2026-05-05", "2026-05-10"]
    assert chart["series"][0] == {"label": "bing", "data": [None, 0.0, None]}


def test_read_only_sees_everything_and_publisher_only_its_own(dash_app, admin, data):
    reader = log_in(dash_app.test_client(), make_token(admin, "read_only"))
    html = reader.get("/dashboard/", query_string=MAY | {"group_by": "publisher"}).text
    assert "<td>Acme</td>" in html and "<td>Beta</td>" in html
    acme = log_in(dash_app.test_client(), make_token(admin, "publisher", "Acme"))
    html = acme.get("/dashboard/", query_string=MAY | {"group_by": "source",
                                                        "publisher": "Beta"}).text
    assert "<td>google</td>" in html
    assert "<td>bing</td>" not in html and "<td>radio</td>" not in html
    csv_text = acme.get("/dashboard/report.csv", query_string=MAY | {"group_by": "source"}).text
    assert "google" in csv_text and "bing" not in csv_text


def test_a_publisher_cannot_open_another_publishers_call_or_pool(dash_app, admin, data):
    acme = log_in(dash_app.test_client(), make_token(admin, "publisher", "Acme"))
    assert acme.get(f"/dashboard/calls/{data['calls']['c1']}").status_code == 200
    for path in (f"/dashboard/calls/{data['calls']['c2']}",
                 f"/dashboard/calls/{data['calls']['c3']}",
                 f"/dashboard/pools/{data['beta_pool']['id']}"):
        response = acme.get(path)
        assert response.status_code == 404, path
        assert response.mimetype == "text/html"
    log = acme.get("/dashboard/calls").text
    assert f"/dashboard/calls/{data['calls']['c1']}" in log
    assert f"/dashboard/calls/{data['calls']['c2']}" not in log
    pools = acme.get("/dashboard/pools").text
    assert "Acme pool" in pools and "Beta pool" not in pools


def test_visit_values_render_as_text_everywhere(dash_app, data):
    """A campaign, UTM field, landing URL or referrer holding <script> shows as text."""
    client = log_in(dash_app.test_client())
    pages = [
        client.get("/dashboard/", query_string=MAY | {"group_by": "campaign"}).text,
        client.get("/dashboard/calls").text,
        client.get(f"/dashboard/calls/{data['calls']['c1']}").text,
        client.get("/dashboard/static-numbers").text,
    ]
    for html in pages:
        assert XSS not in html
        assert "alert(1)" in html
    report, _, call, static = pages
    # In the chart's JSON island, < and > are JSON escapes: the island cannot be closed early.
    assert "\\u003cscript\\u003ealert(1)\\u003c/script\\u003e" in report
    assert XSS_ESCAPED in report  # the table cell
    assert XSS_ESCAPED in call and f"https://shop.example/?q={XSS_ESCAPED}" in call
    assert f"https://ref.example/{XSS_ESCAPED}" in call
    assert XSS_ESCAPED in static


def test_call_page_shows_explanation_journey_caller_and_recording(dash_app, data):
    client = log_in(dash_app.test_client())
    html = client.get(f"/dashboard/calls/{data['calls']['c1']}").text
    assert "chosen: the lease covering the call" in html
    assert "covers the call: chosen" in html
    assert "https://shop.example/contact" in html
    assert "Boston, MA, US" in html and "first-time caller" in html
    assert 'href="https://rec.example/c1.mp3"' in html
    other = client.get(f"/dashboard/calls/{data['calls']['c2']}").text
    assert "too_short" in other and "repeat caller" in other
    assert 'href="javascript:' not in other  # shown as text, never as a link
    assert "javascript:alert(3)" in other


def test_calls_log_filters_and_pages(dash_app, data, monkeypatch):
    from dni_server.dashboard import views

    client = log_in(dash_app.test_client())
    html = client.get("/dashboard/calls", query_string={"qualified": "false"}).text
    assert "bing / cpc" in html and "google / cpc" not in html
    html = client.get("/dashboard/calls", query_string={"method": "static"}).text
    assert "radio / offline" in html and "bing / cpc" not in html
    html = client.get("/dashboard/calls", query_string={"source": "google"} | MAY).text
    assert "google / cpc" in html and "radio / offline" not in html
    monkeypatch.setattr(views, "PER_PAGE", 2)
    first = client.get("/dashboard/calls").text
    assert "Page 1 of 2" in first and 'rel="next"' in first
    second = client.get("/dashboard/calls", query_string={"page": "2"}).text
    assert "radio / offline" in first and "google / cpc" not in first  # newest first
    assert "google / cpc" in second and "radio / offline" not in second


def test_pool_health_page(dash_app, data):
    client = log_in(dash_app.test_client())
    html = client.get(f"/dashboard/pools/{data['acme_pool']['id']}",
                      query_string={"start": "2026-05-04", "end": "2026-05-04"}).text
    assert '<span class="value" id="peak">2</span>' in html
    assert "Erlang B" in html
    assert 'data-chart="pool-chart"' in html
    # Hours are New York's: the leases at 13:55-14:04 UTC fall in the 09h bucket of May 4,
    # which runs from 04:00 UTC on May 4 to 04:00 UTC on May 5.
    chart = chart_of(html, "pool-chart")
    assert chart["labels"][0] == "2026-05-04 00h" and len(chart["labels"]) == 24
    assert chart["series"][0]["data"][9] == 2 and chart["series"][0]["data"][13] == 0
    assert "Utilisation by hour (America/New_York)" in html
    assert "Busiest hour began 2026-05-04 09:00:00 EDT" in html


def test_csv_download(dash_app, data):
    client = log_in(dash_app.test_client())
    response = client.get("/dashboard/report.csv", query_string=MAY | {"group_by": "source"})
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"] == \
        'attachment; filename="attribution-2026-05-01-2026-05-31.csv"'
    rows = list(csv.reader(io.StringIO(response.text.lstrip("\ufeff"))))
    assert rows[0][:3] == ["source", "calls", "qualified_calls"]
    assert {row[0]: row[1] for row in rows[1:]} == {"google": "1", "bing": "1", "radio": "1",
                                                   "Total": "3"}


def test_bad_report_parameters_render_an_html_error(dash_app, data):
    client = log_in(dash_app.test_client())
    response = client.get("/dashboard/", query_string={"start": "soon"})
    assert response.status_code == 400 and "must be a date" in response.text
    response = client.get("/dashboard/report.csv", query_string={"group_by": "nope"})
    assert response.status_code == 400 and response.mimetype == "text/html"


def test_security_headers_on_dashboard_pages(dash_app):
    client = dash_app.test_client()
    for response in (client.get("/dashboard/login"), log_in(client).get("/dashboard/")):
        csp = response.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "same-origin"


def test_revoking_a_token_ends_its_dashboard_login(dash_app, admin):
    response = admin.post("/v1/tokens", json={"name": "r", "scope": "read_only"})
    token, token_id = response.get_json()["token"], response.get_json()["id"]
    client = log_in(dash_app.test_client(), token)
    assert client.get("/dashboard/").status_code == 200
    assert admin.delete(f"/v1/tokens/{token_id}").status_code in (200, 204)
    assert client.get("/dashboard/").status_code == 302
