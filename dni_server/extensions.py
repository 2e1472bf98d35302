"""Unbound extension objects; ``create_app`` binds them to each app."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import current_app
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy

from pools.models import Base

if TYPE_CHECKING:
    from dni_server import Services


class _SQLAlchemy(SQLAlchemy):
    """Flask-SQLAlchemy, minus its teardown's cost on requests that never opened a session."""

    def _teardown_session(self, exc: BaseException | None) -> None:
        # The scoped session keeps one session per app context in a dict. When it is empty,
        # no context (this one included) opened a session and `remove()` has nothing to
        # close; it would still resolve the app context twice, on every heartbeat. Should
        # the registry ever be something else, the ordinary teardown runs.
        sessions = getattr(self.session.registry, "registry", None)
        if type(sessions) is dict and not sessions:
            return
        super()._teardown_session(exc)


db = _SQLAlchemy(model_class=Base)
migrate = Migrate()


def services() -> Services:
    """The current app's shared wiring (Redis clients, pools, routes...), set by ``create_app``."""
    return current_app.extensions["dni"]
