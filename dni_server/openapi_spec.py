"""The OpenAPI document, built from the app's URL map and the schemas the views dump with.

Every JSON view carries an ``@documented`` mark (dni_server/openapi.py) naming its response
schema; this module turns the marks into operations. The doors that are not part of the
JSON API (carrier webhooks, /healthz, /metrics) are described below by hand.
"""

from __future__ import annotations

import re

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Flask

from dni_server.api.schemas import ErrorSchema
from dni_server.openapi import Operation

ADMIN = [{"bearer": []}]
FORM = {"content": {"application/x-www-form-urlencoded": {"schema": {"type": "object"}}}}
PATH_PARAMETER = re.compile(r"<(?:(\w+)(?:\([^)]*\))?:)?(\w+)>")


def _json(schema) -> dict:
    return {"content": {"application/json": {"schema": schema}}}


def _ok(schema, status: str = "200", *errors: int | tuple[int, str]) -> dict:
    """The answers: ``schema`` on success, the error shape otherwise; each error is a status
    or (status, when it is answered)."""
    responses = {status: {"description": "OK", **_json(schema)}}
    for error in errors:  # a success code among them answers the same schema (a repeat)
        code, text = error if isinstance(error, tuple) else (error, "Error")
        responses[str(code)] = ({"description": "OK", **_json(schema)} if code < 400
                                else {"description": text, **_json(ErrorSchema)})
    return responses


def build_spec(app: Flask) -> dict:
    spec = APISpec(title="DNI and call attribution service", version="1.0.0",
                   openapi_version="3.0.3", plugins=[MarshmallowPlugin()])
    spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer"})
    spec.components.schema("Error", schema=ErrorSchema)
    name_conversion_requests(spec)
    view_paths(spec, app)
    for path, summary, body, reply in WEBHOOKS:
        spec.path(path=path, operations={"post": {
            "summary": summary, "requestBody": body,
            "parameters": [{"name": name, "in": "path", "required": True,
                            "schema": {"type": "integer", "minimum": 0}}
                           for name in re.findall(r"{(\w+)}", path)],
            "responses": {reply[0]: {"description": reply[1], **(
                {"content": {"text/xml": {"schema": {"type": "string"}}}} if reply[0] == "200"
                else {})}, "403": {"description": "bad or missing signature",
                                   **_json(ErrorSchema)},
                **({"404": {"description": "not a turn of a routed call (the path's numbers)",
                            **_json(ErrorSchema)}} if "{" in path else {})},
        }})
    add_operations_paths(spec)
    return document_backoff(spec.to_dict())


def view_paths(spec: APISpec, app: Flask) -> None:
    """One operation per marked view, its path and path parameters from the URL map."""
    paths: dict[str, dict] = {}
    for rule in app.url_map.iter_rules():
        operation = getattr(app.view_functions.get(rule.endpoint), "openapi", None)
        if operation is None:
            continue
        path = PATH_PARAMETER.sub(r"{\2}", rule.rule)
        parameters = [{"name": name, "in": "path", "required": True,
                       "schema": {"type": "integer" if converter == "int" else "string"}}
                      for converter, name in PATH_PARAMETER.findall(rule.rule)]
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            paths.setdefault(path, {})[method.lower()] = view_operation(operation, parameters)
    for path, operations in paths.items():
        spec.path(path=path, operations=operations)


def view_operation(operation: Operation, path_parameters: list[dict]) -> dict:
    op = {"summary": operation.summary,
          "responses": _ok(operation.reply, str(operation.status), *operation.errors)}
    success = op["responses"][str(operation.status)]
    if operation.reply is None:  # a file, e.g. CSV
        success["content"] = {}
    success["content"].update(operation.other_content or {})
    if operation.body is not None:
        op["requestBody"] = {"required": True, **_json(operation.body)}
    if not operation.public:
        op["security"] = ADMIN
    query = [{"name": name, "in": "query", "required": False, "description": text,
              "schema": schema} for name, text, schema in operation.query]
    if path_parameters or query:
        op["parameters"] = path_parameters + query
    return op


def document_backoff(document: dict) -> dict:
    """Every operation that takes a bearer token may answer 429: the per-client back-off
    after too many wrong tokens (DNI_AUTH_FAILURE_LIMIT)."""
    backoff = {"description": "too many wrong tokens from this client lately (see "
                              "Retry-After)", **_json({"$ref": "#/components/schemas/Error"})}
    for operations in document["paths"].values():
        for operation in operations.values():
            if any("bearer" in way for way in operation.get("security", [])):
                operation["responses"].setdefault("429", backoff)
    return document


