"""The OpenAPI document of the HTTP API, served at /openapi.json."""

from __future__ import annotations

from flask import Blueprint, jsonify

bp = Blueprint("openapi", __name__)


@bp.get("/openapi.json")
def openapi_json():
    from dni_server.openapi_spec import build_spec

    return jsonify(build_spec())
