"""Reading request bodies: JSON objects, sent as application/json or text/plain."""

from __future__ import annotations

import orjson
from flask import request

from dni_server.errors import ApiError


def json_object() -> dict:
    """The body as a JSON object; 400 for anything else, 413 past the size limit.

    The snippet sends JSON as ``text/plain`` so the browser needs no CORS preflight,
    so the content type is not checked, only the bytes.
    """
    raw = request.get_data(cache=True)  # raises 413 past MAX_CONTENT_LENGTH
    if not raw:
        raise ApiError("the request body is empty; send a JSON object", code="malformed_json")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ApiError(f"the body is not valid JSON: {exc}", code="malformed_json") from None
    if not isinstance(body, dict):
        raise ApiError("the body must be a JSON object", code="malformed_json")
    return body
