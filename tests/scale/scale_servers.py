"""Real servers for the scale-out tests: a three-primary Redis Cluster, a private Redis,
and gunicorn instances of the app, all on free 127.0.0.1 ports and killed afterwards.

The machine's own Redis (6379) is never used: every server here is a ``redis-server``
process of this test session, in a temporary folder, with persistence off. The fixtures
that start them are in this folder's conftest.py.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

import pytest
import redis as redis_lib
import requests
from ports import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STARTUP_TIMEOUT_S = 60  # a loaded 2-core machine can be slow to fork and import


def die_with_parent() -> None:
    """Run in the child before exec: killed when the test process dies, even by SIGKILL."""
    import ctypes

    ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def redis_binaries() -> tuple[str, str]:
    """``redis-server`` and ``redis-cli``, installing Debian's package when they are missing."""
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if (not server or not cli) and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=False, env=env, timeout=300)
        subprocess.run(["apt-get", "install", "-y", "-qq", "redis-server"], check=True,
                       env=env, timeout=600, stdout=subprocess.DEVNULL)
        server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if not server or not cli:
        pytest.fail("redis-server and redis-cli are needed: apt-get install redis-server")
    return server, cli


class GaveUp(RuntimeError):
    """Raised by a readiness check when waiting longer cannot help (the process died)."""


def wait_until(check, timeout_s: float, what: str, interval: float = 0.1):
    """Poll ``check`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout_s
    last_error = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except GaveUp:
            raise
        except Exception as exc:  # not up yet (refused, loading): keep polling
            last_error = exc
        time.sleep(interval)
    raise TimeoutError(f"{what} not ready after {timeout_s}s (last error: {last_error})")


# -- redis-server processes --------------------------------------------------------------


@dataclass
class RedisNode:
    port: int
    process: subprocess.Popen
    log_path: str

    def client(self, **options) -> redis_lib.Redis:
        return redis_lib.Redis(host="127.0.0.1", port=self.port, decode_responses=True,
                               socket_timeout=10, **options)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)


def start_redis(folder: str, *extra: str) -> RedisNode:
    """One ``redis-server`` with persistence off, answering PING; retried on a port clash."""
    server, _ = redis_binaries()
    for _attempt in range(5):
        port = free_port()
        os.makedirs(folder, exist_ok=True)
        log_path = os.path.join(folder, f"redis-{port}.log")
        process = subprocess.Popen(
            [server, "--port", str(port), "--bind", "127.0.0.1", "--dir", folder,
             "--save", "", "--appendonly", "no", "--daemonize", "no",
             "--protected-mode", "no", "--logfile", log_path, *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=die_with_parent)
        node = RedisNode(port, process, log_path)

        def up(n=node) -> bool:
            if n.process.poll() is not None:
                raise GaveUp(f"redis-server on {n.port} exited")
            return n.client().ping()

        try:
            wait_until(up, STARTUP_TIMEOUT_S, f"redis-server on {port}")
            return node
        except GaveUp:
            node.stop()  # most likely another process took the port first: pick again
    raise RuntimeError(f"could not start redis-server; see {log_path}")


@dataclass
class RedisCluster:
    """A running three-primary cluster; ``url`` is what REDIS_URL would say."""

    nodes: list[RedisNode]
    folder: str
    clients: list = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port}"

    def client(self):
        from redis.cluster import RedisCluster as ClusterClient

        client = ClusterClient(host="127.0.0.1", port=self.nodes[0].port, decode_responses=True,
                               socket_timeout=10)
        self.clients.append(client)
        return client

    def node_of_slot(self, slot: int) -> int:
        """The port of the primary serving ``slot``, read from CLUSTER SLOTS."""
        for start, end, primary, *_ in self.nodes[0].client().execute_command("CLUSTER SLOTS"):
            if int(start) <= slot <= int(end):
                return int(primary[1])
        raise LookupError(slot)

    def keyslot(self, key: str) -> int:
        return int(self.nodes[0].client().execute_command("CLUSTER KEYSLOT", key))

    def node_of_key(self, key: str) -> int:
        return self.node_of_slot(self.keyslot(key))

    def flush(self) -> None:
        for node in self.nodes:
            node.client().flushall()

    def stop(self) -> None:
        for client in self.clients:
            client.close()
        for node in self.nodes:
            node.stop()


def start_cluster(folder: str, primaries: int = 3, node_timeout_ms: int = 5000) -> RedisCluster:
    _, cli = redis_binaries()
    nodes = []
    try:
        for i in range(primaries):
            node_folder = os.path.join(folder, f"node{i}")
            # The cluster bus gets a free port of its own: port + 10000 may be taken or > 65535.
            nodes.append(start_redis(node_folder, "--cluster-enabled", "yes",
                                     "--cluster-config-file", "nodes.conf",
                                     "--cluster-port", str(free_port()),
                                     "--cluster-node-timeout", str(node_timeout_ms)))
        addresses = [f"127.0.0.1:{n.port}" for n in nodes]
        subprocess.run([cli, "--cluster", "create", *addresses, "--cluster-replicas", "0",
                        "--cluster-yes"], check=True, capture_output=True, timeout=120)

        def settled() -> bool:
            # Every node must agree: state ok (all 16384 slots served) and three primaries.
            for node in nodes:
                client = node.client()
                info = client.execute_command("CLUSTER INFO")  # parsed from cluster_state:ok lines
                if info.get("cluster_state") != "ok" or int(info.get("cluster_size", 0)) != primaries:
                    return False
            return True

        wait_until(settled, STARTUP_TIMEOUT_S, "cluster_state:ok on every node", interval=0.2)
        return RedisCluster(nodes, folder)
    except BaseException:
        for node in nodes:
            node.stop()
        raise


# -- gunicorn instances of the app ------------------------------------------------------


@dataclass
class AppInstance:
    url: str
    process: subprocess.Popen
    log_path: str

    def log(self) -> str:
        with open(self.log_path, encoding="utf-8", errors="replace") as fh:
            return fh.read()[-4000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # gunicorn's quick shutdown
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def start_gunicorn(env: dict, folder: str, workers: int = 2) -> AppInstance:
    """``gunicorn wsgi:app`` with the repository's config, as production starts it."""
    port = free_port()
    os.makedirs(folder, exist_ok=True)
    log_path = os.path.join(folder, f"gunicorn-{port}.log")
    full_env = {**os.environ, **env, "DNI_BIND": f"127.0.0.1:{port}",
                "WEB_CONCURRENCY": str(workers), "DNI_INSTANCE_PATH": folder}
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py", "wsgi:app"],
            cwd=ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent)
    return AppInstance(f"http://127.0.0.1:{port}", process, log_path)


def wait_ready(instance: AppInstance) -> None:
    """Poll until the instance answers (a worker still booting just leaves requests to the
    other: sync workers only accept once they are ready)."""

    def answers() -> bool:
        if instance.process.poll() is not None:
            raise GaveUp(f"gunicorn exited:\n{instance.log()}")
        return requests.get(instance.url + "/openapi.json", timeout=5).status_code == 200

    wait_until(answers, STARTUP_TIMEOUT_S, f"gunicorn at {instance.url}", interval=0.25)


def root_conftest(config):
    """The repository's root conftest module (its helpers: ``app_config``, ``empty_tables``).

    Both files are named conftest.py, so ``import conftest`` is ambiguous; pytest keeps each
    one registered under its path.
    """
    return config.pluginmanager.get_plugin(os.path.join(str(config.rootpath), "conftest.py"))
