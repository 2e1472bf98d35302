"""The OpenAPI document, built from the same marshmallow schemas the views use."""

from __future__ import annotations

from functools import cache

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from marshmallow import Schema, fields

from dni_server.api import schemas as s


class ErrorBodySchema(Schema):
    code = fields.String(required=True)
    message = fields.String(required=True)
    fields_ = fields.Dict(data_key="fields")


class ErrorSchema(Schema):
    error = fields.Nested(ErrorBodySchema, required=True)


class NumberEntrySchema(Schema):
    target = fields.String(required=True, metadata={"description": "the page's number, E.164"})
    number = fields.String(required=True, metadata={"description": "the number to show, E.164"})
    expires_at = fields.String(allow_none=True, required=True)
    fallback = fields.Boolean(required=True)
    reason = fields.String(metadata={"enum": ["pool_exhausted", "bot", "unavailable", "no_pool",
                                              "rate_limited", "expired"]})
    target_national = fields.String()
    number_national = fields.String()


class SessionAnswerSchema(Schema):
    session_id = fields.String(required=True)
    visitor_id = fields.String(allow_none=True, required=True)
    numbers = fields.List(fields.Nested(NumberEntrySchema), required=True)
    renew_in = fields.Integer(required=True)


class NumberReportSchema(Schema):
    accepted = fields.List(fields.String())
    rejected = fields.List(fields.Dict())


def _json(schema) -> dict:
    return {"content": {"application/json": {"schema": schema}}}


def _ok(schema, status: str = "200", *errors: int) -> dict:
    responses = {status: {"description": "OK", **_json(schema)}}
    for code in errors:  # a success code among them answers the same schema (a repeat)
        responses[str(code)] = ({"description": "OK", **_json(schema)} if code < 400
                                else {"description": "Error", **_json("Error")})
    return responses


ADMIN = [{"bearer": []}]
FORM = {"content": {"application/x-www-form-urlencoded": {"schema": {"type": "object"}}}}
CALL_PROPERTIES = {
    name: {"type": kind} for name, kind in {
        "id": "integer", "call_id": "string", "provider": "string", "from": "string",
        "to": "string", "started_at": "string", "status": "string", "duration": "integer",
        "attribution": "object", "caller": "object", "qualified": "boolean",
        "qualification_failures": "array", "revenue": "string", "payout": "string",
        "explanation": "object"}.items()}
CALL_PROPERTIES["qualification_failures"]["items"] = {"type": "string"}
for _name in ("duration", "qualified", "explanation"):  # unknown until the call ends
    CALL_PROPERTIES[_name]["nullable"] = True
