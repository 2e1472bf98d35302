"""Prometheus metrics, served at ``GET /metrics``.

Counters and the latency histogram are process-wide and cheap to move (one increment on
the lease path, no extra Redis round trip). Gauges that describe shared state (pool
utilisation, the conversion outbox) are read at scrape time, from Redis and SQL, by
whichever process answers the scrape.

Under gunicorn, ``gunicorn.conf.py`` sets ``PROMETHEUS_MULTIPROC_DIR`` before anything
imports ``prometheus_client``: every worker then writes its counters to files there and a
scrape adds them up, so the figures do not depend on which worker answers.
"""

from __future__ import annotations

import hmac
import logging
import os
import time

from flask import Blueprint, Flask, Response, current_app, g, request
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from sqlalchemy import event, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from dni_server.errors import Forbidden, Unauthorized
from dni_server.timefmt import now_ms
from pools.leases import PoolService

log = logging.getLogger(__name__)
bp = Blueprint("metrics", __name__)

# Our own registry: in plain mode it is what a scrape shows; in multiprocess mode the
# files are, and this registry only keeps the names from clashing across test apps.
REGISTRY = CollectorRegistry(auto_describe=False)

FALLBACK_REASONS = ("pool_exhausted", "bot", "unavailable", "no_pool", "rate_limited", "expired")
MATCH_METHODS = ("session", "session_expired", "static", "fallback", "unattributed")

LEASES = Counter("dni_leases", "Numbers leased to sessions (POST /v1/sessions)",
                 registry=REGISTRY)
RENEWALS = Counter("dni_lease_renewals", "Leases renewed by heartbeats", registry=REGISTRY)
FALLBACKS = Counter("dni_fallbacks", "Fallback numbers answered, by reason", ["reason"],
                    registry=REGISTRY)
WEBHOOKS = Counter("dni_webhooks", "Carrier webhooks, by provider and outcome",
                   ["provider", "result"], registry=REGISTRY)
CARRIER_COMMANDS_DROPPED = Counter(
    "dni_carrier_commands_dropped", "Carrier call commands (Telnyx transfers) dropped because "
    "the command queue (DNI_CARRIER_QUEUE) was full", registry=REGISTRY)
MATCHES = Counter("dni_call_matches", "New calls matched to a visit, by method", ["method"],
                  registry=REGISTRY)
DELIVERIES = Counter("dni_outbox_deliveries", "Conversion delivery attempts, by destination "
                     "kind and outcome", ["destination", "status"], registry=REGISTRY)
LATENCY = Histogram("dni_request_duration_seconds", "HTTP request latency",
                    ["endpoint", "status"], registry=REGISTRY,
                    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0))

for _reason in FALLBACK_REASONS:
    FALLBACKS.labels(_reason)  # shown as 0 before the first one, so rate() has a start
for _method in MATCH_METHODS:
    MATCHES.labels(_method)


# -- what the views report ----------------------------------------------------------------


def observe_numbers(entries, *, renewal: bool = False) -> None:
    """Count a session answer's numbers: leased (or renewed) ones and fallbacks by reason."""
    leased = 0
    for entry in entries:
        if entry.fallback:
            FALLBACKS.labels(entry.reason or "unknown").inc()
        else:
            leased += 1
    if leased:
        (RENEWALS if renewal else LEASES).inc(leased)


def observe_webhook(provider: str, result: str) -> None:
    WEBHOOKS.labels(provider, result).inc()


def observe_dropped_command() -> None:
    CARRIER_COMMANDS_DROPPED.inc()


def observe_delivery(destination_kind: str, outcome_status: str) -> None:
    """One conversion delivery attempt ended (``sent``, ``retry``, ``failed``, ``skipped``...).

    The outbox's worker calls this; only processes that serve /metrics are scraped, so a
    separate ``dni worker`` process's attempts show in ``dni_outbox_depth`` instead.
    """
    DELIVERIES.labels(destination_kind, outcome_status).inc()


# -- match methods, counted when the new call is committed ------------------------------


def _calls_flushed(session: Session, _context) -> None:
    from attribution.models import Call

    methods = [obj.method for obj in session.new if isinstance(obj, Call)]
    if methods:
        session.info.setdefault("dni_new_call_methods", []).extend(methods)


