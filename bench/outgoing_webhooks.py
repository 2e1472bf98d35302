"""Outgoing webhooks (issue 18): what emitting costs a call's ingest, and how fast one
worker delivers to a local receiver.

For each database it prints the mean time of ``POST /v1/calls`` (in process, the test
client) with no subscription and with three subscriptions on the site, then the events one
``WebhookDeliverer`` sends per second to a receiver on 127.0.0.1 that answers 204 at once
(signature, SQL claim, the API's call view, one commit per event).

Needs Redis (``REDIS_URL`` naming a database index, else 127.0.0.1:6379/12: flushed, as the
other benchmarks do) and, for ``postgres``, a server (``DATABASE_URL`` or
postgresql://postgres@127.0.0.1:5432/test) to create a scratch database on.

    python bench/outgoing_webhooks.py [--db sqlite|postgres|both] [--calls 300]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from contextlib import ExitStack
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from attribution.conversions.credentials import new_key  # noqa: E402
from bench.harness import app_on_new_database, bench_redis_url, claim_redis, log  # noqa: E402

TOKEN = "bench-admin-token-0123456789abcdef"
EVENTS = ["call.started", "call.completed", "call.qualified", "call.disqualified"]


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()


def pg_base() -> str:
    url = os.environ.get("DATABASE_URL") or "postgresql://postgres@127.0.0.1:5432/test"
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


def post_calls(client, headers, to: str, first: int, count: int) -> list[float]:
    took = []
    for i in range(first, first + count):
        body = {"call_id": f"bench-{i}", "from": "+14158675309", "to": to,
                "started_at": "2026-03-02T14:00:00Z", "duration": 90, "status": "completed"}
        started = time.perf_counter()
        response = client.post("/v1/calls", json=body, headers=headers)
        took.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 201, response.get_json()
    return took


def run(kind: str, calls: int) -> None:
    from attribution.webhooks.delivery import WebhookDeliverer
    from attribution.webhooks.models import WebhookDelivery
    from dni_server.api.webhook_subscriptions import call_renderer

    with ExitStack() as stack:
        redis_url = bench_redis_url()
        rdb = claim_redis(redis_url)
        stack.callback(rdb.close)
        stack.callback(rdb.flushdb)
        app = app_on_new_database(stack, kind, pg_base(), DNI_ADMIN_TOKEN=TOKEN,
                                  REDIS_URL=redis_url, DNI_OUTBOUND_ALLOW_HOSTS="127.0.0.1",
                                  DNI_CREDENTIALS_KEYS=new_key())
        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        stack.callback(server.server_close)
        stack.callback(server.shutdown)
        client, headers = app.test_client(), {"Authorization": f"Bearer {TOKEN}"}
        site = client.post("/v1/sites", json={"name": "Bench"}, headers=headers).get_json()
        pool = client.post("/v1/pools", headers=headers, json={
            "site": site["key"], "name": "Main", "target": "+18005550100",
            "destination": "+12125550199", "numbers": ["+16505550101"]}).get_json()
        to = client.get(f"/v1/pools/{pool['id']}/numbers",
                        headers=headers).get_json()["numbers"][0]["number"]
        post_calls(client, headers, to, 0, 20)  # warm up
        without = post_calls(client, headers, to, 100_000, calls)
        for _ in range(3):
            client.post("/v1/webhooks", headers=headers, json={
                "site": site["key"], "events": EVENTS,
                "url": f"http://127.0.0.1:{server.server_port}/hook"})
        with_three = post_calls(client, headers, to, 200_000, calls)
        services = app.extensions["dni"]
        worker = WebhookDeliverer.from_settings(services.session_factory, services.settings,
                                                call_renderer(app))
        with services.session_factory() as db:
            queued = db.query(WebhookDelivery).count()
        started = time.perf_counter()
        sent = 0
        while sent < queued:
            done = worker.run_once()
            if not done:
                break
            sent += done
        elapsed = time.perf_counter() - started
        print(f"{kind:8} POST /v1/calls mean {statistics.mean(without):6.2f} ms without, "
              f"{statistics.mean(with_three):6.2f} ms with 3 subscriptions "
              f"(p50 {statistics.median(without):.2f} / {statistics.median(with_three):.2f})")
        print(f"{kind:8} delivered {sent} of {queued} events in {elapsed:.2f} s: "
              f"{sent / elapsed:.0f} events/s, one worker")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()
    for kind in (("sqlite", "postgres") if args.db == "both" else (args.db,)):
        log(f"{kind}: {args.calls} calls each way")
        run(kind, args.calls)


if __name__ == "__main__":
    main()