# path -> method -> (summary, request schema or None, response schema, success status, errors)
OPERATIONS = {
    "/v1/sessions": {
        "post": ("Start or resume a session and lease its numbers", "SessionRequest",
                 "SessionAnswer", "200", (400, 404, 413, 422), None),
        "get": ("List recent sessions (admin)", None, "VisitList", "200", (401, 422), ADMIN),
    },
    "/v1/sessions/{session_id}/heartbeat": {
        "post": ("Renew the session's leases", "HeartbeatRequest", "SessionAnswer", "200",
                 (400, 404, 413, 422), None),
    },
    "/v1/sessions/{session_id}": {
        "get": ("A session with its pages and leases (admin)", None, "Visit", "200", (401, 404),
                ADMIN),
    },
    "/v1/sites": {
        "post": ("Create a site", "Site", "Site", "201", (400, 401, 422), ADMIN),
        "get": ("List sites", None, "SiteList", "200", (401,), ADMIN),
    },
    "/v1/sites/{site_id}": {
        "get": ("Show a site", None, "Site", "200", (401, 404), ADMIN),
        "patch": ("Update a site", "Site", "Site", "200", (400, 401, 404, 422), ADMIN),
    },
    "/v1/pools": {
        "post": ("Create a pool with its numbers", "PoolCreate", "Pool", "201",
                 (400, 401, 404, 409, 422), ADMIN),
        "get": ("List pools", None, "PoolList", "200", (401, 404), ADMIN),
    },
    "/v1/pools/{pool_id}": {
        "get": ("Show a pool with its live state", None, "Pool", "200", (401, 404), ADMIN),
        "patch": ("Update a pool's settings", "PoolSettings", "Pool", "200",
                  (400, 401, 404, 409, 422), ADMIN),
    },
    "/v1/tokens": {
        "post": ("Create a token (admin, read_only, or publisher); the secret is shown once",
                 "Token", "Token", "201", (400, 401, 403, 422), ADMIN),
        "get": ("List tokens (never their secrets)", None, "TokenList", "200", (401, 403), ADMIN),
    },
    "/v1/tokens/{token_id}": {
        "delete": ("Revoke a token", None, "Token", "200", (401, 403, 404), ADMIN),
    },
    "/v1/pools/{pool_id}/health": {
        "get": ("Pool health (query: start, end, target): utilisation per hour, peak leases, "
                "exhaustion, recommended size with its reasoning", None, "PoolHealth", "200",
                (401, 404, 422), ADMIN),
    },
    "/v1/pools/{pool_id}/numbers": {
        "post": ("Add numbers (each rejected one is reported)", "Numbers", "NumberReport", "201",
                 (400, 401, 404, 422), ADMIN),
        "get": ("List a pool's numbers", None, "PoolNumberList", "200", (401, 404), ADMIN),
    },
    "/v1/calls": {
        "post": ("Record a call from any carrier or CDR feed (200 when call_id was seen)",
                 "CallRequest", "Call", "201", (200, 400, 401, 413, 422), ADMIN),
        "get": ("The calls log", None, "CallList", "200", (401, 404, 422), ADMIN),
    },
    "/v1/calls/{call_ref}": {
        "get": ("A call with its attribution and the explanation of its match", None, "Call",
                "200", (401, 404), ADMIN),
    },
    "/v1/calls/{call_ref}/disposition": {
        "post": ("Set the advertiser's disposition (sale, spam, ...)", "Disposition", "Call",
                 "200", (400, 401, 404, 422), ADMIN),
    },
    "/v1/static-numbers": {
        "post": ("Create a static number for print, radio, TV...", "StaticNumber",
                 "StaticNumber", "201", (400, 401, 404, 422), ADMIN),
        "get": ("List static numbers", None, "StaticNumberList", "200", (401,), ADMIN),
    },
    "/v1/static-numbers/{static_id}": {
        "get": ("Show a static number", None, "StaticNumber", "200", (401, 404), ADMIN),
        "patch": ("Update a static number", "StaticNumber", "StaticNumber", "200",
                  (400, 401, 404, 422), ADMIN),
        "delete": ("Retire a static number", None, "StaticNumber", "200", (401, 404), ADMIN),
    },
    "/v1/pools/{pool_id}/numbers/{number}": {
        "delete": ("Retire a number (a leased one when its lease ends)", None, "PoolNumber",
                   "200", (401, 404), ADMIN),
    },
}


