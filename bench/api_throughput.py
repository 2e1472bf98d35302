#!/usr/bin/env python3
"""Snippet API throughput against a bare Flask endpoint, measured in one run (issue 2).

Starts everything it needs (a fresh database, its own Redis database, the service and the
bare app under gunicorn with the same settings), drives each endpoint with ``wrk`` for the
same time and connection count, and prints requests/s, p50/p99 latency and the ratio of
each snippet endpoint to the bare one:

    heartbeat    >= 0.7 x bare      POST /v1/sessions/<id>/heartbeat (renews a lease)
    new session  >= 0.5 x bare      POST /v1/sessions (a new visit: parse, classify, lease)

Measurements alternate (bare, heartbeat, new, ..., bare) and the medians are compared, so
that a slow patch of the machine does not land on one endpoint only. Every process it
starts is stopped again, also on Ctrl-C or an error; the database it created is dropped
and its Redis database flushed.

    .venv/bin/python bench/api_throughput.py                 # PostgreSQL, 10 s per run
    .venv/bin/python bench/api_throughput.py --db sqlite --seconds 5 --json
    REDIS_URL="unix:///tmp/redis.sock?db=12" .venv/bin/python bench/api_throughput.py --floor

This is a benchmark, not a test: it exits 0 whether or not the targets are met (1 only
when the measurement itself is invalid: errors, non-2xx answers, fallbacks).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import redis

ROOT = Path(__file__).resolve().parent.parent  # the repository: gunicorn runs from here
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/12"
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1/test"  # to CREATE/DROP only
OWNED_MARKER = "dni-bench:owned"  # set in our Redis database so we never flush someone else's
PREFIX = "dni"  # the service's default DNI_REDIS_PREFIX

TARGETS = {"heartbeat": 0.7, "new_session": 0.5}
# A browser user agent: bots and empty ones get a fallback, never a lease.
USER_AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
]
LANDING_URL = "https://example.com/?utm_source=google&utm_medium=cpc&gclid=abc"
REFERRER = "https://www.google.com/"
NUMBERS_PER_REQUEST = 800  # 10,000 are allowed, but the default 16 KiB body limit fits ~1,000


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- processes -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Gunicorn:
    """One gunicorn master (and its workers) in a process group of its own."""

    def __init__(self, name: str, app_spec: str, env: dict, logdir: Path,
                 extra_args: tuple[str, ...] = ()):
        self.name = name
        self.port = free_port()
        self.log_path = logdir / f"{name}.log"
        self._log = open(self.log_path, "wb")
        # Both apps get the repository's gunicorn.conf.py and the same environment, so the
        # only difference between them is the app. No control socket: two masters would
        # fight over the default path (~/.gunicorn/gunicorn.ctl).
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py",
             "--no-control-socket", *extra_args, app_spec],
            cwd=ROOT, env={**env, "DNI_BIND": f"127.0.0.1:{self.port}"},
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Wait until a worker answers HTTP (any status)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n"
                                   + self.log_tail())
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/")
                conn.getresponse().read()
                conn.close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not answer within {timeout:.0f}s:\n" + self.log_tail())

    def log_count(self, text: str) -> int:
        """Lines of the log so far with ``text`` ("Booting worker": workers started)."""
        return self.log_path.read_text(errors="replace").count(text)

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM the master (graceful), then SIGKILL the whole group if it lingers."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # leftover workers, if any
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()
        self._log.close()


def http_json(port: int, method: str, path: str, body: dict | None = None,
              headers: dict | None = None) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=data, headers=headers or {})
        response = conn.getresponse()
        raw = response.read()
        return response.status, (json.loads(raw) if raw else {})
    finally:
        conn.close()


# -- Redis and the database ----------------------------------------------------------------


def bench_redis_url() -> str:
    """REDIS_URL from the environment if it names a database index, else db 12."""
    given = os.environ.get("REDIS_URL", "")
    if given.startswith("unix://") and "db=" in given:
        return given  # a Redis on this host's Unix socket, with a database index
    if given and re.fullmatch(r"/\d+", urlsplit(given).path or ""):
        return given
    return DEFAULT_REDIS_URL


def claim_redis(url: str) -> redis.Redis:
    """Our Redis database, flushed; refuses one holding keys a benchmark did not write."""
    client = redis.Redis.from_url(url, decode_responses=True)
    if client.dbsize() and not client.exists(OWNED_MARKER):
        raise SystemExit(f"refusing to flush {url}: it holds keys this benchmark did not write "
                         "(set REDIS_URL=redis://host:port/N to pick another database)")
    client.flushdb()
    client.set(OWNED_MARKER, "1")
    return client


def create_database(kind: str, tmp: Path, stack: ExitStack, postgres_url: str) -> str:
    """A fresh, empty database; it is dropped (or deleted) when the stack unwinds."""
    if kind == "sqlite":
        return f"sqlite:///{tmp / 'bench.sqlite3'}"  # inside tmp, removed with it
    import sqlalchemy as sa

    name = f"dni_bench_{secrets.token_hex(4)}"
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    stack.callback(drop)
    parts = urlsplit(postgres_url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", "", ""))


@dataclass
class Setting:
    """What a benchmark's service runs on: all of it undone by the ExitStack it was made on."""

    tmp: Path  # scratch folder (logs, wrk scripts, the instance folder)
    rdb: redis.Redis  # our Redis database, flushed afterwards
    token: str  # the admin token
    env: dict  # the service's environment: add the benchmark's own settings, then migrate


