"""Free ports for the servers the tests start, from a range of each test process's own,
and a wait until such a server answers.

A test that kills a Redis and starts it again on the same port must find that port still
free. Ports the OS hands out (its ephemeral range) can go to anyone in between, such as a
server another test process starts at that moment, and the restarted app would then talk
to a stranger's Redis. So each pytest-xdist worker picks from its own block below the
ephemeral range (Linux: 32768 and up), and checks the port (and the Redis Cluster bus port,
10000 above) is free right now.
"""

from __future__ import annotations

import os
import random
import socket
import subprocess
import time

import requests

BLOCK = 1500
FIRST = 20000
RESERVED = {5432, 6379}
_pick = random.Random()  # not the global one, which tests may seed


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def worker_number() -> int:
    name = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return int(name[2:]) if name[2:].isdigit() else 0


def free_port() -> int:
    """A port nothing listens on now, in this test process's own block."""
    low = FIRST + BLOCK * (worker_number() % 8)
    for _ in range(500):
        port = _pick.randrange(low, low + BLOCK)
        if port not in RESERVED and _bindable(port) and _bindable(port + 10000):
            return port
    raise RuntimeError(f"no free port between {low} and {low + BLOCK}")


def wait_until_up(base: str, server: subprocess.Popen, seconds: float = 90) -> None:
    """Wait until the server at `base` answers its health check; fail if it exits first.

    A listening socket is not enough: gunicorn binds before its workers have booted, so a
    request can connect and then wait, and a busy machine stretches that wait.
    """
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert server.poll() is None, "the server exited"
        try:
            if requests.get(f"{base}/healthz", timeout=5).status_code == 200:
                return
        except (requests.ConnectionError, requests.Timeout):
            pass  # not listening yet, or no worker has finished booting
        time.sleep(0.2)
    raise AssertionError(f"{base} did not come up within {seconds:.0f} s")
