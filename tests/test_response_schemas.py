"""Answers are dumped with response schemas, and /openapi.json is built from the same ones."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

from marshmallow import Schema
from openapi_schema_validator import OAS30Validator

from attribution import reports
from attribution.models import Call
from attribution.pool_health import health
from dni_server.api import schemas
from dni_server.extensions import db
from factories import heartbeat, make_pool, make_site, numbers, post_session, record
from pools.models import Pool


def keys_of(schema: type[Schema] | Schema) -> set[str]:
    """The JSON keys a response schema sends."""
    schema = schema() if isinstance(schema, type) else schema
    return {field.data_key or name for name, field in schema.dump_fields.items()}


def component(document: dict, ref: str) -> dict:
    return document["components"]["schemas"][ref.removeprefix("#/components/schemas/")]


def check_against_document(client, answer: dict, name: str) -> None:
    """Validate an answer against the document's schema ``name`` (nullable and all)."""
    document = client.get("/openapi.json").get_json()
    OAS30Validator({"$ref": f"#/components/schemas/{name}",
                    "components": document["components"]}).validate(answer)


def refs_in(node) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in refs_in(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in refs_in(value)]
    return []


def test_every_reference_in_the_document_names_a_schema_that_exists(client):
    document = client.get("/openapi.json").get_json()
    refs = refs_in(document)
    assert "#/components/schemas/CallDetail" in refs and len(refs) > 100
    for ref in refs:
        assert ref in {f"#/components/schemas/{name}"
                       for name in document["components"]["schemas"]}, ref


def test_every_marked_view_documents_the_schema_it_dumps_with(app, client):
    document = client.get("/openapi.json").get_json()
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/v1/"):
            assert hasattr(app.view_functions[rule.endpoint], "openapi"), rule.rule
    for rule in app.url_map.iter_rules():
        operation = getattr(app.view_functions[rule.endpoint], "openapi", None)
        if operation is None or operation.reply is None:  # not the JSON API, or a file
            continue
        reply = operation.reply if isinstance(operation.reply, type) else type(operation.reply)
        assert issubclass(reply, Schema), rule.rule
        path = rule.rule.replace("<int:", "<").replace("<", "{").replace(">", "}")
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            answer = document["paths"][path][method.lower()]["responses"][str(operation.status)]
            ref = answer["content"]["application/json"]["schema"]["$ref"]
            sent = {name for name, prop in component(document, ref)["properties"].items()
                    if not prop.get("writeOnly")}  # a request's field, in a shared schema
            assert sent == keys_of(reply), (rule.rule, method)


def test_the_document_covers_what_the_security_round_added(client):
    paths = client.get("/openapi.json").get_json()["paths"]
    session = paths["/v1/sessions/{session_id}"]["get"]
    assert {p["name"] for p in session["parameters"]} >= {"page_views_offset",
                                                         "page_views_limit"}
    assert "422" in session["responses"]
    report = paths["/v1/reports/attribution"]["get"]
    assert {"limit", "offset"} <= {p["name"] for p in report["parameters"]}
    assert {"422", "429", "503"} <= set(report["responses"])
    assert "text/csv" in report["responses"]["200"]["content"]
    for method in ("post", "patch"):
        assert "409" in paths["/v1/conversions/destinations"
                              + ("/{destination_id}" if method == "patch" else "")][method][
            "responses"]
    for kind in ("google", "microsoft"):
        assert {"422", "429"} <= set(paths[f"/v1/conversions/export/{kind}.csv"]["get"][
            "responses"])
    assert "403" in paths["/metrics"]["get"]["responses"]
    for operations in paths.values():
        for operation in operations.values():
            if any("bearer" in way for way in operation.get("security", [])):
                assert "429" in operation["responses"], operation["summary"]


def test_number_entries_document_expires_in(client):
    schemas_ = client.get("/openapi.json").get_json()["components"]["schemas"]
    assert "expires_in" in schemas_["NumberEntry"]["properties"]
    assert schemas_["NumberEntry"]["additionalProperties"] is False


