"""Helpers of the fault tests: private servers to break for real (a redis-server, a
PostgreSQL cluster, the app under gunicorn with its worker process), and a thread pool of
HTTP clients to load them.

Nothing here touches the machine's own Redis (6379) or PostgreSQL (5432): every server is
started on a free port in a temporary directory and stopped at the end.
"""

from __future__ import annotations

import glob
import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import redis as redis_lib
import requests
import sqlalchemy as sa
from ports import free_port
from test_durability import start_redis
from twilio.request_validator import RequestValidator

from bench.harness import Gunicorn
from factories import ADMIN_TOKEN, CHROME_UA, TWILIO_TOKEN, numbers

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DESTINATION = "+12125550199"


# -- Redis ---------------------------------------------------------------------------------


class PrivateRedis:
    """A redis-server of our own, without persistence: a restart brings it back empty."""

    def __init__(self, workdir: str):
        self.workdir = workdir
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc = start_redis(self.port, workdir)

    def client(self) -> redis_lib.Redis:
        return redis_lib.Redis(port=self.port, decode_responses=True)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def start(self) -> None:
        self.proc = start_redis(self.port, self.workdir)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.kill()


# Keeps Redis busy for ARGV[1] microseconds: a script blocks every other client meanwhile,
# as a fork for a snapshot or a starved CPU would. (DEBUG SLEEP needs a config flag.)
STALL_SCRIPT = """
local t = redis.call('TIME')
local start = t[1] * 1000000 + t[2]
repeat
    t = redis.call('TIME')
until t[1] * 1000000 + t[2] - start >= tonumber(ARGV[1])
return 1
"""


class RedisStalls:
    """A thread that stalls Redis for ``seconds`` every ``every`` seconds (a range)."""

    def __init__(self, client: redis_lib.Redis, seconds: float = 0.2,
                 every: tuple[float, float] = (2.0, 3.0)):
        self.client = client
        self.seconds = seconds
        self.every = every
        self.stalls: list[float] = []  # when each began (time.monotonic())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> RedisStalls:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        stall = self.client.register_script(STALL_SCRIPT)
        rng = random.Random(7)
        while not self._stop.wait(rng.uniform(*self.every)):
            self.stalls.append(time.monotonic())
            stall(args=[int(self.seconds * 1_000_000)])





# -- PostgreSQL ----------------------------------------------------------------------------


def pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if found:
        return found[-1]
    on_path = shutil.which(name)
    if on_path is None:
        raise RuntimeError(f"PostgreSQL's {name} is not installed (apt-get install postgresql)")
    return on_path


def as_postgres_user(cmd: list[str]) -> list[str]:
    """initdb refuses root: run the cluster as the ``postgres`` account then."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


class PrivatePostgres:
    """A PostgreSQL cluster of our own, stopped and started with pg_ctl."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="dni-faults-pg-")
        self.data = os.path.join(self.dir, "data")
        self.port = free_port()
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        subprocess.run(as_postgres_user([pg_bin("initdb"), "-D", self.data, "-U", "postgres",
                                         "-A", "trust", "--no-sync", "-E", "UTF8"]),
                       check=True, capture_output=True)
        self.start()

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def pg_ctl(self, *args: str) -> None:
        subprocess.run(as_postgres_user([pg_bin("pg_ctl"), "-D", self.data, *args]),
                       check=True, capture_output=True, timeout=60)

    def start(self) -> None:
        # The socket lives in our directory; fsync off: nothing here must survive the OS.
        options = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 "
                   "-c fsync=off -c max_connections=100")
        self.pg_ctl("-w", "-l", os.path.join(self.dir, "log"), "-o", options, "start")

    def stop_immediate(self) -> None:
        """Stop as a crash would: no checkpoint, every connection cut at once."""
        self.pg_ctl("-m", "immediate", "stop")

    def destroy(self) -> None:
        try:
            self.pg_ctl("-m", "immediate", "stop")
        except subprocess.CalledProcessError:
            pass  # already stopped
        shutil.rmtree(self.dir, ignore_errors=True)





def sql_scalar(url: str, query: str, **params):
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text(query), params).scalar()
    finally:
        engine.dispose()


def sql_rows(url: str, query: str, **params) -> list:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(sa.text(query), params))
    finally:
        engine.dispose()


# -- the app, as in production -------------------------------------------------------------


