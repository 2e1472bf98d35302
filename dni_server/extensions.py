"""Unbound extension objects; ``create_app`` binds them to each app."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import current_app
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy

from pools.models import Base

if TYPE_CHECKING:
    from dni_server import Services

db = SQLAlchemy(model_class=Base)
migrate = Migrate()


def services() -> Services:
    """The current app's shared wiring (Redis clients, pools, routes...), set by ``create_app``."""
    return current_app.extensions["dni"]
