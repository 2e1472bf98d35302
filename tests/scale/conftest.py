"""Fixtures of the scale-out tests: a real Redis Cluster and a private Redis per test process
(the helpers that start them, and gunicorn, are in scale_servers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from scale_servers import start_cluster, start_redis

HERE = Path(__file__).resolve().parent


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items):
    """The scale tests start a Redis Cluster and gunicorn instances: all `slow`, so that
    `make test-fast` leaves them out."""
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory):
    """A real three-primary Redis Cluster for this test process, gone afterwards."""
    cluster = start_cluster(str(tmp_path_factory.mktemp("redis-cluster")))
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def private_redis(tmp_path_factory):
    """A plain redis-server of this test process (never the machine's 6379)."""
    node = start_redis(str(tmp_path_factory.mktemp("redis-private")))
    yield node
    node.stop()