def bench_setting(stack: ExitStack, db: str, postgres_url: str, prefix: str,
            keep_tmp: bool = False) -> Setting:
    """A scratch folder, our Redis database and a fresh SQL database, and an environment
    that names them (the caller's DNI_ settings and WEB_CONCURRENCY left out)."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    if keep_tmp:
        stack.callback(lambda: log(f"logs kept in {tmp}"))
    else:
        stack.callback(shutil.rmtree, tmp, True)
    redis_url = bench_redis_url()
    rdb = claim_redis(redis_url)
    stack.callback(rdb.close)
    stack.callback(rdb.flushdb)  # runs before close: callbacks unwind in reverse
    log(f"database: {db}; redis: {redis_url}")
    database_url = create_database(db, tmp, stack, postgres_url)
    token = secrets.token_hex(16)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("DNI_") and k != "WEB_CONCURRENCY"}
    env.update({"DATABASE_URL": database_url, "REDIS_URL": redis_url,
                "DNI_ADMIN_TOKEN": token, "DNI_SECRET_KEY": secrets.token_hex(16),
                "DNI_INSTANCE_PATH": str(tmp / "instance"), "DNI_WORKER": "false",
                "BENCH_REDIS_URL": redis_url})  # the bare app's floor endpoint
    return Setting(tmp, rdb, token, env)


def migrate(env: dict) -> None:
    subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "db", "upgrade",
                    "-d", "dni_server/migrations"], cwd=ROOT, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


# -- the site, pool and sessions -----------------------------------------------------------


def fictional_numbers():
    """Valid, fictional US numbers: +1 650 2XX NNNN (exchange 2xx, any line)."""
    for exchange in range(200, 1000):
        for line in range(10_000):
            yield f"+1650{exchange:03d}{line:04d}"


class BenchPool:
    """The site and pool the benchmark leases from, grown through the admin API."""

    def __init__(self, port: int, token: str, rdb: redis.Redis):
        self.port = port
        self.auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self.rdb = rdb
        self.numbers = fictional_numbers()
        self.size = 0
        site = self._admin("/v1/sites", {"name": "bench", "domains": []})
        self.site_key = site["key"]
        self.id = self._admin("/v1/pools", {
            "site": self.site_key, "name": "bench", "target": "+18005550100",
            "destination": "+12125550199", "numbers": self._take(NUMBERS_PER_REQUEST),
            "lease_seconds": 300})["id"]

    def _admin(self, path: str, body: dict) -> dict:
        status, answer = http_json(self.port, "POST", path, body, self.auth)
        if status != 201 or answer.get("rejected"):
            raise RuntimeError(f"POST {path}: {status} {str(answer)[:300]}")
        return answer

    def _take(self, count: int) -> list[str]:
        self.size += count
        return [next(self.numbers) for _ in range(count)]

    def grow_to(self, size: int) -> None:
        while self.size < size:
            batch = self._take(min(NUMBERS_PER_REQUEST, size - self.size))
            self._admin(f"/v1/pools/{self.id}/numbers", {"numbers": batch})

    def idle(self) -> int:
        return self.rdb.zcard(f"{PREFIX}:pool:{{{self.id}}}:idle")

    def ensure_idle(self, needed: int) -> None:
        """Top the pool up so a run of new sessions cannot exhaust it."""
        short = needed - self.idle()
        if short > 0:
            log(f"  growing the pool by {short:,} numbers (to {self.size + short:,})")
            self.grow_to(self.size + short)

    def stats(self) -> dict[str, int]:
        raw = self.rdb.hgetall(f"{PREFIX}:pool:{{{self.id}}}:stats")
        return {name: int(value) for name, value in raw.items()}


def start_sessions(port: int, site_key: str, count: int) -> list[str]:
    """Sessions for the heartbeat runs, each holding a real lease."""
    ids = []
    for i in range(count):
        for _attempt in range(5):
            status, answer = http_json(port, "POST", "/v1/sessions", {
                "site": site_key, "url": LANDING_URL, "referrer": REFERRER,
            }, {"Content-Type": "text/plain", "User-Agent": USER_AGENTS[i % len(USER_AGENTS)]})
            if status == 200 and not any(n["fallback"] for n in answer["numbers"]):
                break
            # "unavailable": Redis missed the service's 50 ms timeout (a busy machine), and
            # the worker now serves fallbacks for a second before it tries Redis again.
            time.sleep(1.2)
        else:
            raise RuntimeError(f"session {i} got no lease: {status} {answer}")
        ids.append(answer["session_id"])
    return ids


# -- wrk -----------------------------------------------------------------------------------

# Shared by every script so that wrk does the same work per request for each endpoint:
# requests are formatted once in init() and handed out in turn; every answer is checked
# (2xx, and no "fallback":true, which would mean the service answered without leasing).
LUA_COMMON = r"""
local threads = {}
function setup(thread) table.insert(threads, thread) end