@cache
def build_spec() -> dict:
    spec = APISpec(title="DNI and call attribution service", version="1.0.0",
                   openapi_version="3.0.3", plugins=[MarshmallowPlugin()])
    spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer"})
    for name, schema in {
        "Error": ErrorSchema, "SessionRequest": s.SessionRequestSchema,
        "HeartbeatRequest": s.HeartbeatRequestSchema, "SessionAnswer": SessionAnswerSchema,
        "Site": s.SiteSchema, "PoolCreate": s.PoolCreateSchema,
        "PoolSettings": s.PoolSettingsSchema, "Pool": s.PoolSchema, "Numbers": s.NumbersSchema,
        "NumberReport": NumberReportSchema, "PoolNumber": s.PoolNumberSchema,
        "Visit": s.VisitSchema, "CallRequest": s.CallRequestSchema,
        "Disposition": s.DispositionSchema, "StaticNumber": s.StaticNumberSchema,
        "Token": s.TokenSchema,
    }.items():
        spec.components.schema(name, schema=schema)
    # The pool view adds its number counts and live Redis state (null when Redis is away).
    spec.components.schemas["Pool"]["properties"].update(
        numbers={"type": "object", "additionalProperties": {"type": "integer"}},
        live={"type": "object", "nullable": True})
    spec.components.schema("Call", {"type": "object", "properties": CALL_PROPERTIES})
    spec.components.schema("PoolHealth", {"type": "object"})
    for plural, item, ref in (("VisitList", "sessions", "Visit"), ("SiteList", "sites", "Site"),
                              ("PoolList", "pools", "Pool"),
                              ("PoolNumberList", "numbers", "PoolNumber"),
                              ("CallList", "calls", "Call"),
                              ("StaticNumberList", "static_numbers", "StaticNumber"),
                              ("TokenList", "tokens", "Token")):
        spec.components.schema(plural, {"type": "object", "properties": {
            item: {"type": "array", "items": {"$ref": f"#/components/schemas/{ref}"}}}})
    for path, methods in OPERATIONS.items():
        operations = {}
        for method, (summary, request, response, status, errors, security) in methods.items():
            op = {"summary": summary, "responses": _ok(response, status, *errors)}
            if request:
                op["requestBody"] = {"required": True, **_json(request)}
            if security:
                op["security"] = security
            params = [part[1:-1] for part in path.split("/") if part.startswith("{")]
            if params:
                op["parameters"] = [{"name": p, "in": "path", "required": True,
                                     "schema": {"type": "integer" if p.endswith("_id")
                                                and p not in ("session_id",) else "string"}}
                                    for p in params]
            operations[method] = op
        spec.path(path=path, operations=operations)
    for path, summary, body, reply in WEBHOOKS:
        spec.path(path=path, operations={"post": {
            "summary": summary, "requestBody": body,
            "responses": {reply[0]: {"description": reply[1], **(
                {"content": {"text/xml": {"schema": {"type": "string"}}}} if reply[0] == "200"
                else {})}, "403": {"description": "bad or missing signature", **_json("Error")}},
        }})
    spec.path(path="/v1/reports/attribution", operations={"get": {
        "summary": "Source-attribution report (JSON rows of dimensions and metrics, or CSV)",
        "security": ADMIN,
        "parameters": [{"name": name, "in": "query", "required": False,
                        "description": text, "schema": {"type": "string"}}
                       for name, text in REPORT_PARAMETERS],
        "responses": {
            "200": {"description": "the report", "content": {
                "application/json": {"schema": {"type": "object", "properties": {
                    "rows": {"type": "array", "items": {"type": "object", "properties": {
                        "dimensions": {"type": "object"}, "metrics": {"type": "object"}}}},
                    "totals": {"type": "object"}, "query": {"type": "object"},
                    "page": {"type": "object", "properties": {
                        "offset": {"type": "integer"}, "limit": {"type": "integer"},
                        "next_offset": {"type": "integer", "nullable": True},
                        "next": {"type": "string", "nullable": True}}}}}},
                "text/csv": {"schema": {"type": "string"}}}},
            "401": {"description": "Error", **_json("Error")},
            "404": {"description": "unknown site", **_json("Error")},
            "422": {"description": "Error (also: over DNI_REPORT_MAX_ROWS per page or "
                                   "DNI_REPORT_MAX_DAY_DIMENSIONS)", **_json("Error")},
            "429": {"description": "over DNI_REPORT_RATE for this token (see Retry-After)",
                    **_json("Error")},
            "503": {"description": "ran past DNI_REPORT_TIMEOUT_MS (report_timeout), the "
                                   "worker runs its most reports at once (reports_busy), or "
                                   "the database is away",
                    **_json("Error")}},
    }})
    add_operations_paths(spec)
    conversion_paths(spec)
    return document_backoff(spec.to_dict())


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
                    **_json("Error")},
            "403": {"description": "neither DNI_METRICS_TOKEN nor DNI_METRICS_PUBLIC is set",
                    **_json("Error")}},
    }})


REPORT_PARAMETERS = [
    ("start", "first local day, YYYY-MM-DD (default: 29 days before end)"),
    ("end", "last local day, YYYY-MM-DD (default: today)"),
    ("group_by", "comma-separated dimensions, e.g. source,medium or day"),
    ("metrics", "comma-separated metrics (default: all)"),
    ("site", "site id or key"), ("pool", "pool id"), ("qualified", "true or false"),
    ("caller", "first_time or repeat"), ("publisher", "publisher label"),
    ("format", "json (default) or csv"),
    ("limit", "rows per page (default and maximum: DNI_REPORT_MAX_ROWS)"),
    ("offset", "rows to skip (page.next_offset of the page before)"),
]


WEBHOOKS = [
    ("/webhooks/twilio/voice", "Twilio/SignalWire voice webhook: answers TwiML that forwards",
     FORM, ("200", "TwiML")),
    ("/webhooks/twilio/status", "Twilio/SignalWire status callback", FORM, ("204", "stored")),
    ("/webhooks/twilio/dial", "Twilio <Dial action> callback", FORM, ("200", "TwiML")),
    ("/webhooks/twilio/recording", "Twilio recording status callback", FORM, ("204", "stored")),
    ("/webhooks/telnyx", "Telnyx Call Control webhook (Ed25519 signed)",
     {"content": {"application/json": {"schema": {"type": "object"}}}}, ("204", "stored")),
]


# -- offline conversions (dni_server/api/conversions.py) ------------------------------------

