"""The server-rendered dashboard: reports, calls, pool health and static numbers.

Register with ``app.register_blueprint(dashboard.bp)``. Views are thin: the numbers come from
``attribution`` (reports, call log, pool health), the same code the admin API runs.
"""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("dashboard", __name__, url_prefix="/dashboard", template_folder="templates")


@bp.record_once
def _configure(state) -> None:
    """Sign the session cookie with the service's secret, HttpOnly and SameSite=Lax."""
    app = state.app
    if not app.secret_key:
        app.secret_key = app.extensions["dni"].settings.secret_key
    app.config["SESSION_COOKIE_HTTPONLY"] = True
    if app.config.get("SESSION_COOKIE_SAMESITE") is None:
        app.config["SESSION_COOKIE_SAMESITE"] = "Lax"


from dni_server.dashboard import auth, views  # noqa: E402, F401  (routes register on bp)
