"""The OpenAPI document of the HTTP API, served at /openapi.json.

Each JSON view names what it answers with ``@documented``: the response schema it dumps with,
its success status, the error statuses it may answer and its request body. The document is
built from those marks and the app's URL map (dni_server/openapi_spec.py), so it cannot drift
from the code that answers.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import Blueprint, current_app, jsonify

bp = Blueprint("openapi", __name__)


@dataclass(frozen=True)
class Operation:
    """One view's entry in the document."""

    summary: str
    reply: object  # the marshmallow schema (class or instance) the view dumps with; None: a file
    status: int = 200
    # Statuses, or (status, when it is answered); those below 400 answer ``reply`` too.
    errors: tuple = ()
    body: object = None  # the request body's schema
    query: tuple = ()  # (name, description, JSON schema) of each query parameter
    public: bool = False  # no bearer token (the snippet API)
    other_content: dict | None = None  # other media types of the success answer, e.g. CSV


def documented(summary: str, reply, *, status: int = 200, errors: tuple = (),
               body=None, query: tuple = (), public: bool = False,
               other_content: dict | None = None):
    """Mark a view for /openapi.json with the schema its answer is dumped with."""
    operation = Operation(summary, reply, status, tuple(errors), body, tuple(query), public,
                          other_content)

    def mark(view):
        view.openapi = operation
        return view

    return mark


@bp.get("/openapi.json")
def openapi_json():
    from dni_server.openapi_spec import build_spec

    app = current_app._get_current_object()
    if "openapi" not in app.extensions:  # built once per app: the routes do not change
        app.extensions["openapi"] = build_spec(app)
    return jsonify(app.extensions["openapi"])
