"""Reading request bodies: JSON objects, sent as application/json or text/plain; the size
limit on bodies sent without a Content-Length (chunked)."""

from __future__ import annotations

import io
from functools import cached_property

import orjson
from flask import Request, request
from werkzeug.exceptions import ClientDisconnected, RequestEntityTooLarge
from werkzeug.wsgi import get_input_stream

from dni_server.errors import ApiError, Invalid

NUL_MESSAGE = "must not contain NUL characters"


def json_object() -> dict:
    """The body as a JSON object; 400 for anything else, 413 past the size limit.

    The snippet sends JSON as ``text/plain`` so the browser needs no CORS preflight,
    so the content type is not checked, only the bytes.
    """
    return parse_json_object(request_body())  # request_body: a 413 past MAX_CONTENT_LENGTH


def parse_json_object(raw: bytes) -> dict:
    """``raw`` as a JSON object; an ApiError (400, or 422 for a NUL) for anything else."""
    if not raw:
        raise ApiError("the request body is empty; send a JSON object", code="malformed_json")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ApiError(f"the body is not valid JSON: {exc}", code="malformed_json") from None
    if not isinstance(body, dict):
        raise ApiError("the body must be a JSON object", code="malformed_json")
    if b"\\u0000" in raw:  # cheap test first: JSON can only carry a NUL escaped
        path = nul_path(body)
        if path:
            raise Invalid("the request has invalid fields", fields={path: NUL_MESSAGE})
    return body


def request_body() -> bytes:
    """The body's bytes, cached as ``request.get_data(cache=True)`` caches them; a 413 past
    the size limit.

    A body that declares its length within the limit is read straight from the WSGI input:
    werkzeug's stream wrappers cost about as much as the rest of a heartbeat's parsing.
    Anything else (chunked, already read) takes werkzeug's way.
    """
    req = request._get_current_object()
    length = req.environ.get("CONTENT_LENGTH", "")
    if (not length.isdecimal() or not length.isascii() or "stream" in req.__dict__
            or getattr(req, "_cached_data", None) is not None):
        return req.get_data(cache=True)
    size, limit = int(length), req.max_content_length
    if limit is not None and size > limit:
        raise RequestEntityTooLarge()
    raw = req.environ["wsgi.input"].read(size) if size else b""
    if len(raw) != size:
        raise ClientDisconnected()  # as werkzeug's stream does: a body cut short is a 400
    req._cached_data = raw  # where get_data looks first, for any later reader
    return raw


def nul_path(value, path: str = "") -> str | None:
    """Where in ``value`` a string holds a NUL (which SQL text columns cannot store)."""
    if isinstance(value, str):
        return (path or "_body") if "\x00" in value else None
    items = value.items() if isinstance(value, dict) else (
        enumerate(value) if isinstance(value, list) else ())
    for key, item in items:
        if isinstance(key, str) and "\x00" in key:
            return path or "_body"
        found = nul_path(item, f"{path}.{key}" if path else str(key))
        if found:
            return found
    return None


def refuse_nul_in_query() -> None:
    """Query parameters with a NUL are a 422 naming them, before any SQL sees them."""
    query = request.environ.get("QUERY_STRING")  # on every request: no bytes copy
    if query and ("%00" in query or "\x00" in query):
        bad = {name: NUL_MESSAGE for name, value in request.args.items(multi=True)
               if "\x00" in name or "\x00" in value}
        if bad:
            raise Invalid("the request has invalid fields", fields=bad)


class BoundedRequest(Request):
    """Flask's request, but a chunked body past ``max_content_length`` is a 413.

    Werkzeug stops reading a body of unknown length at the limit and hands on what it read,
    so an oversized chunked body was parsed cut short. Here one byte past the limit is
    read, and finding it is a 413, as a Content-Length over the limit is.
    """

    @cached_property
    def stream(self):
        limit = self.max_content_length
        if (limit is not None and self.content_length is None
                and "wsgi.input_terminated" in self.environ):
            return io.BufferedReader(BoundedInput(self.environ["wsgi.input"], limit))
        return get_input_stream(self.environ, max_content_length=limit)


class BoundedInput(io.RawIOBase):
    """A stream of at most ``limit`` bytes; raises RequestEntityTooLarge if there are more."""

    def __init__(self, stream, limit: int):
        self._stream = stream
        self._left = limit

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self._stream.read(min(len(buffer), self._left + 1))
        if len(data) > self._left:
            raise RequestEntityTooLarge()
        self._left -= len(data)
        buffer[:len(data)] = data
        return len(data)
