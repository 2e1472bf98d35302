"""schemathesis against the served /openapi.json: no server error, no schema violation.

Every documented operation gets generated requests (valid and invalid, seeded so a run can
be repeated) sent with the admin token through the WSGI app, and each answer is checked:
never a 5xx, a documented status code and content type, and a body matching the documented
schema. The dashboard's pages are not in that document (they answer HTML): a small extra
document below lists their query parameters, and schemathesis sends them valid and invalid
values, signed in to the dashboard, checking that none is answered with a 5xx. The number of
examples per operation and mode is bounded for CI; for a longer run:

    DNI_SCHEMATHESIS_EXAMPLES=300 .venv/bin/python -m pytest -p no:xdist -s tests/test_schemathesis.py
"""

from __future__ import annotations

import os
import re
from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, given, seed, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from factories import ADMIN_TOKEN, make_pool, make_site, numbers

pytestmark = pytest.mark.slow  # hypothesis-generated requests over the whole API
EXAMPLES = int(os.environ.get("DNI_SCHEMATHESIS_EXAMPLES", "12"))
SEED = int(os.environ.get("DNI_SCHEMATHESIS_SEED", "20261122"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
def seeded(app, admin):
    """A site, pool, call and static number, so generated ids sometimes find something."""
    site = make_site(admin, domains=["shop.example"])
    make_pool(admin, site, numbers=numbers(5))
    admin.post("/v1/calls", json={"call_id": "CA1", "from": "+14158675309",
                                  "to": numbers(1)[0], "started_at": "2026-05-01T10:00:00Z"})
    admin.post("/v1/static-numbers", json={"number": "+18005550177",
                                           "destination": "+12125550199", "source": "radio",
                                           "medium": "offline"})
    return app


def brief(report: str) -> str:
    """A schemathesis report without the response bodies: what failed, and how to reproduce."""
    out, in_body = [], False
    for line in report.splitlines():
        text = line.strip()
        if re.fullmatch(r"\[\d{3}\].*", text):
            in_body = True  # the response, often long; the curl line reproduces it
        elif text.startswith("Reproduce with"):
            in_body = False
        elif text and not in_body:
            out.append(line.rstrip()[:300])
    return "\n".join(out)


def run_operation(operation, mode: GenerationMode, stats: Counter, failures: list, *,
                  headers: dict = AUTH, checks: list = CHECKS, cookies: dict | None = None
                  ) -> None:
    @seed(SEED)
    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=False,
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def exercise(case):
        stats["examples"] += 1
        try:
            case.call_and_validate(headers=headers, checks=checks, cookies=cookies)
        except (AssertionError, FailureGroup) as exc:
            # Collected rather than raised, so one run reports every operation's failures.
            failures.append(f"{operation.label} [{mode.value}]:\n{brief(str(exc))}")

    try:
        exercise()
    except Unsatisfiable:
        stats["no_invalid_input"] += 1  # nothing to make invalid: no parameters, no body


def test_the_api_conforms_to_its_openapi_document(seeded, capsys):
    schema = schemathesis.openapi.from_wsgi("/openapi.json", seeded)
    stats: Counter = Counter()
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        stats["operations"] += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            run_operation(operation, mode, stats, failures)
    summary = (f"schemathesis: {stats['operations']} operations, {stats['examples']} examples "
               f"({EXAMPLES} per operation and mode, seed {SEED}), {len(failures)} failures; "
               f"{stats['no_invalid_input']} operations take no input to make invalid")
    with capsys.disabled():
        print("\n" + summary)
    assert stats["operations"] >= 30
    assert not failures, summary + "\n\n" + "\n\n".join(dict.fromkeys(failures))


# -- the dashboard's query strings ----------------------------------------------------------


def query(name: str, schema: dict) -> dict:
    return {"name": name, "in": "query", "required": False, "schema": schema}


DATE = {"type": "string", "format": "date"}
TEXT = {"type": "string"}
WHOLE = {"type": "integer", "minimum": 1}
REPORT = [query("start", DATE), query("end", DATE), query("group_by", TEXT),
          query("then_by", TEXT), query("metric", TEXT), query("site", TEXT),
          query("pool", WHOLE), query("qualified", {"type": "string", "enum": ["true", "false"]}),
          query("caller", TEXT), query("publisher", TEXT), query("limit", WHOLE),
          query("offset", {"type": "integer", "minimum": 0}), query("_method", TEXT)]


def dashboard_spec(call_id: int, pool_id: int) -> dict:
    """The dashboard's GET pages and the query parameters each reads."""
    def page(parameters: list, **path_ids) -> dict:
        path_parameters = [{"name": name, "in": "path", "required": True,
                            "schema": {"type": "integer", "enum": [value]}}
                           for name, value in path_ids.items()]
        return {"get": {"parameters": path_parameters + parameters,
                        "responses": {"200": {"description": "an HTML page"}}}}

    return {"openapi": "3.0.3", "info": {"title": "dashboard pages", "version": "1"},
            "paths": {
                "/dashboard/": page(REPORT),
                "/dashboard/report.csv": page(REPORT),
                "/dashboard/calls": page([query("start", DATE), query("end", DATE),
                                          query("qualified", TEXT), query("method", TEXT),
                                          query("source", TEXT), query("page", WHOLE)]),
                "/dashboard/calls/{call_id}": page([query("journey_page", WHOLE)],
                                                   call_id=call_id),
                "/dashboard/conversions": page([query("status", TEXT),
                                                query("delivery", WHOLE)]),
                "/dashboard/pools": page([]),
                "/dashboard/pools/{pool_id}": page([query("start", DATE), query("end", DATE)],
                                                   pool_id=pool_id),
                "/dashboard/static-numbers": page([]),
            }}


def dashboard_cookies(app) -> dict:
    """The cookies of a dashboard signed in with the admin token."""
    client = app.test_client()
    page = client.get("/dashboard/login")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    login = client.post("/dashboard/login", data={"token": ADMIN_TOKEN, "csrf_token": csrf})
    assert login.status_code == 302
    return dict(cookie.split(";", 1)[0].split("=", 1)
                for cookie in login.headers.getlist("Set-Cookie"))


@schemathesis.check
def signed_in(ctx, response, case):
    """Each page was served to the signed-in admin, not turned away to the login form."""
    if response.status_code in (301, 302, 303, 401, 403):
        raise AssertionError(f"not signed in: {response.status_code}")


def test_no_dashboard_query_string_gives_a_5xx(seeded, admin, capsys):
    call_id = admin.get("/v1/calls").get_json()["calls"][0]["id"]
    pool_id = admin.get("/v1/pools").get_json()["pools"][0]["id"]
    schema = schemathesis.openapi.from_dict(dashboard_spec(call_id, pool_id))
    schema.app = seeded
    cookies = dashboard_cookies(seeded)
    stats: Counter = Counter()
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        stats["operations"] += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            run_operation(operation, mode, stats, failures, headers={}, cookies=cookies,
                          checks=[not_a_server_error, signed_in])
    summary = (f"schemathesis (dashboard): {stats['operations']} pages, {stats['examples']} "
               f"examples, {len(failures)} failures")
    with capsys.disabled():
        print("\n" + summary)
    assert stats["operations"] == 8 and stats["examples"] >= 8 * EXAMPLES
    assert not failures, summary + "\n\n" + "\n\n".join(dict.fromkeys(failures))