def test_the_hand_built_snippet_answers_have_their_schemas_keys(client, admin):
    site = make_site(admin, domains=["shop.example"])
    make_pool(admin, site, numbers=numbers(2))
    started = post_session(client, site["key"]).get_json()
    beat = heartbeat(client, site["key"], started["session_id"]).get_json()
    for answer in (started, beat):
        check_against_document(client, answer, "SessionAnswer")
        assert set(answer) == keys_of(schemas.SessionAnswerSchema)
        assert answer["numbers"] and all(
            set(entry) == keys_of(schemas.NumberEntrySchema) - {"reason"}
            for entry in answer["numbers"])


def test_a_fallback_entry_has_every_key_of_its_schema():
    entry = SimpleNamespace(target="+18005550100", number="+18005550100", expires_at_ms=None,
                            fallback=True, reason="pool_exhausted")
    assert set(schemas.number_entry(entry, 0)) == keys_of(schemas.NumberEntrySchema)


def make_call(admin, site: dict) -> dict:
    pool = make_pool(admin, site, numbers=numbers(2))
    response = admin.post("/v1/calls", json={
        "call_id": "CA-schema", "from": "+14158675309", "to": numbers(1)[0],
        "started_at": "2026-05-01T10:00:00Z"})
    assert response.status_code == 201, response.get_json()
    return pool


def test_a_new_attribution_column_stays_out_of_the_calls_answer(app, admin, monkeypatch):
    site = make_site(admin)
    make_call(admin, site)
    # A column added to the model (a class attribute on every row) is not sent unasked.
    monkeypatch.setattr(Call, "fraud_score", 0.93, raising=False)
    detail = admin.get("/v1/calls/CA-schema").get_json()
    listed = admin.get("/v1/calls").get_json()["calls"][0]
    for call, schema in ((detail, schemas.CallDetailSchema), (listed, schemas.CallSchema)):
        assert set(call) == keys_of(schema)
        assert set(call["attribution"]) == keys_of(schemas.CallAttributionSchema)
        assert set(call["caller"]) == keys_of(schemas.CallerSchema)
        assert "fraud_score" not in str(call)
    assert detail["from"] == "+14158675309" and detail["revenue"] == "0.00"
    check_against_document(app.test_client(), detail, "CallDetail")
    check_against_document(app.test_client(), {"calls": [listed]}, "CallList")
    assert detail["attribution"]["term"] == detail["attribution"]["utm_term"]


def test_admin_answers_have_their_schemas_keys(app, admin, client):
    site = make_site(admin, domains=["shop.example"])
    pool = make_call(admin, site)
    assert set(pool) == keys_of(schemas.PoolDetailSchema)
    assert set(admin.get("/v1/pools").get_json()["pools"][0]) == keys_of(schemas.PoolSchema)
    token = admin.post("/v1/tokens", json={"name": "ci", "scope": "read_only"}).get_json()
    assert set(token) == keys_of(schemas.TokenCreatedSchema) and token["token"]
    added = admin.post(f"/v1/pools/{pool['id']}/numbers",
                       json={"numbers": [numbers(1, start=150)[0], "bad"]}).get_json()
    assert added["rejected"] == [{"number": "bad", "reason": added["rejected"][0]["reason"]}]
    sid = post_session(client, site["key"]).get_json()["session_id"]
    heartbeat(client, site["key"], sid, "https://shop.example/pricing")
    record(app)
    visit = admin.get(f"/v1/sessions/{sid}", query_string={"page_views_limit": 1}).get_json()
    assert set(visit) == keys_of(schemas.VisitDetailSchema)
    assert set(visit["page_views"]) == keys_of(schemas.PageViewsSchema)
    assert visit["page_views"]["limit"] == 1 and len(visit["pages"]) == 1
    assert set(visit["pages"][0]) == keys_of(schemas.PageViewSchema)
    assert visit["leases"] and set(visit["leases"][0]) == keys_of(schemas.LeaseSchema)
    check_against_document(client, visit, "VisitDetail")
    listed = admin.get("/v1/sessions").get_json()
    assert set(listed["sessions"][0]) == keys_of(schemas.VisitSchema)
    check_against_document(client, listed, "VisitList")
    check_against_document(client, pool, "PoolDetail")
    check_against_document(client, token, "TokenCreated")
    check_against_document(client, added, "NumberReport")


