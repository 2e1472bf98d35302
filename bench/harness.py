#!/usr/bin/env python3
"""What the benchmarks share: the service under gunicorn, a scratch folder, a Redis database
and a SQL database of their own, a site and pool grown through the admin API, wrk runs and
their results, and a meter of the CPU other processes take from the machine.

Every process started and everything created is undone by the ``ExitStack`` it was made on,
also on Ctrl-C (``interrupt`` turns SIGTERM into one). Redis: REDIS_URL when it names a
database index, else database 12, flushed; one holding keys a benchmark did not write is
refused (``OWNED_MARKER``).
"""

from __future__ import annotations

import http.client
import json
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import redis

ROOT = Path(__file__).resolve().parent.parent  # the repository: gunicorn runs from here
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/12"
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1/test"  # to CREATE/DROP only
OWNED_MARKER = "dni-bench:owned"  # set in our Redis database so we never flush someone else's
PREFIX = "dni"  # the service's default DNI_REDIS_PREFIX

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


def exit_zero(run, args, name: str) -> int:
    """``run(args)``; a failure is printed, and the exit status stays 0: a benchmark reports
    what it measured, it does not fail."""
    try:
        run(args)
    except Exception:
        import traceback

        traceback.print_exc()
        print(f"{name} benchmark failed", file=sys.stderr)
    return 0


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


def app_on_new_database(stack: ExitStack, kind: str, postgres_url: str, **settings: str):
    """The app in this process, on a fresh database of ``kind`` migrated as the app migrates
    itself; its engine is disposed and the database dropped (or deleted) when ``stack``
    unwinds. ``settings`` add to or override the app's config. Redis is not used by the
    callers (redis-py connects lazily)."""
    from flask_migrate import upgrade

    from dni_server import MIGRATIONS, create_app

    workdir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
    url = create_database(kind, workdir, stack, postgres_url)
    app = create_app({"DATABASE_URL": url, "REDIS_URL": "redis://127.0.0.1:6379/13",
                      "DNI_WORKER": "false", "DNI_ADMIN_TOKEN": secrets.token_hex(16),
                      "DNI_SECRET_KEY": secrets.token_hex(16), **settings},
                     instance_path=str(workdir))
    stack.callback(dispose, app)
    with app.app_context():
        upgrade(directory=MIGRATIONS)
    return app


def dispose(app) -> None:
    """Close the app's SQL session and connections (before its database is dropped)."""
    from dni_server.extensions import db

    with app.app_context():
        db.session.remove()
        db.engine.dispose()


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
        self.taken: list[str] = []  # every number in the pool, in the order added
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
        batch = [next(self.numbers) for _ in range(count)]
        self.taken.extend(batch)
        return batch

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

# The done() of the scripts that count their own bad answers in a global ``bad`` (the
# webhook and mixed-load benchmarks): one RESULT line that ``done_result`` reads.
LUA_DONE = r"""
local threads = {}
function setup(thread) table.insert(threads, thread) end
function done(summary, latency, requests)
  local b = 0
  for _, t in ipairs(threads) do b = b + t:get("bad") end
  local e = summary.errors
  io.write(string.format("RESULT %d %.3f %.3f %.3f %d %d\n", summary.requests,
    summary.duration / 1e6, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    b, e.connect + e.read + e.write + e.timeout))
end
"""


def wrk_command(port: int, script: Path, seconds: float, connections: int,
                threads: int = 1) -> list[str]:
    """wrk against the server on ``port``; the script names each request's own path."""
    return ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds:g}s",
            "--timeout", "10s", "--latency", "-s", str(script), f"http://127.0.0.1:{port}/"]


def wrk_output(port: int, script: Path, seconds: float, connections: int,
               threads: int = 1) -> str:
    """Run wrk to the end; what it printed."""
    return subprocess.run(wrk_command(port, script, seconds, connections, threads),
                          capture_output=True, text=True, check=True).stdout


def start_wrk(port: int, script: Path, seconds: float, connections: int) -> subprocess.Popen:
    """wrk in the background (several at once); ``proc.communicate()[0]`` is what it printed."""
    return subprocess.Popen(wrk_command(port, script, seconds, connections),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def bench_result(out: str) -> dict:
    """The BENCH_RESULT line of a ``write_lua`` script: counts, and latencies in microseconds."""
    match = re.search(r"^BENCH_RESULT (\{.*\})$", out, re.MULTILINE)
    if not match:
        raise RuntimeError(f"wrk printed no result:\n{out}")
    return json.loads(match.group(1))


def done_result(out: str) -> dict:
    """The RESULT line of a ``LUA_DONE`` script: requests, seconds, p50 and p99 in ms, bad
    answers and socket errors."""
    for line in out.splitlines():
        if line.startswith("RESULT "):
            n, secs, p50, p99, bad, errors = line.split()[1:]
            return {"requests": int(n), "seconds": float(secs), "p50": float(p50),
                    "p99": float(p99), "bad": int(bad), "errors": int(errors)}
    raise RuntimeError(f"wrk printed no result:\n{out}")


# -- the machine ---------------------------------------------------------------------------


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


def interrupt(signum, frame):
    """SIGTERM unwinds like Ctrl-C, so the cleanup callbacks run either way."""
    raise KeyboardInterrupt