local reqs, n = {}, 0
bad, fallbacks, unavailable = 0, 0, 0
function init(args)
  for _, r in ipairs(REQUESTS) do
    local headers = {["Content-Type"] = "text/plain", ["User-Agent"] = r[3]}
    table.insert(reqs, wrk.format("POST", r[1], headers, r[2]))
  end
  n = math.random(#reqs) - 1  -- threads start at different sessions
end
function request()
  n = n % #reqs + 1
  return reqs[n]
end
function response(status, headers, body)
  if status < 200 or status > 299 then
    bad = bad + 1
  elseif string.find(body, '"fallback":true', 1, true) then
    fallbacks = fallbacks + 1
    if string.find(body, '"reason":"unavailable"', 1, true) then
      unavailable = unavailable + 1  -- Redis did not answer within DNI_REDIS_TIMEOUT_MS
    end
  end
end
function done(summary, latency, requests)
  local b, f, u = 0, 0, 0
  for _, t in ipairs(threads) do
    b, f, u = b + t:get("bad"), f + t:get("fallbacks"), u + t:get("unavailable")
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"mean_us":%.1f,' ..
    '"max_us":%d,"non_2xx":%d,"fallbacks":%d,"unavailable":%d,"connect_errors":%d,' ..
    '"read_errors":%d,"write_errors":%d,"timeouts":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.mean, latency.max, b, f, u, e.connect, e.read, e.write, e.timeout))
end
"""


def lua_string(text: str) -> str:
    return json.dumps(text)  # a JSON string is a valid Lua string for this ASCII content


def write_lua(path: Path, requests: list[tuple[str, str, str]]) -> Path:
    """A wrk script cycling over (path, body, user agent) requests."""
    rows = ",\n".join(f"  {{{lua_string(p)}, {lua_string(b)}, {lua_string(ua)}}}"
                      for p, b, ua in requests)
    path.write_text(f"REQUESTS = {{\n{rows}\n}}\n{LUA_COMMON}")
    return path


@dataclass
class Run:
    kind: str
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    fallbacks: int
    unavailable: int  # of the fallbacks: Redis too slow to answer (the guard's timeout)
    socket_errors: int
    other_cpu: float = 0.0  # cores used by processes that are not part of the benchmark
    cpu_us: float = 0.0  # gunicorn CPU (master + workers) per answered request
    worker_restarts: int = 0
    server_check: str = ""


class CpuMeter:
    """CPU time of the whole machine, and of the processes taking part in the benchmark.

    The machine may be shared (other engineers' test suites, browsers): CPU they use is
    taken from the server under test, so every run reports how much of it there was.
    Ours: our gunicorn process groups, this process and its children (wrk), and the Redis
    and PostgreSQL servers (shared, but busy mostly because of us). Each process counts
    with its reaped children (cutime, cstime), so a worker that exits mid-run (gunicorn's
    max_requests) hands its CPU time to its master instead of dropping out of the sum.
    """

    SERVERS = ("redis-server", "postgres")

    def __init__(self, groups: list[int]):
        self.groups = set(groups)
        self.tick = os.sysconf("SC_CLK_TCK")

    def _ours(self) -> tuple[float, dict[int, float]]:
        """CPU seconds of all our processes, and of each gunicorn process group."""
        ticks = 0
        groups = dict.fromkeys(self.groups, 0)
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/stat") as f:
                    stat = f.read()
            except OSError:
                continue  # gone already
            comm = stat[stat.index("(") + 1:stat.rindex(")")]
            fields = stat[stat.rindex(")") + 2:].split()  # fields[0] is field 3 of proc(5)
            pid, pgrp = int(entry.name), int(fields[2])
            if pgrp in self.groups or pid == os.getpid() or comm in self.SERVERS:
                used = sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
                ticks += used
                if pgrp in groups:
                    groups[pgrp] += used
        return ticks / self.tick, {g: t / self.tick for g, t in groups.items()}

    def _busy(self) -> float:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
        idle = values[3] + values[4]  # idle + iowait
        return (sum(values[:8]) - idle) / self.tick  # not guest time: counted in user

    def snapshot(self) -> tuple[float, float, float, dict[int, float]]:
        ours, groups = self._ours()
        return time.monotonic(), self._busy(), ours, groups

    @staticmethod
    def other_cores(start, end) -> float:
        """Cores used by everything else between two snapshots."""
        wall = end[0] - start[0]
        return max(0.0, ((end[1] - start[1]) - (end[2] - start[2])) / wall) if wall else 0.0

    @staticmethod
    def group_seconds(start, end, group: int) -> float:
        """CPU seconds one gunicorn (master and workers) used between two snapshots."""
        return end[3][group] - start[3][group]

    def wait_quiet(self, limit: float, max_wait: float) -> float:
        """Wait (up to max_wait s) until others use less than ``limit`` cores; return it."""
        deadline = time.monotonic() + max_wait
        while True:
            start = self.snapshot()
            time.sleep(1.0)
            other = self.other_cores(start, self.snapshot())
            if other < limit or time.monotonic() >= deadline:
                return other
            log(f"  waiting for a quieter machine: others use {other:.2f} cores")


def wrk(url: str, script: Path, seconds: float, args) -> dict:
    cmd = ["wrk", "-t", str(args.wrk_threads), "-c", str(args.connections),
           "-d", f"{seconds:g}s", "--timeout", "10s", "--latency", "-s", str(script), url]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    match = re.search(r"^BENCH_RESULT (\{.*\})$", out, re.MULTILINE)
    if not match:
        raise RuntimeError(f"wrk printed no result:\n{out}")
    return json.loads(match.group(1))


def measure(kind: str, server: Gunicorn, prepare: Callable[[], Path], args, pool: BenchPool,
            cpu: CpuMeter) -> Run:
    """A warm-up (discarded), then the measured run; checks the server did the real work.

    ``prepare`` readies what the run needs and returns its wrk script.
    """
    url = f"http://127.0.0.1:{server.port}/"  # the script names each request's own path
    if args.quiet_wait > 0:
        cpu.wait_quiet(args.quiet_limit, args.quiet_wait)
    script = prepare()
    boots = server.log_count("Booting worker")
    before = pool.stats()
    warm = wrk(url, script, args.warmup, args) if args.warmup > 0 else None
    start = cpu.snapshot()
    r = wrk(url, script, args.seconds, args)
    end = cpu.snapshot()
    other = cpu.other_cores(start, end)
    cpu_us = cpu.group_seconds(start, end, server.proc.pid) / max(1, r["requests"]) * 1e6
    after = pool.stats()
    answered = r["requests"] + (warm["requests"] if warm else 0)
    fallbacks = r["fallbacks"] + (warm["fallbacks"] if warm else 0)
    unavailable = r["unavailable"] + (warm["unavailable"] if warm else 0)
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in ("renewals", "leases", "exhausted")}
    # The pool's own counters must move once per answer with a number (up to one more per
    # connection: wrk does not count the requests still in flight when it stops).
    check = {"heartbeat": f"renewals +{delta['renewals']:,}",
             "new_session": f"leases +{delta['leases']:,}, exhausted +{delta['exhausted']}",
             }.get(kind, "")
    moved = {"heartbeat": delta["renewals"], "new_session": delta["leases"]}.get(kind)
    leased = answered - fallbacks
    if moved is not None and not leased <= moved <= leased + 2 * args.connections:
        check += f" (MISMATCH: {leased:,} answers with a number)"
    run = Run(kind=kind, rps=r["requests"] / (r["duration_us"] / 1e6),
              p50_ms=r["p50_us"] / 1000, p99_ms=r["p99_us"] / 1000, requests=r["requests"],
              non_2xx=r["non_2xx"] + (warm["non_2xx"] if warm else 0), fallbacks=fallbacks,
              unavailable=unavailable,
              socket_errors=sum(r[k] for k in ("connect_errors", "read_errors",
                                                 "write_errors", "timeouts")),
              other_cpu=other, cpu_us=cpu_us, worker_restarts=server.log_count("Booting worker") - boots,
              server_check=check)
    log(f"  {kind:12s} {run.rps:8.0f} req/s  p50 {run.p50_ms:6.2f} ms  p99 {run.p99_ms:6.2f} ms"
        f"  non-2xx {run.non_2xx}  fallbacks {run.fallbacks} ({run.unavailable} unavailable)"
        f"  socket errors {run.socket_errors}"
        f"  server CPU {cpu_us:.0f} us/req  other CPU {other:.2f} cores"
        f"  worker restarts {run.worker_restarts}  {check}")
    return run


# -- the run -------------------------------------------------------------------------------


@dataclass
class Summary:
    kind: str
    rps: float
    p50_ms: float
    p99_ms: float
    runs: int
    ratio: float | None = None
    cpu_ratio: float | None = None  # bare CPU per request / this one's: less noisy
    target: float | None = None
    verdict: str = ""
    non_2xx: int = 0
    fallbacks: int = 0
    socket_errors: int = 0
    other_cpu: float = 0.0  # the most any of its runs saw
    cpu_us: float = 0.0  # median gunicorn CPU per request


@dataclass
class Results:
    settings: dict
    machine: dict
    runs: list[Run] = field(default_factory=list)
    discarded: list[Run] = field(default_factory=list)  # runs repeated: the machine was busy
    summary: list[Summary] = field(default_factory=list)
    valid: bool = True


def summarise(runs: list[Run]) -> list[Summary]:
    """Medians per endpoint; ratios against the median of the bare runs."""
    out = []
    for kind in ("bare", "floor", "heartbeat", "new_session"):
        mine = [r for r in runs if r.kind == kind]
        if not mine:
            continue
        out.append(Summary(
            kind=kind, rps=statistics.median(r.rps for r in mine),
            p50_ms=statistics.median(r.p50_ms for r in mine),
            p99_ms=statistics.median(r.p99_ms for r in mine), runs=len(mine),
            non_2xx=sum(r.non_2xx for r in mine), fallbacks=sum(r.fallbacks for r in mine),
            socket_errors=sum(r.socket_errors for r in mine),
            other_cpu=max(r.other_cpu for r in mine),
            cpu_us=statistics.median(r.cpu_us for r in mine)))
    bare, bare_cpu = out[0].rps, out[0].cpu_us
    for s in out:
        s.ratio = s.rps / bare
        s.cpu_ratio = bare_cpu / s.cpu_us if s.cpu_us else None
        s.target = TARGETS.get(s.kind)
        if s.target is not None:
            s.verdict = "PASS" if s.ratio >= s.target else "BELOW"
    return out


def machine_info() -> dict:
    cpu = ""
    try:
        cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                    if line.startswith("model name")), "")
    except OSError:
        pass
    return {"cores": os.cpu_count(), "cpu": cpu, "python": platform.python_version(),
            "load_before": os.getloadavg()[0],
            "date": time.strftime("%Y-%m-%d %H:%M %Z")}


def benchmark(args) -> Results:
    results = Results(settings={k: v for k, v in vars(args).items() if k != "json"},
                      machine=machine_info())
    with ExitStack() as stack:
        setting = bench_setting(stack, args.db, args.postgres_url, "dni-bench-", args.keep_logs)
        tmp, rdb, token, env = setting.tmp, setting.rdb, setting.token, setting.env
        env.update({
            # No recorder thread in the web workers: it runs as its own process
            # (`flask dni worker`) in production and would compete for the 2 cores here.
            "DNI_WORKER": "true" if args.recorder else "false",
            "DNI_SESSION_RATE": "0",  # every request comes from 127.0.0.1
            "WEB_CONCURRENCY": str(args.workers), "DNI_THREADS": str(args.threads),
        })
        migrate(env)

        extra = () if args.max_requests is None else ("--max-requests", str(args.max_requests))
        service = Gunicorn("service", "wsgi:app", env, tmp, extra)
        stack.callback(service.stop)
        bare = Gunicorn("bare", "bench.bare_app:app", env, tmp, extra)
        stack.callback(bare.stop)
        service.wait_ready()
        bare.wait_ready()

        pool = BenchPool(service.port, token, rdb)
        pool.grow_to(args.pool_size)
        log(f"pool {pool.id}: {pool.size:,} numbers")

        lua = tmp / "lua"
        lua.mkdir()
        small = json.dumps({"site": pool.site_key})  # what the snippet sends to renew
        visit = json.dumps({"site": pool.site_key, "url": LANDING_URL, "referrer": REFERRER})
        bare_lua = write_lua(lua / "bare.lua", [("/bare", small, USER_AGENTS[0])])
        floor_lua = write_lua(lua / "floor.lua", [("/floor", small, USER_AGENTS[0])])
        new_lua = write_lua(lua / "new_session.lua", [
            ("/v1/sessions", visit, ua) for ua in USER_AGENTS])

        def heartbeat_run() -> Path:
            # Fresh sessions for every heartbeat run: waiting for a quiet machine can take
            # longer than the 300 s lease, and a lapsed lease is answered with a fallback.
            sessions = start_sessions(service.port, pool.site_key, args.sessions)
            return write_lua(lua / "heartbeat.lua", [
                (f"/v1/sessions/{sid}/heartbeat", small, USER_AGENTS[i % len(USER_AGENTS)])
                for i, sid in enumerate(sessions)])

        def new_session_run() -> Path:
            # Each new session keeps its number for the lease (300 s): make sure enough are
            # idle for a run as fast as the fastest bare run, plus 50%.
            fastest = max(r.rps for r in results.runs if r.kind == "bare")
            pool.ensure_idle(int(fastest * (args.seconds + args.warmup) * 1.5))
            return new_lua

        prepare = {"bare": lambda: bare_lua, "floor": lambda: floor_lua,
                   "heartbeat": heartbeat_run, "new_session": new_session_run}
        servers = {"bare": bare, "floor": bare, "heartbeat": service, "new_session": service}

        cpu = CpuMeter([service.proc.pid, bare.proc.pid])
        order = ["bare"] + (["floor"] if args.floor else []) + ["heartbeat", "new_session"]
        plan = order * args.rounds + ["bare"]
        log(f"measuring {len(plan)} runs of {args.seconds:g}s (+{args.warmup:g}s warm-up), "
            f"{args.connections} connections: {', '.join(plan)}")
        for kind in plan:
            for attempt in range(1 + args.retries):
                run = measure(kind, servers[kind], prepare[kind], args, pool, cpu)
                if run.other_cpu <= args.quiet_limit or attempt == args.retries:
                    break
                # Other processes took CPU from the server during the run: it would be
                # charged to this endpoint alone, so measure it again.
                results.discarded.append(run)
                log(f"  (others used {run.other_cpu:.2f} cores during that run: once more)")
            results.runs.append(run)
        results.settings["pool_size_final"] = pool.size
        results.summary = summarise(results.runs)
        results.valid = all(s.non_2xx == 0 and s.fallbacks == 0 and s.socket_errors == 0
                            for s in results.summary) and not any(
            "MISMATCH" in r.server_check for r in results.runs)
    return results


def print_table(res: Results) -> None:
    m, s = res.machine, res.settings
    print(f"\nDNI snippet API throughput ({m['date']}; {m['cores']} cores, {m['cpu']}; "
          f"Python {m['python']}; load before {m['load_before']:.2f})")
    recycle = ("gunicorn.conf.py's max_requests" if s["max_requests"] is None
               else f"max_requests {s['max_requests']}")
    print(f"gunicorn: {s['workers']} workers x {s['threads']} thread(s), {recycle}, access log off; "
          f"database {s['db']}; wrk {s['wrk_threads']} thread(s), {s['connections']} "
          f"connections, {s['seconds']:g}s per run (+{s['warmup']:g}s warm-up), "
          f"{s['rounds']} round(s)\n")
    head = (f"{'endpoint':<13}{'req/s':>8}{'p50 ms':>8}{'p99 ms':>8}{'x bare':>8}{'target':>7}"
            f"  {'result':<6}{'CPU us':>7}{'x bare':>7}{'runs':>5}{'non-2xx':>8}{'fallbk':>7}"
            f"{'sockerr':>8}{'other CPU':>10}")
    print(head)
    print("-" * len(head))
    for x in res.summary:
        target = f">={x.target:.1f}" if x.target is not None else ""
        print(f"{x.kind:<13}{x.rps:>8.0f}{x.p50_ms:>8.2f}{x.p99_ms:>8.2f}{x.ratio:>8.2f}"
              f"{target:>7}  {x.verdict:<6}{x.cpu_us:>7.0f}{x.cpu_ratio:>7.2f}{x.runs:>5}"
              f"{x.non_2xx:>8}{x.fallbacks:>7}{x.socket_errors:>8}{x.other_cpu:>10.2f}")
    print("\nreq/s, p50, p99 and CPU us (gunicorn's CPU time per request, master and workers) are "
          "medians over\nthe runs of each endpoint. The first x bare divides req/s by the bare "
          "median (the target\napplies to it); the second divides bare CPU us by this one's, "
          "which other load disturbs less.")
    print("other CPU: the most cores used by processes outside the benchmark during a run "
          "of that endpoint;")
    print("above ~0.2 the machine was shared and the figures understate the service.")
    if res.discarded:
        print(f"{len(res.discarded)} run(s) measured again because other processes were busy.")
    restarts = sum(r.worker_restarts for r in res.runs)
    if restarts:
        print(f"gunicorn restarted workers {restarts} time(s) during the runs "
              "(max_requests in gunicorn.conf.py).")
    if not res.valid:
        print("INVALID: some answers were errors, non-2xx or fallbacks, or the pool counters "
              "did not match the answers; see the log above.")


def interrupt(signum, frame):
    """SIGTERM unwinds like Ctrl-C, so the cleanup callbacks run either way."""
    raise KeyboardInterrupt


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--db", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument("--postgres-url", default=os.environ.get("BENCH_POSTGRES_URL",
                                                                 DEFAULT_POSTGRES_URL),
                        help="server to create the scratch database on (and drop it)")
    parser.add_argument("--seconds", type=float, default=10.0, help="per measured run")
    parser.add_argument("--warmup", type=float, default=2.0, help="before each run, discarded")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument("--rounds", type=int, default=2,
                        help="bare/heartbeat/new rounds (then one more bare run)")
    parser.add_argument("--wrk-threads", type=int, default=1,
                        help="wrk threads; 1 leaves the most CPU to the server on 2 cores")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers, both apps")
    parser.add_argument("--threads", type=int, default=1,
                        help="gunicorn threads per worker, both apps (1 = sync worker)")
    parser.add_argument("--max-requests", type=int, default=None,
                        help="override gunicorn.conf.py's max_requests for both apps (0: never "
                             "restart workers), to take worker restarts out of the figures")
    parser.add_argument("--sessions", type=int, default=1000,
                        help="sessions the heartbeat runs cycle through")
    parser.add_argument("--pool-size", type=int, default=20_000,
                        help="initial numbers; grown before each new-session run as needed")
    parser.add_argument("--floor", action="store_true",
                        help="also measure the bare endpoint plus one lease-like EVALSHA")
    parser.add_argument("--recorder", action="store_true",
                        help="run the recorder thread in each web worker (DNI_WORKER=true)")
    parser.add_argument("--quiet-wait", type=float, default=20.0,
                        help="before each run, wait up to this long for other processes to "
                             "calm down (0: don't)")
    parser.add_argument("--quiet-limit", type=float, default=0.2,
                        help="cores other processes may use for the machine to count as quiet")
    parser.add_argument("--retries", type=int, default=2,
                        help="repeat a run during which others used more than --quiet-limit "
                             "cores, up to this many times")
    parser.add_argument("--keep-logs", action="store_true", help="keep the temp dir")
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        parser.error("wrk is not installed (apt-get install wrk)")

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, interrupt)  # also when started in the background (ignored)
    try:
        res = benchmark(args)
    except KeyboardInterrupt:
        log("interrupted; everything started was stopped")
        return 130
    if args.json:
        print(json.dumps({"settings": res.settings, "machine": res.machine, "valid": res.valid,
                          "summary": [asdict(s) for s in res.summary],
                          "runs": [asdict(r) for r in res.runs],
                          "discarded": [asdict(r) for r in res.discarded]}, indent=2))
    else:
        print_table(res)
    return 0 if res.valid else 1


if __name__ == "__main__":
    sys.exit(main())
