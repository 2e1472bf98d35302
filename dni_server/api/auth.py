"""Bearer tokens on the admin API: who is asking, and what they may see and change."""

from __future__ import annotations

import logging

from flask import Blueprint, current_app, g, request

from dni_server.errors import ApiError, Forbidden, Unauthorized
from dni_server.extensions import db
from dni_server.guesses import GuessLimiter
from dni_server.tokens import Principal, principal_for

log = logging.getLogger(__name__)

READ_METHODS = {"GET", "HEAD", "OPTIONS"}
# Admin bodies may list up to 10,000 numbers; the public API keeps DNI_MAX_BODY_BYTES.
ADMIN_MAX_BODY_BYTES = 2 * 1024 * 1024


def guesses() -> GuessLimiter:
    """The back-off on wrong tokens (API, dashboard login and /metrics share it)."""
    services = current_app.extensions["dni"]
    limit, window = services.settings.auth_failures
    return GuessLimiter(services.redis, services.settings.redis_prefix, limit, window)


def refuse_guessers() -> None:
    """429 for a client that sent too many wrong tokens lately. Checked before its token is
    looked at: once a client is backing off, a right guess gains nothing."""
    if wait := guesses().wait_seconds(request.remote_addr):
        raise ApiError(f"too many wrong tokens from this address; retry in {wait} s",
                       status=429, code="rate_limited", retry_after=wait)


def wrong_token(what: str) -> None:
    """Count and log a wrong token (the address, never the token itself)."""
    log.warning("wrong %s from %s on %s", what, request.remote_addr, request.path)
    guesses().failed(request.remote_addr)


def bearer_token() -> str | None:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return given.strip() if scheme.lower() == "bearer" else None


def authenticate() -> None:
    request.max_content_length = max(ADMIN_MAX_BODY_BYTES,
                                     current_app.config["MAX_CONTENT_LENGTH"] or 0)
    refuse_guessers()
    given = bearer_token()
    found = principal_for(db.session, given,
                          current_app.extensions["dni"].settings.admin_token) if given else None
    if found is None:
        if given:
            wrong_token("bearer token")
        raise Unauthorized("a valid token is required: Authorization: Bearer <token>")
    if request.method not in READ_METHODS and not found.can_write:
        raise Forbidden(f"a {found.scope} token cannot make changes")
    g.principal = found


def principal() -> Principal:
    return g.principal


def publisher_scope() -> str | None:
    """The publisher a request is limited to, or None for admin and read-only tokens."""
    return g.principal.publisher if g.principal.scope == "publisher" else None


def visible(row) -> bool:
    """Whether the caller may see ``row`` (which carries a publisher label)."""
    scope = publisher_scope()
    return row is not None and (scope is None or row.publisher == scope)


def scoped(query, publisher_column):
    """``query`` limited to the caller's publisher, when the caller has one."""
    scope = publisher_scope()
    return query if scope is None else query.where(publisher_column == scope)


def deny_publishers() -> None:
    if g.principal.scope == "publisher":
        raise Forbidden("a publisher token cannot see this")


def require_admin() -> None:
    if g.principal.scope != "admin":
        raise Forbidden("an admin token is required")


def token_required(bp: Blueprint) -> Blueprint:
    """Every route of ``bp`` needs a token; only admin tokens may change anything."""
    bp.before_request(authenticate)
    return bp
