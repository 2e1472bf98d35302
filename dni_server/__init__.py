"""The Flask app: a thin web layer over ``pools`` and ``attribution``."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass

from flask import Flask
from sqlalchemy import event
from sqlalchemy.orm import sessionmaker

from attribution.carriers import CommandSender
from attribution.forwarding import RouteDirectory
from attribution.geo import GeoLocator
from attribution.inbox import CallInbox
from attribution.recorder import use_geo
from attribution.sessions import SessionContext, SessionIds
from dni_server.api.body import BoundedRequest
from dni_server.api.snippet_front import SnippetFront
from dni_server.config import Settings, load_settings
from dni_server.converters import IdConverter
from dni_server.embedded import (
    embedded_redis_url,
    instance_lock,
    secure_instance,
    sqlite_url,
    stored_secret,
)
from dni_server.errors import register_error_handlers
from dni_server.extensions import db, migrate
from dni_server.jsonprovider import OrjsonProvider
from dni_server.logs import configure_logging
from dni_server.redis_client import make_redis
from dni_server.tokens import derive_key
from pools import catalog
from pools.availability import RedisGuard
from pools.directory import SiteDirectory
from pools.leases import PoolService

log = logging.getLogger(__name__)
MIGRATIONS = os.path.join(os.path.dirname(__file__), "migrations")


@dataclass
class Services:
    """Everything the views, CLI and worker share, kept in ``app.extensions["dni"]``."""

    settings: Settings
    redis_url: str
    redis: object  # short timeouts: the snippet path
    redis_admin: object  # patient: admin changes, the worker, the CLI
    pools: PoolService  # on redis_admin
    sessions: SessionContext  # on redis
    session_factory: sessionmaker
    routes: RouteDirectory  # where each tracking number's calls go
    inbox: CallInbox  # call events waiting for SQL
    commands: CommandSender = dataclasses.field(default_factory=CommandSender)  # to carriers
    worker: object | None = None


class DniFlask(Flask):
    """Flask, minus a per-call check: ``ensure_sync`` asks ``inspect`` whether each view and
    hook is a coroutine function, eight times per heartbeat. The answer for a function never
    changes, so it is kept."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._sync_callables: dict = {}

    def ensure_sync(self, func):
        try:
            known = self._sync_callables.get(func)
        except TypeError:  # an unhashable callable: asked every time
            return super().ensure_sync(func)
        if known is None:
            if len(self._sync_callables) >= 4096:  # bound methods of short-lived objects
                self._sync_callables.clear()
            known = self._sync_callables[func] = super().ensure_sync(func)
        return known


def create_app(config: Mapping[str, str] | None = None, *, instance_path: str | None = None
               ) -> Flask:
    """Build the app from ``config`` (default: the environment)."""
    settings = load_settings(config)
    env = os.environ if config is None else config
    instance_path = instance_path or env.get("DNI_INSTANCE_PATH") or None
    app = DniFlask(__name__, instance_path=instance_path and os.path.abspath(instance_path))
    app.url_map.converters["int"] = IdConverter  # ids past any column's range are a 404
    secure_instance(app.instance_path)  # 0700, its files 0600: it holds tokens and keys

    if settings.admin_token is None and settings.embedded_database:
        settings = dataclasses.replace(
            settings, admin_token=stored_secret(app.instance_path, "admin_token"))
    if settings.secret_key is None:
        settings = dataclasses.replace(
            settings, secret_key=stored_secret(app.instance_path, "secret_key"))
    database_url = settings.database_url or sqlite_url(app.instance_path)
    if not settings.credentials_keys and database_url.startswith("sqlite"):
        # A local database: its credentials key lives beside it, outside the database.
        from attribution.conversions.credentials import new_key

        settings = dataclasses.replace(settings, credentials_keys=(
            stored_secret(app.instance_path, "credentials_key", new_key),))
    app.config.update(
        SQLALCHEMY_DATABASE_URI=database_url,
        SQLALCHEMY_ENGINE_OPTIONS=engine_options(database_url),
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
    )
    app.json = OrjsonProvider(app)
    app.request_class = BoundedRequest  # a chunked body over the limit is a 413, not cut short
    # The snippet's page-view calls are answered ahead of Flask's request machinery; the
    # proxy fix (below) goes outside it, so that it sees the client's address too.
    app.wsgi_app = SnippetFront(app, app.wsgi_app)
    if settings.proxy_hops:
        from werkzeug.middleware.proxy_fix import ProxyFix

        hops = settings.proxy_hops
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)

    register_extensions(app, settings)
    register_blueprints(app)
    from dni_server.api import callbacks  # issue 18: web callbacks (settings, blueprints)

    callbacks.init_app(app)
    register_error_handlers(app)
    register_commands(app)
    register_observability(app)
    if settings.embedded_database or settings.demo:
        prepare_database(app, settings)
    # After the migrations: their logging setup would otherwise replace ours.
    configure_logging(settings.log_format, settings.log_level)
    start_worker(app, settings)
    return app


def engine_options(database_url: str) -> dict:
    if database_url.startswith("sqlite"):
        return {"connect_args": {"timeout": 30}}
    # Fail fast when the database is away: webhooks then keep events in the inbox.
    return {"pool_pre_ping": True, "pool_size": 5, "max_overflow": 10, "pool_timeout": 5,
            "connect_args": {"connect_timeout": 3}}


