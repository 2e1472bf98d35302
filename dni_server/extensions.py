"""Unbound extension objects; ``create_app`` binds them to each app."""

from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy

from pools.models import Base

db = SQLAlchemy(model_class=Base)
migrate = Migrate()