def test_dumping_health_and_reports_drops_no_key_they_compute(app, admin):
    site = make_site(admin)
    pool_id = make_call(admin, site)["id"]
    with app.app_context():
        pool = db.session.get(Pool, pool_id)
        end = dt.datetime.now(dt.UTC)
        computed = health(db.session, pool, end - dt.timedelta(days=1), end)
        assert set(computed) == keys_of(schemas.PoolHealthSchema)
        assert set(computed["utilisation"][0]) == keys_of(schemas.HourSchema)
        today = end.date()
        result = reports.run(db.session, reports.ReportQuery(
            start=today - dt.timedelta(days=400), end=today + dt.timedelta(days=1),
            group_by=["source"], metrics=list(reports.ALL_METRICS), filters={}))
        assert set(result) == keys_of(schemas.ReportSchema)
        assert set(result["page"]) | {"next"} == keys_of(schemas.ReportPageSchema)
        assert set(result["rows"][0]) == keys_of(schemas.ReportRowSchema)
    answer = admin.get(f"/v1/pools/{pool_id}/health").get_json()
    assert set(answer) == keys_of(schemas.PoolHealthSchema)
    check_against_document(app.test_client(), answer, "PoolHealth")
    report = admin.get("/v1/reports/attribution", query_string={"limit": 1}).get_json()
    check_against_document(app.test_client(), report, "Report")


def test_conversion_answers_are_what_their_documented_schemas_dump(app, admin):
    from attribution.conversions.models import (
        ConversionAttempt,
        ConversionDelivery,
        ConversionDestination,
        ConversionRule,
    )
    from dni_server.api import conversions as views
    from dni_server.api.schemas import With

    site = make_site(admin)
    dest = admin.post("/v1/conversions/destinations", json={
        "site": site["key"], "name": "meta", "kind": "meta",
        "config": {"pixel_id": "1122334455", "access_token": "EAAsecret-0123456789",
                   "base_url": "http://127.0.0.1:9"}}).get_json()
    rule = admin.post("/v1/conversions/rules", json={
        "site": site["key"], "value_source": "fixed", "value": "12.50",
        "actions": [{"destination": dest["id"], "name": "Call"}]}).get_json()
    at = dt.datetime(2026, 5, 1, 10, tzinfo=dt.UTC)
    delivery = ConversionDelivery(
        id=7, call_id=3, destination_id=dest["id"], key="k", name="Call", value=None,
        currency="USD", consent=True, status="failed", operation="conversion", wanted=True,
        attempts=2, next_attempt_at=at, last_error="boom", sent_at=None, retracted_at=None,
        created_at=at, updated_at=at)
    attempt = ConversionAttempt(
        id=9, delivery_id=7, operation="conversion", outcome="failed", detail="http 500",
        request={"method": "POST", "url": "https://u:p@x.example/", "body": {}},
        response={"status": 500, "body": "no"}, http_status=500, elapsed_ms=12, at=at)
    with app.test_request_context():
        row = db.session.get(ConversionDestination, dest["id"])
        assert schemas.ConversionDestinationSchema().dump(
            With(row, config=views.masked_config(row))) == dest
        assert set(rule) == keys_of(schemas.ConversionRuleSchema)
        rule_row = db.session.get(ConversionRule, rule["id"])
        assert schemas.ConversionRuleSchema().dump(
            With(rule_row, actions=rule["actions"])) == rule == views.rule_view(rule_row)
        assert schemas.ConversionDeliverySchema().dump(delivery) == views.delivery_view(delivery)
        for full in (True, False):
            assert schemas.ConversionAttemptSchema().dump(
                With(attempt, **views.shown_attempt(attempt, full))) == views.attempt_view(
                attempt, full)
    client = app.test_client()
    check_against_document(client, dest, "ConversionDestination")
    check_against_document(client, rule, "ConversionRule")
