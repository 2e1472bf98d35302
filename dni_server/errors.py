"""One JSON error shape for every failure: {"error": {"code", "message", "fields"?}}."""

from __future__ import annotations

import logging

from flask import Flask, jsonify
from marshmallow import ValidationError
from sqlalchemy.exc import (
    DisconnectionError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error a client caused; carries its HTTP status and a stable code."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, fields: dict | None = None, status: int | None = None,
                 code: str | None = None, retry_after: int | None = None):
        super().__init__(message)
        self.message = message
        self.fields = fields
        self.retry_after = retry_after  # seconds, sent as Retry-After (429s and 503s)
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code


class NotFound(ApiError):
    status, code = 404, "not_found"


class Unauthorized(ApiError):
    status, code = 401, "unauthorized"


class Forbidden(ApiError):
    status, code = 403, "forbidden"


class Conflict(ApiError):
    status, code = 409, "conflict"


class Invalid(ApiError):
    status, code = 422, "invalid"


def error_payload(code: str, message: str, fields: dict | None = None) -> dict:
    """The one JSON error shape: ``{"error": {"code", "message"[, "fields"]}}``."""
    body: dict = {"code": code, "message": message}
    if fields:
        body["fields"] = fields
    return {"error": body}


def error_response(status: int, code: str, message: str, fields: dict | None = None):
    return _json_answer(status, error_payload(code, message, fields))


def _json_answer(status: int, payload: dict, headers: dict | None = None):
    response = jsonify(payload)
    response.status_code = status
    response.headers.update(headers or {})
    return response


HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
              405: "method_not_allowed", 409: "conflict", 413: "too_large",
              415: "unsupported_media_type", 422: "invalid", 429: "rate_limited",
              503: "unavailable"}
# The database could not be reached or answer in time (psycopg's and sqlite3's
# OperationalError arrive wrapped in SQLAlchemy's): a 503. Any other SQL error is a bug.
CONNECTION_ERRORS = (OperationalError, InterfaceError, DisconnectionError, PoolTimeout)


def database_unreachable(exc: SQLAlchemyError) -> bool:
    """Whether ``exc`` says the database is away, rather than that a statement is wrong."""
    if getattr(exc, "connection_invalidated", False):
        return True
    if not isinstance(exc, CONNECTION_ERRORS):
        return False
    # sqlite3 raises OperationalError for a wrong statement too ("no such table", a syntax
    # error), with the generic code SQLITE_ERROR; a locked or missing file has its own.
    return getattr(getattr(exc, "orig", None), "sqlite_errorname", None) != "SQLITE_ERROR"


def error_answer(exc: Exception) -> tuple[int, dict, dict]:
    """What the app answers for ``exc`` (an ApiError, an SQL error or a bug): status, JSON
    payload and extra headers. Flask's handlers and the snippet's front (snippet_front) both
    answer with it."""
    if isinstance(exc, ApiError):
        headers = {} if exc.retry_after is None else {"Retry-After": str(exc.retry_after)}
        return exc.status, error_payload(exc.code, exc.message, exc.fields), headers
    if isinstance(exc, SQLAlchemyError) and database_unreachable(exc):
        # The database is away (calls and leases have their own paths around this): say
        # so and when to come back, rather than a bare 500. The snippet retries later and
        # leaves the page's own numbers in place meanwhile.
        log.warning("database unavailable: %s", exc.__class__.__name__)
        return 503, error_payload("unavailable", "the database is unavailable; try again "
                                  "shortly"), {"Retry-After": "5"}
    # A bug (a wrong SQL statement included: retrying will not help), never the client's
    # fault: log it whole, say little.
    log.error("unhandled error", exc_info=exc)
    return 500, error_payload("internal", "internal error"), {}


def answer_error(exc: Exception):
    """``error_answer`` as a Flask response."""
    return _json_answer(*error_answer(exc))


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(ApiError, answer_error)
    app.register_error_handler(SQLAlchemyError, answer_error)

    @app.errorhandler(ValidationError)
    def validation_error(exc: ValidationError):
        fields = exc.messages if isinstance(exc.messages, dict) else {"_body": exc.messages}
        return error_response(422, "invalid", "the request has invalid fields", fields)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        status = exc.code or 500
        response = error_response(status, HTTP_CODES.get(status, "error"),
                                  exc.description or exc.name)
        if status == 405 and exc.get_response().headers.get("Allow"):
            response.headers["Allow"] = exc.get_response().headers["Allow"]
        return response

    app.register_error_handler(Exception, answer_error)