CONVERSION_OPERATIONS = {
    "/v1/conversions/destinations": {
        "post": ("Add a conversion destination (google, microsoft, meta, ga4); credentials are "
                 "shown masked from then on", "ConversionDestinationCreate",
                 "ConversionDestination", "201", (400, 401, 403, 404, 409, 422)),
        "get": ("List conversion destinations (query: site); credentials masked", None,
                "ConversionDestinationList", "200", (401, 403, 404)),
    },
    "/v1/conversions/destinations/{destination_id}": {
        "get": ("Show a destination (credentials masked)", None, "ConversionDestination", "200",
                (401, 403, 404)),
        "patch": ("Update a destination; a masked credential sent back keeps the stored one",
                  "ConversionDestinationUpdate", "ConversionDestination", "200",
                  (400, 401, 403, 404, 409, 422)),
        "delete": ("Delete a destination that has no deliveries", None, "ConversionDestination",
                   "200", (401, 403, 404, 409)),
    },
    "/v1/conversions/rules": {
        "post": ("Add a conversion rule for a site or one of its pools", "ConversionRuleCreate",
                 "ConversionRule", "201", (400, 401, 403, 404, 422)),
        "get": ("List conversion rules (query: site)", None, "ConversionRuleList", "200",
                (401, 403, 404)),
    },
    "/v1/conversions/rules/{rule_id}": {
        "get": ("Show a conversion rule", None, "ConversionRule", "200", (401, 403, 404)),
        "patch": ("Update a conversion rule", "ConversionRuleUpdate", "ConversionRule", "200",
                  (400, 401, 403, 404, 422)),
        "delete": ("Delete a conversion rule", None, "ConversionRule", "200", (401, 403, 404)),
    },
    "/v1/conversions/deliveries": {
        "get": ("The outbox: one row per call per destination (query: status, destination, "
                "call, limit)", None, "ConversionDeliveryList", "200", (401, 422)),
    },
    "/v1/conversions/deliveries/{delivery_id}": {
        "get": ("Show one delivery", None, "ConversionDelivery", "200", (401, 404)),
    },
    "/v1/conversions/deliveries/{delivery_id}/attempts": {
        "get": ("A delivery's attempts log: request (secrets masked), response, status, elapsed",
                None, "ConversionAttemptList", "200", (401, 404)),
    },
    "/v1/conversions/deliveries/{delivery_id}/retry": {
        "post": ("Queue a failed delivery again", None, "ConversionDelivery", "200",
                 (401, 403, 404, 409)),
    },
}
EXPORT_PARAMETERS = [("site", "site id or key (required)"),
                     ("start", "first local day, YYYY-MM-DD (default: 29 days before end)"),
                     ("end", "last local day, YYYY-MM-DD (default: today)"),
                     ("name", "conversion name (default: the rule's action name for the site's "
                              "first destination of this kind)")]


def conversion_paths(spec: APISpec) -> None:
    from dni_server.api import conversions as c

    for name, schema in {"ConversionDestinationCreate": c.DestinationSchema,
                         "ConversionDestinationUpdate": c.DestinationUpdateSchema,
                         "ConversionRuleCreate": c.RuleSchema,
                         "ConversionRuleUpdate": c.RuleUpdateSchema}.items():
        spec.components.schema(name, schema=schema)
    for name in ("ConversionDestination", "ConversionRule", "ConversionDelivery",
                 "ConversionAttempt"):
        spec.components.schema(name, {"type": "object"})
    for plural, item, ref in (
            ("ConversionDestinationList", "destinations", "ConversionDestination"),
            ("ConversionRuleList", "rules", "ConversionRule"),
            ("ConversionDeliveryList", "deliveries", "ConversionDelivery"),
            ("ConversionAttemptList", "attempts", "ConversionAttempt")):
        spec.components.schema(plural, {"type": "object", "properties": {
            item: {"type": "array", "items": {"$ref": f"#/components/schemas/{ref}"}}}})
    for path, methods in CONVERSION_OPERATIONS.items():
        operations = {}
        for method, (summary, body, reply, status, errors) in methods.items():
            op = {"summary": summary, "security": ADMIN, "responses": _ok(reply, status, *errors)}
            if body:
                op["requestBody"] = {"required": True, **_json(body)}
            params = [part[1:-1] for part in path.split("/") if part.startswith("{")]
            if params:
                op["parameters"] = [{"name": p, "in": "path", "required": True,
                                     "schema": {"type": "integer"}} for p in params]
            operations[method] = op
        spec.path(path=path, operations=operations)
    for kind, extra in (("google", [("id_type", "gclid (default), gbraid or wbraid")]),
                        ("microsoft", [])):
        spec.path(path=f"/v1/conversions/export/{kind}.csv", operations={"get": {
            "summary": f"The {kind} offline-conversion CSV file for a date range",
            "security": ADMIN,
            "parameters": [{"name": name, "in": "query", "required": name == "site",
                            "description": text, "schema": {"type": "string"}}
                           for name, text in EXPORT_PARAMETERS + extra],
            "responses": {"200": {"description": "the file",
                                  "content": {"text/csv": {"schema": {"type": "string"}}}},
                          **{str(code): {"description": "Error", **_json("Error")}
                             for code in (401, 403, 404, 422)}}}})
