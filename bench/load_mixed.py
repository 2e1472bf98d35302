#!/usr/bin/env python3
"""A mixed workload against one and then two app instances, with wrk (issue 7).

The mix, per 10 requests: 2 new sessions (each a new visitor id and a new client IP, sent
as X-Forwarded-For with DNI_PROXY_HOPS=1), 5 heartbeats and 2 page views (heartbeats with
a url) of sessions started beforehand, and 1 signed Twilio voice webhook (each a new
CallSid). Both instances share one Redis and one database; the second run starts a second
gunicorn and drives each instance with its own wrk process, half the connections each (a
client-side round robin: no proxy in the way to cost CPU). Prints throughput, p99 and
errors (non-2xx answers and socket errors) per instance count, and the scaling ratio.

    .venv/bin/python bench/load_mixed.py [--db postgres|sqlite] [--seconds 10]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from twilio.request_validator import RequestValidator  # noqa: E402

from bench.harness import (  # noqa: E402
    DEFAULT_POSTGRES_URL,
    LUA_DONE,
    USER_AGENTS,
    BenchPool,
    Gunicorn,
    bench_setting,
    done_result,
    http_json,
    log,
    migrate,
    start_wrk,
)

TOKEN = "bench-twilio-token"
PUBLIC_URL = "http://dni.bench.example"  # both instances check signatures against this
PATTERN = ["new", "beat", "beat", "view", "beat", "call", "new", "beat", "view", "beat"]
LUA = r"""
local reqs, n = {}, 0
bad = 0
function init(args)
  for _, r in ipairs(REQUESTS) do
    table.insert(reqs, wrk.format("POST", r[1], r[2], r[3]))
  end
end
function request()
  n = n % #reqs + 1
  return reqs[n]
end
function response(status, headers, body)
  if status < 200 or status > 299 then bad = bad + 1 end
