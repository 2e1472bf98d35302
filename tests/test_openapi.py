"""/openapi.json is a valid OpenAPI document that covers every API route."""

from __future__ import annotations

import re

from openapi_spec_validator import validate

NOT_API = {"/openapi.json", "/dni.js", "/dni-touch.js", "/dni-callback.js", "/demo",
           "/static/<path:filename>"}


def test_openapi_document_is_valid_and_complete(app, client):
    document = client.get("/openapi.json").get_json()
    validate(document)
    documented = {(path, method) for path, ops in document["paths"].items() for method in ops}
    for rule in app.url_map.iter_rules():
        if rule.rule in NOT_API or rule.rule.startswith("/dashboard"):
            continue  # pages for people, not the API
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert (path, method.lower()) in documented, f"{method} {path} is not documented"
