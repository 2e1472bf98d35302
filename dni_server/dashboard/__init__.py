"""The server-rendered dashboard: reports, calls, pool health and static numbers.

Register with ``app.register_blueprint(dashboard.bp)``. Views are thin: the numbers come from
``attribution`` (reports, call log, pool health), the same code the admin API runs.
"""

from __future__ import annotations

from flask import Blueprint, request
from flask.sessions import SecureCookieSessionInterface

bp = Blueprint("dashboard", __name__, url_prefix="/dashboard", template_folder="templates")


@bp.record_once
def _configure(state) -> None:
    """Sign the session cookie with a key of its own, HttpOnly and SameSite=Lax; logins in Redis."""
    from dni_server.dashboard.logins import LoginStore
    from dni_server.tokens import derive_key

    app = state.app
    services = app.extensions["dni"]
    settings = services.settings
    # Derived for this use only: visitor session ids are signed with another key. With
    # DNI_DASHBOARD_SECRET set, the dashboard's keys come from it, so rotating it ends every
    # dashboard login and no visitor's session (and rotating DNI_SECRET_KEY the reverse).
    secret = settings.dashboard_secret or settings.secret_key
    if not app.secret_key:
        app.secret_key = derive_key(secret, "dashboard cookies")
    app.extensions["dashboard_logins"] = LoginStore(
        services.redis_admin, settings.redis_prefix, settings.dashboard_session_hours * 3600,
        derive_key(secret, "dashboard login fingerprints"))
    app.config["SESSION_COOKIE_HTTPONLY"] = True
    if (settings.public_url or "").startswith("https://"):
        app.config["SESSION_COOKIE_SECURE"] = True
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

    def get_cookie_secure(self, app) -> bool:
        """Secure when the public URL is https (set at boot) or this request came over https
        (with DNI_PROXY_HOPS, the scheme the trusted proxy was reached with)."""
        return super().get_cookie_secure(app) or request.scheme == "https"


from dni_server.dashboard import auth, views  # noqa: E402, F401  (routes register on bp)
