"""The server-rendered dashboard: reports, calls, pool health and static numbers.

Register with ``app.register_blueprint(dashboard.bp)``. Views are thin: the numbers come from
``attribution`` (reports, call log, pool health), the same code the admin API runs.
"""

from __future__ import annotations

from flask import Blueprint
from flask.sessions import SecureCookieSessionInterface

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
    app.session_interface = DashboardSessions()


class DashboardSessions(SecureCookieSessionInterface):
    """Only the dashboard has a login cookie; every other request skips reading one.

    Opening the signed cookie builds a serializer each time: tens of microseconds that the
    snippet API and webhooks, which never log in, would pay on every request.
    """

    def open_session(self, app, request):
        if not request.path.startswith(bp.url_prefix):
            return self.make_null_session(app)
        return super().open_session(app, request)


from dni_server.dashboard import auth, views  # noqa: E402, F401  (routes register on bp)