def register_extensions(app: Flask, settings: Settings) -> None:
    from dni_server import metrics

    db.init_app(app)
    migrate.init_app(app, db, directory=MIGRATIONS)
    with app.app_context():
        engine = db.engine
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect", _sqlite_pragmas)
        session_factory = sessionmaker(bind=engine, expire_on_commit=False)

    redis_url = settings.redis_url or embedded_redis_url(app.instance_path)
    fast = make_redis(redis_url, settings.redis_timeout_ms / 1000)
    patient = make_redis(redis_url, 10.0)
    admin_pools = PoolService(patient, settings.redis_prefix, RedisGuard(cooloff_seconds=0))
    lease_pools = PoolService(fast, settings.redis_prefix, RedisGuard())

    def load_pool(pool_id: int, now_ms: int) -> bool:
        with session_factory() as session:
            return catalog.load_pool_by_id(session, admin_pools, pool_id, now_ms)

    limit, window = settings.session_rate
    # Visits are located where they are recorded (the worker), not on the request path.
    use_geo(GeoLocator(settings.geoip_db))
    context = SessionContext(
        pools=lease_pools,
        sites=SiteDirectory(session_factory, ttl_seconds=settings.site_cache_seconds,
                            mirror=fast, prefix=settings.redis_prefix),
        # A key of their own: dashboard cookies are signed with another (dashboard/__init__).
        ids=SessionIds(derive_key(settings.secret_key, "visitor session ids")),
        load_pool=load_pool,
        rate_limit=limit,
        rate_window_ms=window * 1000,
        ip_share=settings.pool_share[0],
        subnet_share=settings.pool_share[1],
    )
    app.extensions["redis"] = fast
    app.extensions["dni"] = Services(
        settings, redis_url, fast, patient, admin_pools, context, session_factory,
        routes=RouteDirectory(session_factory, fast, settings.redis_prefix),
        commands=CommandSender(max_queue=settings.carrier_queue,
                               on_drop=metrics.observe_dropped_command),
        inbox=CallInbox(patient, settings.redis_prefix,
                        os.path.join(app.instance_path, "call-spool.jsonl")))


def _sqlite_pragmas(dbapi_connection, _record):
    # WAL lets the web workers read while the recorder writes; several processes share it.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def register_blueprints(app: Flask) -> None:
    from dni_server import dashboard
    from dni_server.api import (
        admin,
        calls,
        conversions,
        reports,
        routing_admin,
        routing_calls,
        sessions,
        snippet,
        static_numbers,
        touches,
        webhook_subscriptions,
        webhooks,
    )
    from dni_server.api.body import refuse_nul_in_query
    from dni_server.dashboard import callbacks as _callback_pages  # noqa: F401  (on dashboard.bp)
    from dni_server.dashboard import conversions as _conversion_pages  # noqa: F401  (on dashboard.bp)
    from dni_server.dashboard import fraud as _fraud_pages  # noqa: F401  (on dashboard.bp; issue 16)
    from dni_server.dashboard import webhooks as _webhook_pages  # noqa: F401  (on dashboard.bp)
    from dni_server.openapi import bp as openapi_bp

    app.before_request(refuse_nul_in_query)  # SQL text cannot hold NUL: 422, never a 500
    app.register_blueprint(sessions.bp)
    app.register_blueprint(touches.bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(calls.bp)
    app.register_blueprint(static_numbers.bp)
    app.register_blueprint(conversions.bp)
    app.register_blueprint(reports.bp)
    app.register_blueprint(webhooks.bp)
    app.register_blueprint(webhook_subscriptions.bp)
    app.register_blueprint(routing_admin.bp)
    app.register_blueprint(routing_calls.bp)
    app.register_blueprint(snippet.bp)
    app.register_blueprint(openapi_bp)
    app.register_blueprint(dashboard.bp)
    from dni_server.api import amp, autoscale, carrier_accounts  # issue 19

    app.register_blueprint(amp.bp)
    app.register_blueprint(carrier_accounts.bp)
    app.register_blueprint(autoscale.bp)
    from dni_server.api import fraud  # issue 16

    app.register_blueprint(fraud.bp)
    app.register_blueprint(fraud.admin)


def register_observability(app: Flask) -> None:
    """Request ids and request logs, Prometheus metrics at /metrics, and /healthz."""
    from dni_server import health, logs, metrics

    logs.init_app(app)
    metrics.init_app(app)
    app.register_blueprint(health.bp)


def register_commands(app: Flask) -> None:
    from dni_server.cli import dni

    app.cli.add_command(dni)


def prepare_database(app: Flask, settings: Settings) -> None:
    """Bring the embedded database up to date and seed the demo site on an empty one."""
    from flask_migrate import upgrade

    from dni_server.demo import ensure_demo_site

    with instance_lock(app.instance_path), app.app_context():
        if settings.embedded_database:
            upgrade(directory=MIGRATIONS)
        ensure_demo_site(db.session, app.extensions["dni"].pools)


def start_worker(app: Flask, settings: Settings) -> None:
    """Run the recorder in this process on the embedded default (or with DNI_WORKER=true)."""
    wanted = settings.worker if settings.worker is not None else settings.embedded_redis
    if wanted:
        from dni_server.worker import Worker

        worker = Worker(app)
        worker.start_thread()
        app.extensions["dni"].worker = worker
