"""Shared wiring: the SQL cache mirrored in Redis (``pools.mirror``), and which SQL errors
are an outage (503, come back later) and which a bug (500)."""

from __future__ import annotations

import logging

import pytest
from flask import jsonify
from sqlalchemy import create_engine, select, text, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import sessionmaker

from dni_server.extensions import db
from factories import ADMIN_TOKEN, AdminClient, make_site
from pools.keys import site_mirror_key
from pools.mirror import MirroredCache
from pools.models import Site

NO_DATABASE = "postgresql+psycopg://postgres@127.0.0.1:9/none"  # port 9: refused at once
TTL = 5.0


class Clock:
    """A clock the test moves by hand."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class SiteNames:
    """Reads a site's name from SQL, counting the reads; ``down()`` cuts SQL off."""

    def __init__(self, session_factory):
        self.session_factory = session_factory
        self.reads = 0

    def __call__(self, site_key: str) -> str | None:
        self.reads += 1
        with self.session_factory() as session:
            return session.scalar(select(Site.name).where(Site.key == site_key))

    def down(self) -> None:
        self.session_factory = sessionmaker(bind=create_engine(NO_DATABASE))


def name_cache(load, redis, clock, **options) -> MirroredCache:
    return MirroredCache(load, redis=redis, key=site_mirror_key, encode=str, decode=str,
                         ttl_seconds=TTL, clock=clock, **options)


def rename(app, site_key: str, name: str) -> None:
    with app.app_context():
        db.session.execute(update(Site).where(Site.key == site_key).values(name=name))
        db.session.commit()


@pytest.fixture
def site(admin) -> dict:
    return make_site(admin, name="Before")


@pytest.fixture
def sql(app) -> SiteNames:
    return SiteNames(app.extensions["dni"].session_factory)


# -- the mirrored cache ------------------------------------------------------------------


def test_a_value_is_read_from_sql_once_per_ttl(app, site, sql, redis_client):
    clock = Clock()
    cache = name_cache(sql, redis_client, clock)
    assert cache.get(site["key"]) == "Before"
    rename(app, site["key"], "After")
    clock.now += TTL - 0.1
    assert cache.get(site["key"]) == "Before"  # still within its time
    assert sql.reads == 1

    clock.now += 0.2
    assert cache.get(site["key"]) == "After"
    assert sql.reads == 2
    assert redis_client.get(site_mirror_key(site["key"])) == "After"  # the copy follows


def test_invalidate_reads_sql_again_at_once(app, site, sql, redis_client):
    cache = name_cache(sql, redis_client, Clock())
    assert cache.get(site["key"]) == "Before"
    rename(app, site["key"], "After")
    cache.invalidate(site["key"])
    assert cache.get(site["key"]) == "After"


def test_without_sql_the_last_value_read_keeps_serving(site, sql, redis_client):
    clock = Clock()
    cache = name_cache(sql, redis_client, clock)
    assert cache.get(site["key"]) == "Before"
    redis_client.delete(site_mirror_key(site["key"]))  # not the Redis copy: this process's
    sql.down()
    clock.now += TTL * 3
    assert cache.get(site["key"]) == "Before"


def test_a_fresh_process_without_sql_is_served_from_the_redis_copy(site, sql, redis_client):
    assert name_cache(sql, redis_client, Clock()).get(site["key"]) == "Before"
    assert redis_client.get(site_mirror_key(site["key"])) == "Before"

    sql.down()
    fresh = name_cache(sql, redis_client, Clock())  # another process: nothing cached
    assert fresh.get(site["key"]) == "Before"


def test_without_sql_nor_a_copy_the_sql_error_is_raised_or_the_default_served(
        sql, redis_client):
    sql.down()
    with pytest.raises(OperationalError):
        name_cache(sql, redis_client, Clock()).get("never-seen")
    assert name_cache(sql, redis_client, Clock(), default=lambda: "none").get(
        "never-seen") == "none"


def test_unknown_names_are_cached_but_never_mirrored(sql, redis_client):
    cache = name_cache(sql, redis_client, Clock())
    assert cache.get("no-such-site") is None
    assert cache.get("no-such-site") is None
    assert sql.reads == 1
    assert redis_client.exists(site_mirror_key("no-such-site")) == 0


def test_the_site_directory_and_the_forwarding_map_use_pools_keys(app, admin, redis_client):
    from pools.keys import route_mirror_key

    services = app.extensions["dni"]
    site = make_site(admin)
    services.sessions.sites.get(site["key"])
    services.routes.routes()
    assert redis_client.exists(site_mirror_key(site["key"])) == 1
    assert redis_client.exists(route_mirror_key()) == 1


# -- SQL errors: an outage or a bug ------------------------------------------------------


@pytest.mark.parametrize("statement", [
    "SELECT no_such_column FROM no_such_table",  # sqlite3 calls it an OperationalError too
    "SELECT :missing_parameter",
])
def test_a_wrong_statement_is_a_logged_500_in_the_error_shape(make_app, caplog, statement):
    app = make_app()

    @app.get("/test-only/wrong-sql")
    def wrong_sql():
        db.session.execute(text(statement))
        return jsonify(ok=True)

    with caplog.at_level(logging.ERROR, logger="dni_server.errors"):
        response = app.test_client().get("/test-only/wrong-sql")
    assert response.status_code == 500
    assert response.get_json() == {"error": {"code": "internal", "message": "internal error"}}
    assert "Retry-After" not in response.headers
    [logged] = [r for r in caplog.records if r.name == "dni_server.errors"]
    assert logged.levelno == logging.ERROR and logged.exc_info is not None  # the traceback


def test_a_database_that_cannot_be_reached_is_a_503_with_retry_after(make_app):
    cut_off = make_app(DATABASE_URL=NO_DATABASE)
    response = AdminClient(cut_off.test_client(), ADMIN_TOKEN).get("/v1/sites")
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "unavailable"
    assert response.headers["Retry-After"] == "5"
