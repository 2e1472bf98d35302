"""The snippet's touches: a tap on a tel: link showing a leased number, or a copy of one.

Public and CORS-open like the rest of the snippet API, sent as a beacon (text/plain JSON).
No SQL on this path: the session id names its pools, and one script per pool checks that
the session holds the number and records the touch (pools/touches.py).
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app
from marshmallow import ValidationError, fields, validate, validates

from dni_server.api.body import json_object
from dni_server.api.cors import enable_cors
from dni_server.api.schemas import Loose
from dni_server.errors import ApiError, NotFound
from dni_server.openapi import documented
from dni_server.timefmt import now_ms
from pools.errors import PoolUnavailable, WrongSite
from pools.touches import KINDS, TOUCH_LIMIT, shown_digits

bp = Blueprint("touches", __name__)
enable_cors(bp)


class TouchRequestSchema(Loose):
    site = fields.String(required=True, validate=validate.Length(min=1, max=64),
                         metadata={"description": "the site's public key"})
    number = fields.String(required=True, validate=validate.Length(min=1, max=64), metadata={
        "description": "the tracking number touched, as the page showed it (any layout, "
                       "international or national): only the number the session holds is "
                       "recorded"})
    kind = fields.String(required=True, validate=validate.OneOf(KINDS), metadata={
        "description": "click: a tap on a tel: link; copy: the number copied"})

    @validates("number")
    def has_digits(self, value: str, **_) -> None:
        if not 6 <= len(shown_digits(value)) <= 20:
            raise ValidationError("must be a phone number (6 to 20 digits)")


touch_request = TouchRequestSchema()


@bp.post("/v1/sessions/<session_id>/touch")
@documented("Report a tap on a tel: link showing the session's number, or a copy of it",
            None, status=204, body=TouchRequestSchema, public=True, errors=(
                400, (404, "unknown session"), 413, 422,
                (503, "Redis is unavailable: nothing recorded (see Retry-After)")))
def touch(session_id: str):
    """Record the touch where the session holds the number; 204 whether or not it did (a
    touch of another number is ignored), and past the session's limit too."""
    body = touch_request.load(json_object())
    ctx = current_app.extensions["dni"].sessions
    pool_ids = ctx.ids.pools(session_id)
    if pool_ids is None:
        raise NotFound("unknown session", code="unknown_session")
    try:
        outcomes = ctx.pools.touch(pool_ids, session_id, body["site"], body["number"],
                                   body["kind"], now_ms(),
                                   limit=TOUCH_LIMIT if ctx.rate_limit > 0 else 0)
    except PoolUnavailable:
        raise ApiError("Redis is unavailable; the touch was not recorded", status=503,
                       code="unavailable", retry_after=5) from None
    if any(isinstance(out, WrongSite) for out in outcomes):
        raise NotFound("unknown session", code="unknown_session")
    return Response(status=204)
