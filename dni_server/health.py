"""``GET /healthz``: Redis and SQL, each checked on its own, answered within about a second.

200 when both answer, 503 when either is down. Each check runs in a thread with a
deadline, so a dependency that hangs (a half-open connection, a stopped VM) makes the
check fail fast instead of holding the load balancer's probe; while a timed-out check is
still stuck, the next probe reports it down at once rather than starting another.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout

from flask import Blueprint, Flask, current_app, jsonify
from sqlalchemy import text

from dni_server.extensions import db
from dni_server.redis_client import make_redis

bp = Blueprint("health", __name__)
PROBE_TIMEOUT_S = 0.5  # each Redis socket operation
DEADLINE_S = 0.8  # the whole answer, both checks running at once
MAX_ERROR_CHARS = 300


class Probes:
    """One app's checks: a Redis client with short timeouts and the SQL engine."""

    def __init__(self, app: Flask):
        self.redis_url = app.extensions["dni"].redis_url
        with app.app_context():
            self.engine = db.engine
        self._redis = None
        self._running: dict[str, Future] = {}
        self._lock = threading.Lock()

    def redis(self):
        """Made on first use: a cluster client connects when made, and may fail then."""
        if self._redis is None:
            self._redis = make_redis(self.redis_url, PROBE_TIMEOUT_S)
        return self._redis

    def ping_redis(self) -> None:
        self.redis().ping()

    def ping_sql(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def start(self, name: str, check) -> Future | None:
        """Run ``check`` in a thread; None while the previous one is still stuck."""
        with self._lock:
            previous = self._running.get(name)
            if previous is not None and not previous.done():
                return None
            future: Future = Future()
            self._running[name] = future

        def run():
            started = time.perf_counter()
            try:
                check()
                future.set_result((None, time.perf_counter() - started))
            except Exception as exc:  # every failure is a "down" answer, never a 500
                future.set_result((exc, time.perf_counter() - started))

        threading.Thread(target=run, name=f"dni-health-{name}", daemon=True).start()
        return future

    def check_all(self) -> dict[str, dict]:
        deadline = time.monotonic() + DEADLINE_S
        futures = {"redis": self.start("redis", self.ping_redis),
                   "sql": self.start("sql", self.ping_sql)}
        return {name: outcome(future, deadline) for name, future in futures.items()}


def outcome(future: Future | None, deadline: float) -> dict:
    if future is None:
        return {"status": "down", "latency_ms": None,
                "error": "the previous check has not finished: not answering"}
    try:
        error, elapsed = future.result(timeout=max(0.0, deadline - time.monotonic()))
    except FutureTimeout:
        return {"status": "down", "latency_ms": None,
                "error": f"no answer within {int(DEADLINE_S * 1000)} ms"}
    latency = round(elapsed * 1000, 2)
    if error is None:
        return {"status": "ok", "latency_ms": latency, "error": None}
    message = f"{type(error).__name__}: {error}".splitlines()[0][:MAX_ERROR_CHARS]
    return {"status": "down", "latency_ms": latency, "error": message}


def probes(app: Flask) -> Probes:
    """The app's probes; /metrics reads pool sizes through their short-timeout Redis client."""
    found = app.extensions.get("dni_probes")
    if found is None:
        found = app.extensions.setdefault("dni_probes", Probes(app))
    return found


@bp.get("/healthz")
def healthz():
    """Redis and SQL status; 503 when either is down."""
    checks = probes(current_app).check_all()
    healthy = all(c["status"] == "ok" for c in checks.values())
    response = jsonify(status="ok" if healthy else "down", checks=checks)
    response.status_code = 200 if healthy else 503
    response.headers["Cache-Control"] = "no-store"
    return response
