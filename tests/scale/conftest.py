"""Fixtures of the scale-out tests: a real Redis Cluster and a private Redis per test process
(the helpers that start them, and gunicorn, are in scale_servers.py)."""

from __future__ import annotations

import pytest
from scale_servers import start_cluster, start_redis


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
