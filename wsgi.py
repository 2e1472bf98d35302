"""gunicorn entry point: ``gunicorn wsgi:app``."""

from dni_server import create_app

app = create_app()
