"""The snippet's two page-view calls, answered ahead of Flask.

Every page view of every visitor makes one of two calls: ``POST /v1/sessions`` or
``POST /v1/sessions/<id>/heartbeat``. For them, Flask's request machinery (two contexts, the
URL map, the hooks, a Response object) cost more CPU than all of the calls' own Python. This
WSGI layer answers their ordinary form straight from the environ, with the views' own
functions (``cors.page_site``, ``sessions.new_session_answer``, ``sessions.heartbeat_answer``) and the same
answer bytes and headers, and does on its way what the app's hooks do for every request: the
request id (header and log context), the latency histogram, the closing log line and the
CORS grant.

Anything else goes to Flask untouched (its body handed on), which answers as it always has,
so every error keeps one definition: another method or path, a query string, a body without
a length or past the limit, one that is not a valid request, an unknown site or session, a
page outside the site's domains, a database that cannot be reached. All of these are found
before anything is leased or renewed, so Flask doing the work again changes nothing.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from http import HTTPStatus

from marshmallow import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from dni_server import logs, metrics
from dni_server.api import sessions as views
from dni_server.api.body import parse_json_object
from dni_server.api.cors import GRANT, answer_bytes, page_site
from dni_server.errors import ApiError, error_answer

SESSIONS = "/v1/sessions"
HEARTBEAT = "/heartbeat"


class HandOn(Exception):
    """Not this layer's to answer: Flask answers it."""


class SnippetFront:
    """WSGI middleware: the snippet's calls here, everything else to ``flask_wsgi``."""

    def __init__(self, app, flask_wsgi: Callable):
        self.app = app
        self.flask_wsgi = flask_wsgi

    def __call__(self, environ: dict, start_response):
        path = environ.get("PATH_INFO", "")
        if environ.get("REQUEST_METHOD") != "POST" or environ.get("QUERY_STRING") \
                or not path.startswith(SESSIONS):
            return self.flask_wsgi(environ, start_response)
        if path == SESSIONS:
            endpoint, session_id = "sessions.create_session", None
        else:
            session_id = path[len(SESSIONS) + 1:-len(HEARTBEAT)]
            if (path[len(SESSIONS)] != "/" or not path.endswith(HEARTBEAT) or not session_id
                    or "/" in session_id or not session_id.isascii()):
                return self.flask_wsgi(environ, start_response)
            endpoint = "sessions.heartbeat"
        raw = self._body(environ)
        if raw is None:
            return self.flask_wsgi(environ, start_response)

        started = time.perf_counter()
        request_id = logs.request_id_for(environ.get("HTTP_X_REQUEST_ID"))
        token = logs.REQUEST_ID.set(request_id)  # on every log line written meanwhile
        try:
            answered = self._respond(environ, raw, session_id, start_response, request_id)
            if answered is not None:
                metrics.observe_latency(endpoint, answered[0], started)
                logs.log_request("POST", path, answered[0], started, endpoint, snippet=True)
        finally:
            logs.REQUEST_ID.reset(token)
        if answered is None:
            environ["wsgi.input"] = io.BytesIO(raw)  # what this read, for Flask to read again
            return self.flask_wsgi(environ, start_response)
        return [answered[1]]

    def _respond(self, environ: dict, raw: bytes, session_id: str | None, start_response,
                 request_id: str) -> tuple[int, bytes] | None:
        """Start the response and return its status and body; None to hand it on."""
        try:
            status, payload, extra = 200, self._answer(environ, raw, session_id), ()
        except HandOn:
            return None
        except Exception as exc:  # noqa: BLE001 - answered as Flask's handlers answer it
            status, payload, headers = error_answer(exc)
            extra = tuple(headers.items())
        body = answer_bytes(payload)
        start_response(f"{status} {HTTPStatus(status).phrase.upper()}", [
            ("Content-Type", "application/json"), *extra, GRANT,
            ("Content-Length", str(len(body))), (logs.HEADER, request_id)])
        return status, body

    def _body(self, environ: dict) -> bytes | None:
        """The body, when it declares a length within the limit and arrives whole; else
        None, with whatever was read put back for Flask."""
        length = environ.get("CONTENT_LENGTH", "")
        limit = self.app.config["MAX_CONTENT_LENGTH"] or 0
        if not (length.isdecimal() and length.isascii()) or not 0 < int(length) <= limit:
            return None
        raw = environ["wsgi.input"].read(int(length))
        if len(raw) != int(length):
            environ["wsgi.input"] = io.BytesIO(raw)  # Flask answers a body cut short
            return None
        return raw

    def _answer(self, environ: dict, raw: bytes, session_id: str | None) -> dict:
        """The call's answer; HandOn for anything refused before a number is leased or
        renewed (Flask then answers it). Errors past that point are raised."""
        ctx = self.app.extensions["dni"].sessions
        try:
            body = parse_json_object(raw)
            if session_id is not None:
                return views.heartbeat_answer(ctx, session_id, views.heartbeat_request.load(body))
            body = views.session_request.load(body)
            site = page_site(ctx.sites, body["site"], environ)
        except (ApiError, ValidationError):
            raise HandOn() from None
        except SQLAlchemyError:
            if session_id is None:  # the site's lookup: nothing is leased yet
                raise HandOn() from None
            raise  # a heartbeat reloading a lost pool: some of its pools may be renewed
        return views.new_session_answer(ctx, site, body, environ)