end
""" + LUA_DONE


def lua_table(rows: list[tuple[str, dict, str]]) -> str:
    def one(path, headers, body):
        heads = ", ".join(f"[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items())
        return f"  {{{json.dumps(path)}, {{{heads}}}, {json.dumps(body)}}}"

    return "REQUESTS = {\n" + ",\n".join(one(*r) for r in rows) + "\n}\n"


class Workload:
    """Precomputed requests; every script gets its own new visitors and calls."""

    def __init__(self, site_key: str, sessions: list[str], numbers: list[str]):
        self.site_key = site_key
        self.sessions = sessions
        self.numbers = numbers
        self.validator = RequestValidator(TOKEN)
        self.serial = 0

    def _new(self) -> tuple[str, dict, str]:
        self.serial += 1
        # Consecutive visitors in different /24s: the service also limits per subnet.
        ip = f"10.{self.serial % 256}.{self.serial // 256 % 256}.{self.serial // 65536 % 250 + 1}"
        body = {"site": self.site_key, "visitor_id": f"v_bench{self.serial:09d}",
                "url": "https://example.com/?utm_source=google&utm_medium=cpc&gclid=abc",
                "referrer": "https://www.google.com/"}
        return "/v1/sessions", {"Content-Type": "text/plain", "X-Forwarded-For": ip,
                                "User-Agent": USER_AGENTS[self.serial % 4]}, json.dumps(body)

    def _beat(self, page: bool) -> tuple[str, dict, str]:
        self.serial += 1
        sid = self.sessions[self.serial % len(self.sessions)]
        body = {"site": self.site_key} | (
            {"url": f"https://example.com/page/{self.serial % 50}"} if page else {})
        return f"/v1/sessions/{sid}/heartbeat", {
            "Content-Type": "text/plain", "User-Agent": USER_AGENTS[0]}, json.dumps(body)

    def _call(self) -> tuple[str, dict, str]:
        self.serial += 1
        params = {"CallSid": f"CA{secrets.token_hex(16)}", "AccountSid": "AC" + "0" * 32,
                  "From": f"+1415555{self.serial % 10000:04d}",
                  "To": self.numbers[self.serial % len(self.numbers)], "CallStatus": "ringing",
                  "ApiVersion": "2010-04-01", "Direction": "inbound"}
        signature = self.validator.compute_signature(PUBLIC_URL + "/webhooks/twilio/voice",
                                                     params)
        return "/webhooks/twilio/voice", {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": signature}, urlencode(params)

    def script(self, path: Path, count: int) -> Path:
        make = {"new": self._new, "beat": lambda: self._beat(False),
                "view": lambda: self._beat(True), "call": self._call}
        rows = [make[PATTERN[i % len(PATTERN)]]() for i in range(count)]
        path.write_text(lua_table(rows) + LUA)
        return path


def start_sessions(port: int, site_key: str, count: int) -> list[str]:
    """Sessions for the heartbeats, each from its own visitor and IP (rate limits stay on)."""
    ids = []
    for i in range(count):
        status, answer = http_json(port, "POST", "/v1/sessions", {
            "site": site_key, "url": "https://example.com/", "visitor_id": f"v_setup{i:06d}"},
            {"Content-Type": "text/plain", "User-Agent": USER_AGENTS[i % 4],
             "X-Forwarded-For": f"172.{16 + i % 16}.{i // 16 % 256}.7"})
        if status != 200 or answer["numbers"][0]["fallback"]:
            raise RuntimeError(f"session {i} got no lease: {status} {answer}")
        ids.append(answer["session_id"])
    return ids


def run(ports: list[int], workload: Workload, tmp: Path, args, label: str) -> dict:
    """One wrk per instance, started together, connections split evenly; combined figures."""
    per = max(1, args.connections // len(ports))
    budget = int(args.seconds * 2_000)  # more distinct requests than a run can send
    for stage, seconds in (("warm", 2.0), ("run", args.seconds)):
        procs = [start_wrk(port, workload.script(tmp / f"{label}-{stage}-{i}.lua", budget),
                           seconds, per) for i, port in enumerate(ports)]
        results = [done_result(p.communicate()[0]) for p in procs]
    total = sum(r["requests"] for r in results)
    return {"instances": len(ports), "rps": sum(r["requests"] / r["seconds"] for r in results),
            "p99": max(r["p99"] for r in results), "p50": max(r["p50"] for r in results),
            "non_2xx": sum(r["bad"] for r in results),
            "socket_errors": sum(r["errors"] for r in results), "requests": total}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--connections", type=int, default=32, help="in all, split over wrks")
    parser.add_argument("--sessions", type=int, default=500, help="sessions to heartbeat")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        parser.error("wrk is not installed (apt-get install wrk)")
    with ExitStack() as stack:
        setting = bench_setting(stack, args.db, args.postgres_url, "dni-mixed-bench-")
        tmp, rdb, admin, env = setting.tmp, setting.rdb, setting.token, setting.env
        env.update({"DNI_TWILIO_AUTH_TOKEN": TOKEN, "DNI_PUBLIC_URL": PUBLIC_URL,
                    "DNI_PROXY_HOPS": "1", "WEB_CONCURRENCY": "2"})
        migrate(env)
        one = Gunicorn("one", "wsgi:app", env, tmp)
        stack.callback(one.stop)
        one.wait_ready()
        # The recorder runs as its own process in production, as here.
        worker = subprocess.Popen([sys.executable, "-m", "flask", "--app", "wsgi", "dni",
                                   "worker"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        stack.callback(worker.wait)
        stack.callback(worker.terminate)
        pool = BenchPool(one.port, admin, rdb)
        pool.grow_to(20_000)
        sessions = start_sessions(one.port, pool.site_key, args.sessions)
        numbers = pool.taken
        workload = Workload(pool.site_key, sessions, numbers)

        single = run([one.port], workload, tmp, args, "one")
        log(f"  1 instance : {single['rps']:.0f} req/s, p99 {single['p99']:.1f} ms")
        two = Gunicorn("two", "wsgi:app", env, tmp)
        stack.callback(two.stop)
        two.wait_ready()
        double = run([one.port, two.port], workload, tmp, args, "two")
        log(f"  2 instances: {double['rps']:.0f} req/s, p99 {double['p99']:.1f} ms")

        print(f"\nmixed workload ({args.db}; {args.connections} connections in all, "
              f"{args.seconds:g} s; {os.cpu_count()} cores): 20% new sessions, 50% heartbeats, "
              "20% page views, 10% new Twilio calls")
        print(f"{'instances':>9} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8} "
              f"{'sockerr':>8} {'requests':>9}")
        for r in (single, double):
            print(f"{r['instances']:>9} {r['rps']:>8.0f} {r['p50']:>8.1f} {r['p99']:>8.1f} "
                  f"{r['non_2xx']:>8} {r['socket_errors']:>8} {r['requests']:>9}")
        print(f"scaling two/one: {double['rps'] / single['rps']:.2f} "
              f"(p50 and p99 for two instances: the worse of the two wrk processes)")
        errors = sum(r["non_2xx"] + r["socket_errors"] for r in (single, double))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
