"""Dashboard sign-in with an API token, kept in Flask's signed session cookie; CSRF tokens.

The cookie holds the principal (scope, publisher, token id), never the token. Every request
checks a stored token is still unrevoked, so revoking a token also ends its dashboard logins.
"""

from __future__ import annotations

import hmac
import secrets
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

from dni_server.dashboard import bp
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


def _signed_in() -> Principal | None:
    data = session.get("principal")
    if not data:
        return None
    token_id = data.get("token_id")
    if token_id is not None:
        row = db.session.get(ApiToken, token_id)
        if row is None or row.revoked_at is not None:
            session.pop("principal", None)
            return None
    return Principal(data["scope"], data.get("publisher"), token_id)


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
    error = None
    status = 200
    if request.method == "POST":
        found = principal_for(db.session, request.form.get("token", "").strip(),
                              current_app.extensions["dni"].settings.admin_token)
        if found is not None:
            session.clear()  # a fresh session on login: no fixation, a new CSRF token
            session["principal"] = {"scope": found.scope, "publisher": found.publisher,
                                    "token_id": found.token_id}
            csrf_token()
            return redirect(_local_next(request.form.get("next")))
        error, status = "That token is not valid (or has been revoked).", 401
    return render_template("dashboard/login.html", error=error,
                           next=request.values.get("next", "")), status


@bp.post("/logout")
def logout():
    session.clear()
    return redirect(url_for("dashboard.login"))
