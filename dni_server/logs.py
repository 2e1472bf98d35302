"""Logs: one line per record, JSON (``DNI_LOG_FORMAT=json``) or text, with a request id.

Every request gets an id: the caller's ``X-Request-Id`` when it is safe to echo (letters,
digits, ``._:-``, at most 128 characters), else a new one. It comes back in the response
header and is on every log line written while the request runs (a filter reads it from a
context variable), and each request ends with one line: method, path (never the query
string, which carries click ids), status, duration.
"""

from __future__ import annotations

import contextvars
import logging
import os
import random
import re
import sys
import time

from flask import Flask, Response, g, request
from gunicorn.glogging import Logger as GunicornBaseLogger
from pythonjsonlogger.orjson import OrjsonFormatter

HEADER = "X-Request-Id"
SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("dni_request_id",
                                                                        default=None)
request_log = logging.getLogger("dni_server.requests")


class RequestIdFilter(logging.Filter):
    """Stamp each record with the id of the request being served (None outside one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        return True


class StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record comes (test runners swap it)."""

    def __init__(self):
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value):
        pass


class TextFormatter(logging.Formatter):
    """``time level logger [request id] message``; ``-`` outside a request."""

    def __init__(self):
        super().__init__("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        values = dict(record.__dict__)
        values["request_id"] = values.get("request_id") or "-"
        return self._fmt % values


def make_formatter(log_format: str) -> logging.Formatter:
    if log_format == "json":
        # process: which gunicorn worker wrote the line. orjson: the stdlib encoder took
        # about five times as long per line.
        return OrjsonFormatter("%(levelname)s %(name)s %(process)d %(message)s", timestamp="time",
                             rename_fields={"levelname": "level", "name": "logger"})
    return TextFormatter()


def configure_logging(log_format: str, level: str = "INFO") -> None:
    """Send every record to stderr in ``log_format``; safe to call again (tests build many apps).

    Plain console handlers others installed on the root logger (alembic's ``fileConfig``,
    run by the migrations at boot, adds one) are replaced, so no line escapes the format;
    subclasses of them (pytest's capture handlers) are left alone.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "dni_console", False) or type(handler) is logging.StreamHandler:
            root.removeHandler(handler)
    handler = StderrHandler()
    handler.dni_console = True
    handler.setFormatter(make_formatter(log_format))
    handler.addFilter(RequestIdFilter())
    root.addHandler(handler)
    root.setLevel(level)
    # fileConfig also disables every logger that existed before it ran: ours, and
    # gunicorn's (its "Listening at" and worker lines would vanish).
    for logger in list(logging.root.manager.loggerDict.values()):
        if isinstance(logger, logging.Logger):
            logger.disabled = False


# Request ids correlate log lines; they guard nothing (a caller may send any id it likes), so
# they come from a generator seeded from the OS once per process rather than from a
# getrandom() system call per request. Reseeded in each forked worker, so that no two
# workers share a sequence.
_ids = random.Random()
os.register_at_fork(after_in_child=_ids.seed)


def request_id_for(incoming: str | None) -> str:
    if incoming and SAFE_ID.fullmatch(incoming):
        return incoming
    # 32 hex digits, like uuid4().hex, without building a UUID object on every request.
    return f"{_ids.getrandbits(128):032x}"


# These hooks run on every request, heartbeats included. Each `g.x` or `request.x` goes
# through a context-local proxy (a failed attribute lookup, then a forwarded one), and
# `request.headers` builds a headers object: so each hook resolves a proxy once, with
# `_get_current_object()`, and reads the one header it needs from the WSGI environ.


def _begin_request() -> None:
    ctx = g._get_current_object()
    # The environ key of the X-Request-Id header, as `request.headers` would look it up.
    environ = request._get_current_object().environ
    request_id = request_id_for(environ.get("HTTP_X_REQUEST_ID"))
    ctx.request_id = request_id
    ctx.log_context = REQUEST_ID.set(request_id)
    ctx.request_started = time.perf_counter()  # the latency histogram reads it too


def _end_request(response: Response) -> Response:
    ctx = g._get_current_object()
    request_id = getattr(ctx, "request_id", None)
    if request_id is None:
        return response
    response.headers[HEADER] = request_id
    req = request._get_current_object()
    log_request(req.method, req.path, response.status_code, ctx.request_started,
                req.endpoint, snippet=req.blueprint == "sessions")
    return response


def log_request(method: str, path: str, status: int, started: float, endpoint: str | None,
                snippet: bool = False) -> None:
    """The request's one closing line (``started``: its ``time.perf_counter``)."""
    # The snippet API answers every page view of every visitor: its successes are counted
    # in /metrics and logged only at DEBUG, which keeps a log write off the hottest path.
    level = logging.DEBUG if status < 400 and snippet else logging.INFO
    if not request_log.isEnabledFor(level):
        return
    duration_ms = round((time.perf_counter() - started) * 1000, 2)
    # A decoded path may hold a newline (%0A): quoted, it cannot forge a text log line.
    path = path if path.isprintable() else repr(path)
    request_log.log(level, "%s %s %s %.1f ms", method, path, status, duration_ms,
                    extra={"method": method, "path": path, "status": status,
                           "duration_ms": duration_ms, "endpoint": endpoint})


def _forget_request(_exc) -> None:
    token = vars(g._get_current_object()).pop("log_context", None)
    if token is not None:
        REQUEST_ID.reset(token)


def init_app(app: Flask) -> None:
    # Registered first, so the id exists before any other hook can log.
    app.before_request_funcs.setdefault(None, []).insert(0, _begin_request)
    app.after_request(_end_request)
    app.teardown_request(_forget_request)


class GunicornLogger(GunicornBaseLogger):
    """gunicorn's own log (and its access log, when on) in the app's format."""

    def setup(self, cfg) -> None:
        super().setup(cfg)
        from dni_server.config import load_settings

        log_format = load_settings({"DNI_LOG_FORMAT": os.environ.get("DNI_LOG_FORMAT", "json")
                                    }).log_format
        if log_format != "json":
            return
        for handler in self.error_log.handlers + self.access_log.handlers:
            handler.setFormatter(make_formatter("json"))
            handler.addFilter(RequestIdFilter())
