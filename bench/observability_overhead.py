#!/usr/bin/env python3
"""What request ids, the request log line and the metrics cost a heartbeat, in one run.

Builds the app on the embedded defaults in a temporary folder (SQLite, embedded Redis),
leases one number, then times heartbeats through the Flask test client in alternating
rounds, in CPU time of the app's process: with the observability hooks (request id, JSON
log line, latency histogram, counters) and with them taken off. Prints the median time
per heartbeat of each and their ratio, and what one /metrics scrape and one /healthz
take. The log lines go to /dev/null: their formatting is counted, a terminal's is not.

    .venv/bin/python bench/observability_overhead.py [--requests 2000] [--rounds 5]

A benchmark, not a test: it always exits 0 unless the measurement itself failed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dni_server import create_app, logs, metrics  # noqa: E402

UA = "Mozilla/5.0 (X11; Linux x86_64) Chrome/124.0 Safari/537.36"


def hooks_off(app):
    """Take the observability hooks off (Flask's, and what the snippet's front does in their
    place: a heartbeat is answered there); returns a function that puts them back."""
    saved = (list(app.before_request_funcs[None]), list(app.after_request_funcs[None]),
             list(app.teardown_request_funcs.get(None, [])))
    ours = {logs._begin_request, logs._end_request, logs._forget_request,
            metrics._observe_request}
    app.before_request_funcs[None] = [f for f in saved[0] if f not in ours]
    app.after_request_funcs[None] = [f for f in saved[1] if f not in ours]
    app.teardown_request_funcs[None] = [f for f in saved[2] if f not in ours]
    front = (logs.request_id_for, logs.log_request, metrics.observe_latency)
    logs.request_id_for = lambda _incoming: "-"
    logs.log_request = metrics.observe_latency = lambda *_args, **_kwargs: None

    def restore():
        app.before_request_funcs[None], app.after_request_funcs[None] = saved[0], saved[1]
        app.teardown_request_funcs[None] = saved[2]
        logs.request_id_for, logs.log_request, metrics.observe_latency = front

    return restore


def per_request(client, path, body, count) -> float:
    """CPU seconds of this process per request: Redis runs in another process, and its
    (noisy, shared-machine) latency is the same with or without the hooks."""
    started = time.process_time()
    for _ in range(count):
        response = client.post(path, data=body, headers={"Content-Type": "application/json",
                                                         "User-Agent": UA})
        if response.status_code != 200 or response.json["numbers"][0]["fallback"]:
            raise SystemExit(f"bad answer: {response.status_code} {response.data[:200]}")
    return (time.process_time() - started) / count


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="dni-obs-bench-")
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    metrics_token = secrets.token_hex(16)  # /metrics needs a bearer token
    env.update(DNI_INSTANCE_PATH=folder, DNI_WORKER="false", DNI_LOG_FORMAT="json",
               DNI_REDIS_TIMEOUT_MS="2000", DNI_METRICS_TOKEN=metrics_token)
    app = create_app(env)
    client = app.test_client()
    site = client.get("/v1/sites", headers={
        "Authorization": f"Bearer {app.extensions['dni'].settings.admin_token}"}).json["sites"][0]
    session = client.post("/v1/sessions", json={"site": site["key"], "url": "http://x/"},
                          headers={"User-Agent": UA}).json
    path = f"/v1/sessions/{session['session_id']}/heartbeat"
    body = json.dumps({"site": site["key"]})

    with open(os.devnull, "w") as devnull, contextlib.redirect_stderr(devnull):
        per_request(client, path, body, 200)  # warm up
        on, off = [], []
        for round_no in range(args.rounds):
            for hooks in ((True, False) if round_no % 2 else (False, True)):  # alternate order
                restore = None if hooks else hooks_off(app)
                (on if hooks else off).append(per_request(client, path, body, args.requests))
                if restore:
                    restore()
        scraper = {"Authorization": f"Bearer {metrics_token}"}
        if client.get("/metrics", headers=scraper).status_code != 200:
            raise SystemExit("GET /metrics was refused")
        scrape = min(_timed(lambda: client.get("/metrics", headers=scraper)) for _ in range(20))
        health = min(_timed(lambda: client.get("/healthz")) for _ in range(20))

    on_us, off_us = statistics.median(on) * 1e6, statistics.median(off) * 1e6
    print(f"heartbeat with observability:    {on_us:8.1f} us CPU/request (median of {args.rounds})")
    print(f"heartbeat without:               {off_us:8.1f} us CPU/request")
    print(f"ratio with/without:              {on_us / off_us:8.3f}  (+{on_us - off_us:.1f} us)")
    print(f"GET /metrics (1 pool):           {scrape * 1e3:8.2f} ms (best of 20)")
    print(f"GET /healthz:                    {health * 1e3:8.2f} ms (best of 20)")


def _timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
