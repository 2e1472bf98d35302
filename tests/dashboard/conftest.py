"""Fixtures for the dashboard tests (helpers and the data set are in dashboard_data.py)."""

from __future__ import annotations

import pytest
from dashboard_data import seed, with_dashboard


@pytest.fixture
def dash_app(app):
    return with_dashboard(app)


@pytest.fixture
def data(dash_app, admin):
    return seed(dash_app, admin)
