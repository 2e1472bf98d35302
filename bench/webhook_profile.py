#!/usr/bin/env python3
"""CPU per new-call webhook, in-process: the plain (forwarded) and the routed case of
``bench/webhook_throughput.py``, sent through the app's test client, with no HTTP server
and no wrk. Prints CPU ms per request (``time.process_time``, less disturbed by a loaded
machine than req/s) and wall ms, and with ``--profile`` the functions that cost most.

    python bench/webhook_profile.py [--db postgres|sqlite] [--calls 400] [--profile plain|routed]

Redis: REDIS_URL when it names a database index, else database 12 (flushed; one holding keys
a benchmark did not write is refused).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import secrets
import sys
import time
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from twilio.request_validator import RequestValidator  # noqa: E402

from bench.harness import (  # noqa: E402
    DEFAULT_POSTGRES_URL,
    bench_redis_url,
    claim_redis,
    create_database,
    dispose,
    fictional_numbers,
)
from bench.webhook_throughput import ROUTED_BUYERS, ZIP_STEP  # noqa: E402

TOKEN = "bench-twilio-token"
URL = "http://localhost/webhooks/twilio/voice"


def make_app(stack: ExitStack, kind: str, postgres_url: str, redis_url: str):
    import tempfile

    from flask_migrate import upgrade

    from dni_server import MIGRATIONS, create_app

    workdir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
    url = create_database(kind, workdir, stack, postgres_url)
    admin = secrets.token_hex(16)
    app = create_app({"DATABASE_URL": url, "REDIS_URL": redis_url, "DNI_WORKER": "false",
                      "DNI_ADMIN_TOKEN": admin, "DNI_SECRET_KEY": secrets.token_hex(16),
                      "DNI_TWILIO_AUTH_TOKEN": TOKEN}, instance_path=str(workdir))
    stack.callback(dispose, app)
    with app.app_context():
        upgrade(directory=MIGRATIONS)
    return app, {"Authorization": f"Bearer {admin}"}


def admin_post(client, auth, path: str, body: dict) -> dict:
    response = client.post(path, json=body, headers=auth)
    if response.status_code != 201:
        raise RuntimeError(f"POST {path}: {response.status_code} {response.get_data()[:300]}")
    return response.get_json()


def setup(client, auth) -> tuple[list[str], list[str]]:
    """The benchmark's world: a pool of 800 numbers, and a routed pool of 50 (ZIP step,
    weighted tier of 10 buyers with caps). Returns (plain numbers, routed numbers)."""
    numbers = fictional_numbers()
    site = admin_post(client, auth, "/v1/sites", {"name": "bench", "domains": []})
    plain = [next(numbers) for _ in range(800)]
    admin_post(client, auth, "/v1/pools", {
        "site": site["key"], "name": "bench", "target": "+18005550100",
        "destination": "+12125550199", "numbers": plain, "lease_seconds": 300})
    buyers = [admin_post(client, auth, "/v1/buyers", {
        "name": f"Buyer {i}", "timezone": "America/New_York", "revenue": "40.00",
        "targets": [{"number": f"+1212555{1000 + i:04d}", "weight": 1 + i % 3}],
        "caps": {"concurrency": 1000, "calls": {"day": 1_000_000},
                 "conversions": {"day": 100_000, "month": 1_000_000}},
        "conversion": {"min_duration": 60}})["id"] for i in range(ROUTED_BUYERS)]
    plan = admin_post(client, auth, "/v1/routing-plans", {
        "name": "bench", "ivr": [ZIP_STEP], "tiers": [{"buyers": buyers, "mode": "weighted"}],
        "fallback": {"number": "+12125550199"}})["id"]
    routed = [next(numbers) for _ in range(50)]
    admin_post(client, auth, "/v1/pools", {
        "site": site["key"], "name": "routed", "target": "+18005550101",
        "destination": "+12125550199", "numbers": routed, "routing_plan": plan})
    return plain, routed


class Sender:
    """Signed new-call webhooks, as the throughput benchmark sends them."""

    def __init__(self, client):
        self.client = client
        self.validator = RequestValidator(TOKEN)
        self.i = 0

    def send(self, numbers: list[str], expected: bytes) -> None:
        self.i += 1
        params = {"CallSid": f"CA{secrets.token_hex(16)}", "AccountSid": "AC" + "0" * 32,
                  "From": f"+1415555{self.i % 10000:04d}", "To": numbers[self.i % len(numbers)],
                  "CallStatus": "ringing", "ApiVersion": "2010-04-01", "Direction": "inbound"}
        response = self.client.post("/webhooks/twilio/voice", data=params, headers={
            "X-Twilio-Signature": self.validator.compute_signature(URL, params)})
        if response.status_code != 200 or expected not in response.data:
            raise RuntimeError(f"{response.status_code} {response.data[:300]}")


class StatementTimes:
    """Wall time per SQL statement (by its text), summed over a run."""

    def __init__(self, app):
        from dni_server.extensions import db

        with app.app_context():
            self.engine = db.engine
        self.spent: dict[str, list[float]] = {}

    def __enter__(self):
        from sqlalchemy import event

        event.listen(self.engine, "before_cursor_execute", self.before)
        event.listen(self.engine, "after_cursor_execute", self.after)
        return self

    def __exit__(self, *exc):
        from sqlalchemy import event

        event.remove(self.engine, "before_cursor_execute", self.before)
        event.remove(self.engine, "after_cursor_execute", self.after)

    def before(self, conn, cursor, statement, *args):
        conn.info["started"] = time.perf_counter()

    def after(self, conn, cursor, statement, *args):
        row = self.spent.setdefault(" ".join(statement.split())[:110], [0, 0.0])
        row[0] += 1
        row[1] += time.perf_counter() - conn.info.pop("started")

    def report(self, calls: int) -> str:
        rows = sorted(self.spent.items(), key=lambda kv: -kv[1][1])
        return "\n".join(f"{n / calls:5.2f}/req {t * 1000 / calls:7.3f} ms/req  {text}"
                         for text, (n, t) in rows)


def measure(sender: Sender, numbers, expected: bytes, calls: int, profile: bool) -> dict:
    profiler = cProfile.Profile() if profile else None
    cpu, wall = time.process_time(), time.perf_counter()
    if profiler:
        profiler.enable()
    for _ in range(calls):
        sender.send(numbers, expected)
    if profiler:
        profiler.disable()
    out = {"cpu_ms": (time.process_time() - cpu) * 1000 / calls,
           "wall_ms": (time.perf_counter() - wall) * 1000 / calls}
    if profiler:
        text = io.StringIO()
        stats = pstats.Stats(profiler, stream=text)
        stats.sort_stats("cumulative").print_stats(
            str(ROOT) + r"/(attribution|routing|pools|dni_server)/", 70)
        stats.sort_stats("tottime").print_stats(40)
        out["profile"] = text.getvalue()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", choices=["plain", "routed"])
    parser.add_argument("--statements", action="store_true",
                        help="also print the SQL statements' wall time per request")
    args = parser.parse_args()
    with ExitStack() as stack:
        redis_url = bench_redis_url()
        rdb = claim_redis(redis_url)
        stack.callback(rdb.close)
        stack.callback(rdb.flushdb)
        app, auth = make_app(stack, args.db, args.postgres_url, redis_url)
        client = app.test_client()
        plain, routed = setup(client, auth)
        sender = Sender(client)
        cases = {"plain": (plain, b"<Dial"), "routed": (routed, b"<Gather")}
        for numbers, expected in cases.values():  # warm: caches, connections
            for _ in range(50):
                sender.send(numbers, expected)
        results: dict[str, list[dict]] = {kind: [] for kind in cases}
        for _ in range(args.rounds):
            for kind, (numbers, expected) in cases.items():
                results[kind].append(measure(sender, numbers, expected, args.calls,
                                             profile=args.profile == kind))
        for kind, runs in results.items():
            cpu = sorted(r["cpu_ms"] for r in runs)[len(runs) // 2]
            wall = sorted(r["wall_ms"] for r in runs)[len(runs) // 2]
            each = ", ".join(f"{r['cpu_ms']:.2f}/{r['wall_ms']:.2f}" for r in runs)
            print(f"{kind:7} ({args.db}): CPU {cpu:5.2f} ms/request, wall {wall:5.2f} ms "
                  f"(median of {args.rounds} x {args.calls}; CPU/wall per round: {each})")
        if args.profile:
            print(results[args.profile][-1]["profile"])
        if args.statements:
            for kind, (numbers, expected) in cases.items():
                with StatementTimes(app) as times:
                    for _ in range(args.calls):
                        sender.send(numbers, expected)
                print(f"-- SQL of {kind}:\n{times.report(args.calls)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
