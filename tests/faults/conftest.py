"""Fixtures of the fault tests: private servers (helpers in faultkit.py), never the machine's
own Redis (6379) or PostgreSQL (5432)."""

from __future__ import annotations

import os
import secrets
import subprocess

import pytest
import sqlalchemy as sa
from faultkit import PrivatePostgres, PrivateRedis, Service
from sqlalchemy.pool import NullPool

from bench.harness import migrate


@pytest.fixture
def private_redis(tmp_path):
    server = PrivateRedis(str(tmp_path))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def private_postgres():
    """One cluster per test process, with a migrated template database."""
    server = PrivatePostgres()
    try:
        admin = sa.create_engine(server.url(), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text('CREATE DATABASE "template_dni"'))
        admin.dispose()
        migrate({**os.environ, "DATABASE_URL": server.url("template_dni"),
                 "REDIS_URL": "redis://127.0.0.1:1/0", "DNI_SECRET_KEY": "x" * 20})
        yield server
    finally:
        server.destroy()


@pytest.fixture
def fault_database(private_postgres):
    """A fresh, migrated database on the private cluster (copied from the template)."""
    name = f"dni_fault_{secrets.token_hex(4)}"
    # No pooled connection: the test may restart the server under it.
    admin = sa.create_engine(private_postgres.url(), isolation_level="AUTOCOMMIT",
                             poolclass=NullPool)
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}" TEMPLATE "template_dni"'))
    yield private_postgres.url(name)
    try:
        private_postgres.start()  # a test may leave it stopped when it fails
    except subprocess.CalledProcessError:
        pass  # it was running
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def start_service(tmp_path):
    started: list[Service] = []

    def start(database_url: str, redis_url: str, *, worker: bool = True, **extra) -> Service:
        logdir = tmp_path / f"service{len(started)}"
        logdir.mkdir()
        service = Service(database_url, redis_url, str(logdir), worker=worker, **extra)
        started.append(service)
        return service

    yield start
    for service in started:
        service.stop()
