"""Dashboard sign-in with an API token; CSRF tokens.

Flask's signed cookie holds a random login id and the CSRF token, never the token. The
login itself is a record in Redis (``logins.LoginStore``) with a bounded lifetime; every
request checks the token that opened it is still in force, and logging out deletes it.
Wrong tokens count towards the same per-client back-off as the API's bearer tokens.
"""

from __future__ import annotations

import hmac
import secrets
from contextlib import contextmanager
from urllib.parse import urlsplit

from flask import (
    abort,
    current_app,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from redis.exceptions import RedisError

from dni_server.api.auth import guesses, wrong_token
from dni_server.dashboard import bp
from dni_server.dashboard.logins import LoginStore
from dni_server.errors import ApiError
from dni_server.extensions import db
from dni_server.tokens import ApiToken, Principal, principal_for

PUBLIC_ENDPOINTS = {"dashboard.login"}
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


def csrf_token() -> str:
    """This session's CSRF token, made on first use; every form posts it back."""
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


def _check_csrf() -> None:
    expected = session.get("csrf")
    given = request.form.get("csrf_token", "")
    if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
        abort(400, "The form expired or did not come from this dashboard; please try again.")


def logins() -> LoginStore:
    return current_app.extensions["dashboard_logins"]


@contextmanager
def redis_needed():
    """Without Redis no login can be checked: answer 503 rather than let anyone in."""
    try:
        yield
    except RedisError:
        raise ApiError("the dashboard cannot check logins right now; try again shortly",
                       status=503, code="unavailable") from None


def _token_in_force(record: dict) -> bool:
    """Whether the token that opened this login still opens one."""
    token_id = record.get("token_id")
    if token_id is None:  # the bootstrap admin: ends when DNI_ADMIN_TOKEN changes
        return logins().opened_by(record, current_app.extensions["dni"].settings.admin_token)
    row = db.session.get(ApiToken, token_id)
    return row is not None and row.revoked_at is None


def _signed_in() -> Principal | None:
    login_id = session.get("login")
    if not login_id:
        return None
    with redis_needed():
        record = logins().find(login_id)
        if record is not None and not _token_in_force(record):
            logins().close(login_id)
            record = None
    if record is None:
        session.pop("login", None)
        return None
    return Principal(record["scope"], record.get("publisher"), record.get("token_id"))


@bp.before_request
def require_login():
    if request.method not in SAFE_METHODS:
        _check_csrf()
    g.principal = _signed_in()
    if g.principal is None and request.endpoint not in PUBLIC_ENDPOINTS:
        return redirect(url_for("dashboard.login", next=request.full_path.rstrip("?")))
    return None


@bp.app_template_global()
def dashboard_csrf_token() -> str:
    return csrf_token()


def _local_next(target: str | None) -> str:
    """Only a dashboard path is a place to go after login (no open redirect)."""
    fallback = url_for("dashboard.report")
    if not target:
        return fallback
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/dashboard") or "\\" in target:
        return fallback
    return target


@bp.route("/login", methods=["GET", "POST"])
def login():
    error, status, headers = None, 200, {}
    if request.method == "POST":
        token = request.form.get("token", "").strip()
        # Checked before the token: once a client is backing off, a right guess gains nothing.
        if wait := guesses().wait_seconds(request.remote_addr):
            error = f"Too many wrong tokens from this address; try again in {wait} seconds."
            status, headers = 429, {"Retry-After": str(wait)}
        elif (found := _principal_of(token)) is not None:
            with redis_needed():
                login_id = logins().open(found, token)
            session.clear()  # a fresh session on login: no fixation, a new CSRF token
            session["login"] = login_id
            csrf_token()
            return redirect(_local_next(request.form.get("next")))
        else:
            if token:
                wrong_token("dashboard login token")
            error, status = "That token is not valid (or has been revoked).", 401
    return render_template("dashboard/login.html", error=error,
                           next=request.values.get("next", "")), status, headers


def _principal_of(token: str) -> Principal | None:
    if not token:
        return None
    return principal_for(db.session, token, current_app.extensions["dni"].settings.admin_token)


@bp.post("/logout")
def logout():
    if login_id := session.get("login"):
        with redis_needed():
            logins().close(login_id)  # a copied cookie stops working too
    session.clear()
    return redirect(url_for("dashboard.login"))