def _committed(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a savepoint: the call is not kept until the outer commit
    for method in session.info.pop("dni_new_call_methods", ()):
        MATCHES.labels(method or "unattributed").inc()


def _rolled_back(session: Session) -> None:
    if not session.in_nested_transaction():
        session.info.pop("dni_new_call_methods", None)


def count_matches() -> None:
    """Count every call created in this process (webhooks, the API, inbox replays)."""
    if not event.contains(Session, "after_flush", _calls_flushed):
        event.listen(Session, "after_flush", _calls_flushed)
        event.listen(Session, "after_commit", _committed)
        event.listen(Session, "after_rollback", _rolled_back)


# -- request latency ------------------------------------------------------------------------


# The histogram's child per (endpoint, status code): `labels()` checks and joins its
# values on every call, which costs more than the observation itself. Both keys are
# bounded (the app's endpoints, HTTP statuses), so the cache is too.
_latency_children: dict[tuple[str | None, int], Histogram] = {}


def _latency_child(endpoint: str | None, status: int) -> Histogram:
    child = _latency_children.get((endpoint, status))
    if child is None:
        # Never the raw path as a label: unbounded labels.
        child = LATENCY.labels(endpoint or "unmatched", f"{status // 100}xx")
        _latency_children[(endpoint, status)] = child
    return child


def observe_latency(endpoint: str | None, status: int, started: float) -> None:
    """One answered request of ``endpoint``, begun at ``started`` (``time.perf_counter``)."""
    _latency_child(endpoint, status).observe(time.perf_counter() - started)


def _observe_request(response: Response) -> Response:
    # dni_server.logs notes when the request began (one proxy lookup, no `g.get` call)
    started = getattr(g._get_current_object(), "request_started", None)
    if started is not None:
        observe_latency(request._get_current_object().endpoint, response.status_code, started)
    return response


def init_app(app: Flask) -> None:
    app.after_request(_observe_request)
    app.register_blueprint(bp)
    count_matches()


# -- scrape-time gauges ---------------------------------------------------------------------


class LiveState:
    """Pool utilisation from Redis and the outbox depth from SQL, read at scrape time."""

    def __init__(self, services, redis_client):
        self.services = services
        self.redis_client = redis_client  # a callable: making a cluster client may fail

    def collect(self):
        up = GaugeMetricFamily("dni_dependency_up", "Whether the scrape could read Redis "
                               "and SQL", labels=["dependency"])
        pools, sql_ok = self._pools()
        busy = GaugeMetricFamily("dni_pool_busy_numbers", "Numbers leased now",
                                 labels=["pool_id", "site_id"])
        total = GaugeMetricFamily("dni_pool_numbers", "Numbers in the pool (idle and leased)",
                                  labels=["pool_id", "site_id"])
        ratio = GaugeMetricFamily("dni_pool_utilisation_ratio", "Leased numbers / all numbers",
                                  labels=["pool_id", "site_id"])
        redis_ok = True
        if pools:
            try:
                counts = self._pool_counts([pid for pid, _ in pools])
            except Exception as exc:  # any Redis failure: report it, keep the scrape
                log.warning("metrics: Redis unreadable: %s", exc)
                redis_ok, counts = False, []
            for (pid, site_id), (leased, size) in zip(pools, counts, strict=False):
                labels = [str(pid), str(site_id)]
                busy.add_metric(labels, leased)
                total.add_metric(labels, size)
                ratio.add_metric(labels, leased / size if size else 0.0)
        yield from (busy, total, ratio)
        depth = GaugeMetricFamily("dni_outbox_depth", "Conversion deliveries by status",
                                  labels=["status"])
        for status, count in self._outbox():
            depth.add_metric([status], count)
        yield depth
        up.add_metric(["redis"], 1.0 if redis_ok else 0.0)
        up.add_metric(["sql"], 1.0 if sql_ok else 0.0)
        yield up

    def _pools(self) -> tuple[list[tuple[int, int]], bool]:
        """(pool id, site id) of every active pool: ids, never site keys, which would tell a
        scraper every site the service serves and let it start sessions on them."""
        from pools.models import Pool

        try:
            with self.services.session_factory() as db:
                rows = db.execute(select(Pool.id, Pool.site_id).where(Pool.active)
                                  .order_by(Pool.id)).all()
            return [(pid, site_id) for pid, site_id in rows], True
        except SQLAlchemyError as exc:
            log.warning("metrics: SQL unreadable: %s", exc)
            return [], False

    def _pool_counts(self, pool_ids: list[int]) -> list[tuple[int, int]]:
        """(leased now, size) per pool, all pools in one pipelined round trip, read with the
        probes' client (short timeouts: a hanging Redis must not hold up the scrape)."""
        reader = PoolService(self.redis_client(), self.services.pools.prefix)
        return reader.counts(pool_ids, now_ms())

    def _outbox(self) -> list[tuple[str, int]]:
        try:
            from attribution.conversions.models import ConversionDelivery
        except ImportError:
            return []  # the outbox is not part of this build
        try:
            with self.services.session_factory() as db:
                return [(status, count) for status, count in db.execute(
                    select(ConversionDelivery.status, func.count())
                    .group_by(ConversionDelivery.status))]
        except SQLAlchemyError as exc:
            log.warning("metrics: outbox unreadable: %s", exc)
            return []


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def render(services, redis_client) -> bytes:
    """The exposition text: this process's (or all workers') counters, plus live gauges.

    ``redis_client`` is a callable returning the client to read pool sizes with.
    """
    registry = CollectorRegistry(auto_describe=False)
    if multiprocess_dir():
        from prometheus_client.multiprocess import MultiProcessCollector

        MultiProcessCollector(registry)
    else:
        registry.register(REGISTRY)
    registry.register(LiveState(services, redis_client))
    return generate_latest(registry)


def _check_scraper() -> None:
    """DNI_METRICS_TOKEN as a bearer token, unless DNI_METRICS_PUBLIC=true: the figures
    describe every pool. Wrong tokens count towards the same back-off as the API's."""
    from dni_server.api.auth import bearer_token, refuse_guessers, wrong_token

    settings = current_app.extensions["dni"].settings
    if settings.metrics_public:
        return
    if not settings.metrics_token:
        raise Forbidden("metrics are off: set DNI_METRICS_TOKEN (and send it as a bearer "
                        "token), or DNI_METRICS_PUBLIC=true to serve them to anyone")
    refuse_guessers()
    given = bearer_token()
    if given is None or not hmac.compare_digest(given.encode(), settings.metrics_token.encode()):
        if given:
            wrong_token("metrics token")
        raise Unauthorized("a valid metrics token is required: Authorization: Bearer <token>")


@bp.get("/metrics")
def metrics():
    """Prometheus text format, for a scraper holding DNI_METRICS_TOKEN."""
    _check_scraper()
    from dni_server.health import probes

    body = render(current_app.extensions["dni"], probes(current_app).redis)
    return Response(body, content_type=CONTENT_TYPE_LATEST, headers={"Cache-Control": "no-store"})