class Service:
    """gunicorn (2 workers, threaded as the repository's gunicorn.conf.py says) and, when
    asked, one ``flask dni worker`` process."""

    def __init__(self, database_url: str, redis_url: str, logdir: str, *, worker: bool,
                 **extra: str):
        env = {k: v for k, v in os.environ.items() if not k.startswith("DNI_")}
        env.update({"DATABASE_URL": database_url, "REDIS_URL": redis_url,
                    "DNI_ADMIN_TOKEN": ADMIN_TOKEN, "DNI_SECRET_KEY": secrets.token_hex(16),
                    "DNI_INSTANCE_PATH": os.path.join(logdir, "instance"),
                    "DNI_TWILIO_AUTH_TOKEN": TWILIO_TOKEN, "DNI_WORKER": "false",
                    "DNI_SESSION_RATE": "0", "DNI_PROXY_HOPS": "1", "WEB_CONCURRENCY": "2",
                    "PYTHONUNBUFFERED": "1", **extra})
        self.env = env
        self.logdir = logdir
        self.web = Gunicorn("web", "wsgi:app", env, Path(logdir))
        self.base = f"http://127.0.0.1:{self.web.port}"
        self.worker = None
        self.worker_log = None
        if worker:
            self.start_worker()
        self.web.wait_ready()

    def start_worker(self) -> None:
        self.worker_log = open(os.path.join(self.logdir, "worker.log"), "ab")
        self.worker = subprocess.Popen(
            [sys.executable, "-m", "flask", "--app", "wsgi", "dni", "worker"], cwd=ROOT,
            env=self.env, stdout=self.worker_log, stderr=subprocess.STDOUT,
            start_new_session=True)

    def admin(self, method: str, path: str, body: dict | None = None) -> dict:
        response = requests.request(method, self.base + path, json=body, timeout=30,
                                    headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        assert response.status_code in (200, 201), (path, response.status_code, response.text)
        return response.json()

    def make_pool(self, size: int, **fields) -> tuple[dict, dict]:
        site = self.admin("POST", "/v1/sites", {"name": "Faults", "domains": []})
        pool = self.admin("POST", "/v1/pools", {
            "site": site["key"], "name": "Main", "target": "+18005550100",
            "destination": DESTINATION, "numbers": numbers(size, start=200), **fields})
        return site, pool

    def stop(self) -> None:
        if self.worker is not None:
            if self.worker.poll() is None:
                os.killpg(self.worker.pid, signal.SIGTERM)
                try:
                    self.worker.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(self.worker.pid, signal.SIGKILL)
                    self.worker.wait()
            self.worker_log.close()
        self.web.stop()

    def logs(self) -> str:
        parts = [self.web.log_tail(40)]
        if self.worker_log is not None:
            with open(os.path.join(self.logdir, "worker.log"), errors="replace") as fh:
                parts.append(fh.read()[-3000:])
        return "\n---\n".join(parts)





# -- load ----------------------------------------------------------------------------------


@dataclass
class Answer:
    kind: str  # "session", "heartbeat", "call"
    started: float  # time.monotonic()
    seconds: float
    status: int  # 0: no answer (socket error or client timeout)
    body: dict | str | None = None
    key: str = ""  # session id or CallSid


@dataclass
class Traffic:
    """Threads of HTTP clients: each starts sessions, heartbeats its own, and places calls.

    Every answer is kept with its start time, so a test can split them by phase.
    """

    base: str
    site_key: str
    call_to: list[str]
    threads: int = 4
    mix: tuple[str, ...] = ("session", "heartbeat", "heartbeat", "call")
    pause: float = 0.0
    answers: list[Answer] = field(default_factory=list)
    calls_sent: list[str] = field(default_factory=list)

    def __post_init__(self):
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._workers: list[threading.Thread] = []
        self.validator = RequestValidator(TWILIO_TOKEN)
        self.voice_url = self.base + "/webhooks/twilio/voice"

    def start(self) -> Traffic:
        for i in range(self.threads):
            thread = threading.Thread(target=self._run, args=(i,), daemon=True)
            thread.start()
            self._workers.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._workers:
            thread.join(30)

    def since(self, start: float, end: float | None = None, kind: str | None = None
              ) -> list[Answer]:
        with self._lock:
            return [a for a in self.answers if a.started >= start
                    and (end is None or a.started < end) and (kind is None or a.kind == kind)]

    def _run(self, index: int) -> None:
        http = requests.Session()
        rng = random.Random(index)
        mine: list[str] = []  # this thread's sessions that hold a number
        step = 0
        while not self._stop.is_set():
            kind = self.mix[step % len(self.mix)]
            step += 1
            if kind == "heartbeat" and not mine:
                kind = "session"
            if kind == "session":
                answer = self.new_session(http, f"v_load{index}x{step}")
                if answer.status == 200 and not answer.body["numbers"][0]["fallback"]:
                    mine.append(answer.body["session_id"])
                    del mine[:-20]  # a visitor's tab does not live forever
            elif kind == "heartbeat":
                answer = self.heartbeat(http, rng.choice(mine))
            else:
                answer = self.call(http, rng.choice(self.call_to))
            with self._lock:
                self.answers.append(answer)
            if self.pause:
                time.sleep(self.pause)

    def _post(self, http, kind: str, path: str, key: str = "", **kwargs) -> Answer:
        started = time.monotonic()
        try:
            response = http.post(self.base + path, timeout=10, **kwargs)
        except requests.RequestException:
            return Answer(kind, started, time.monotonic() - started, 0, None, key)
        seconds = time.monotonic() - started
        try:
            body = response.json()
        except ValueError:
            body = response.text
        return Answer(kind, started, seconds, response.status_code, body, key)

    def new_session(self, http, visitor_id: str) -> Answer:
        body = {"site": self.site_key, "url": "https://shop.example/?utm_source=google",
                "visitor_id": visitor_id}
        # Each visitor from its own network: one network may hold only a share of a pool.
        ip = f"10.{random.randrange(256)}.{random.randrange(256)}.{random.randrange(1, 255)}"
        answer = self._post(http, "session", "/v1/sessions", data=json.dumps(body),
                            headers={"Content-Type": "text/plain", "User-Agent": CHROME_UA,
                                     "X-Forwarded-For": ip})
        if answer.status == 200:
            answer.key = answer.body["session_id"]
        return answer

    def heartbeat(self, http, session_id: str, url: str | None = None) -> Answer:
        body = {"site": self.site_key} | ({"url": url} if url else {})
        return self._post(http, "heartbeat", f"/v1/sessions/{session_id}/heartbeat",
                          key=session_id, json=body, headers={"User-Agent": CHROME_UA})

    def call(self, http, to: str) -> Answer:
        sid = "CA" + secrets.token_hex(16)
        params = {"CallSid": sid, "AccountSid": "AC" + "0" * 32, "From": "+14158675309",
                  "To": to, "CallStatus": "ringing", "ApiVersion": "2010-04-01",
                  "Direction": "inbound"}
        with self._lock:
            self.calls_sent.append(sid)
        signature = self.validator.compute_signature(self.voice_url, params)
        return self._post(http, "call", "/webhooks/twilio/voice", key=sid, data=params,
                          headers={"X-Twilio-Signature": signature})


def forwarded_to(answer: Answer) -> str | None:
    """The number a TwiML answer dials, or None."""
    import xml.etree.ElementTree as ET

    if answer.status != 200 or not isinstance(answer.body, str):
        return None
    node = ET.fromstring(answer.body).find("Dial/Number")
    return None if node is None else node.text


def p99_ms(answers: list[Answer]) -> float:
    if not answers:
        return 0.0
    times = sorted(a.seconds for a in answers)
    return 1000 * times[min(len(times) - 1, int(0.99 * len(times)))]


def wait_until(predicate, timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def wait_for(traffic: Traffic, start: float, count: int, *, kinds=("session", "heartbeat"),
             test=lambda a: True, at_least: float = 0.0, timeout: float = 30.0) -> None:
    """Let the load run until ``count`` answers of ``kinds`` passing ``test`` started after
    ``start`` (and at least ``at_least`` seconds went by): a busy machine only slows it."""
    time.sleep(at_least)
    if not wait_until(lambda: sum(1 for a in traffic.since(start) if a.kind in kinds
                                  and test(a)) >= count, timeout):
        seen = Counter(_outcome(a) for a in traffic.since(start) if a.kind in kinds)
        raise AssertionError(f"fewer than {count} {kinds} in {timeout} s; answers: {dict(seen)}")


def _outcome(answer) -> str:
    """``200 fallback:pool_exhausted``, ``200 number``, ``503``...: to say what went wrong."""
    if answer.status != 200 or not isinstance(answer.body, dict):
        return str(answer.status)
    entries = answer.body.get("numbers") or [{}]
    reason = entries[0].get("reason") if entries[0].get("fallback") else None
    return f"200 fallback:{reason}" if reason else "200 number"


def report(name: str, **figures) -> None:
    """Print a fault's figures; with DNI_FAULTS_REPORT set, also append them there (JSON)."""
    line = json.dumps({"test": name, **figures}, default=str)
    print(f"\nFAULT RESULT {line}")
    path = os.environ.get("DNI_FAULTS_REPORT")
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
