"""The admin bearer token, compared in constant time."""

from __future__ import annotations

import hmac

from flask import Blueprint, current_app, request

from dni_server.errors import Unauthorized


def require_admin_token() -> None:
    token = current_app.extensions["dni"].settings.admin_token
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if not token or scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode(), token.encode()
    ):
        raise Unauthorized("a valid admin token is required: Authorization: Bearer <token>")


def admin_only(bp: Blueprint) -> Blueprint:
    bp.before_request(require_admin_token)
    return bp