def add_operations_paths(spec: APISpec) -> None:
    """/metrics and /healthz: for Prometheus and load balancers, not for browsers (no CORS)."""
    check = {"type": "object", "properties": {
        "status": {"type": "string", "enum": ["ok", "down"]},
        "latency_ms": {"type": "number", "nullable": True},
        "error": {"type": "string", "nullable": True}}}
    health = {"type": "object", "properties": {
        "status": {"type": "string", "enum": ["ok", "down"]},
        "checks": {"type": "object", "properties": {"redis": check, "sql": check}}}}
    spec.path(path="/healthz", operations={"get": {
        "summary": "Redis and SQL status, each checked separately within about a second",
        "responses": {
            "200": {"description": "both Redis and SQL answered", **_json(health)},
            "503": {"description": "Redis or SQL is down (see checks)", **_json(health)}},
    }})
    spec.path(path="/metrics", operations={"get": {
        "summary": "Prometheus metrics (text exposition format): DNI_METRICS_TOKEN as a "
                   "bearer token, or open to anyone with DNI_METRICS_PUBLIC=true",
        "security": [{}, {"bearer": []}],
        "responses": {
            "200": {"description": "the metrics", "content": {
                "text/plain": {"schema": {"type": "string"}}}},
            "401": {"description": "DNI_METRICS_TOKEN is set and the token is missing or wrong",
                    **_json(ErrorSchema)},
            "403": {"description": "neither DNI_METRICS_TOKEN nor DNI_METRICS_PUBLIC is set",
                    **_json(ErrorSchema)}},
    }})


WEBHOOKS = [
    ("/webhooks/twilio/voice", "Twilio/SignalWire voice webhook: answers TwiML that forwards",
     FORM, ("200", "TwiML")),
    ("/webhooks/twilio/status", "Twilio/SignalWire status callback", FORM, ("204", "stored")),
    ("/webhooks/twilio/dial", "Twilio <Dial action> callback", FORM, ("200", "TwiML")),
    ("/webhooks/twilio/recording", "Twilio recording status callback", FORM, ("204", "stored")),
    # Pay-per-call routing (dni_server/api/routing_calls.py): the turns of a routed call.
    ("/webhooks/twilio/route/{turn}/gather/{step}", "Routed call: the caller's IVR keys",
     FORM, ("200", "TwiML")),
    ("/webhooks/twilio/route/{turn}/dial", "Routed call: an offer's <Dial action>",
     FORM, ("200", "TwiML")),
    ("/webhooks/twilio/route/{turn}/whisper/{buyer_id}",
     "Routed call: a buyer picked up (its <Number url>): the whisper", FORM, ("200", "TwiML")),
    ("/webhooks/twilio/route/{turn}/accept/{buyer_id}",
     "Routed call: the buyer's accept key", FORM, ("200", "TwiML")),
    # Fraud (dni_server/api/fraud.py): the key of a caller challenged before routing.
    ("/webhooks/twilio/challenge/{tries}", "Challenged caller's key (1: routed or forwarded)",
     FORM, ("200", "TwiML")),
    ("/webhooks/telnyx", "Telnyx Call Control webhook (Ed25519 signed)",
     {"content": {"application/json": {"schema": {"type": "object"}}}}, ("204", "stored")),
    # Web callbacks (dni_server/api/callback_legs.py): the legs of a callback the worker placed.
    *[(f"/webhooks/callbacks/twilio/{step}", f"Web callback: {what}", FORM, answer)
      for step, what, answer in (
          ("business", "the business answered (prompt, asks for 1)", ("200", "TwiML")),
          ("accept", "the business's key (1: dial the visitor)", ("200", "TwiML")),
          ("screen", "the visitor's leg answered (person or machine)", ("200", "TwiML")),
          ("dialed", "the visitor's leg ended (<Dial action>)", ("200", "TwiML")),
          ("status", "the business's leg ended", ("204", "stored")))],
    ("/webhooks/callbacks/telnyx", "Web callback legs' Telnyx Call Control events",
     {"content": {"application/json": {"schema": {"type": "object"}}}}, ("204", "acted on")),
]


def name_conversion_requests(spec: APISpec) -> None:
    """The conversion request schemas keep the names the document has always given them."""
    from dni_server.api import conversions as c

    for name, schema in {"ConversionDestinationCreate": c.DestinationSchema,
                         "ConversionDestinationUpdate": c.DestinationUpdateSchema,
                         "ConversionRuleCreate": c.RuleSchema,
                         "ConversionRuleUpdate": c.RuleUpdateSchema}.items():
        spec.components.schema(name, schema=schema)
