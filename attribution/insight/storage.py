"""Where recordings are kept: a small interface, and a local folder behind it.

Keys are short relative names (``site-3/CA123.wav``). The folder store is the default
(under the instance path); an object store fits the same five methods, with ``path``
answering None since it has no local file to hand the web server.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from pathlib import Path
from typing import Protocol

KEY = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,99}(/[A-Za-z0-9_-][A-Za-z0-9_.-]{0,99}){0,3}$")


class RecordingMissing(KeyError):
    """No recording under that key."""


def check_key(key: str) -> str:
    """A key is 1-4 path parts of safe characters: no '..', no absolute paths."""
    if not KEY.match(key) or any(part in (".", "..") for part in key.split("/")):
        raise ValueError(f"bad recording key {key!r}")
    return key


class RecordingStore(Protocol):
    def put(self, key: str, data: bytes) -> None: ...

    def get(self, key: str) -> bytes: ...

    def delete(self, key: str) -> bool: ...

    def path(self, key: str) -> str | None: ...

    def older_than(self, epoch_seconds: float, prefix: str = "") -> list[str]: ...


class FolderStore:
    """Recordings as files under ``root``, written whole or not at all."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def _file(self, key: str) -> Path:
        return self.root / check_key(key)

    def put(self, key: str, data: bytes) -> None:
        target = self._file(key)
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # A temporary file renamed into place: a reader never sees half a recording.
        handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".part-")
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(data)
            os.chmod(temporary, 0o600)  # call audio is personal data
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def get(self, key: str) -> bytes:
        try:
            return self._file(key).read_bytes()
        except FileNotFoundError:
            raise RecordingMissing(key) from None

    def delete(self, key: str) -> bool:
        try:
            self._file(key).unlink()
        except FileNotFoundError:
            return False
        return True

    def path(self, key: str) -> str | None:
        target = self._file(key)
        return str(target) if target.is_file() else None

    def older_than(self, epoch_seconds: float, prefix: str = "") -> list[str]:
        """Keys stored before the moment, for retention (delete after N days)."""
        base = self.root / check_key(prefix) if prefix else self.root
        if not base.is_dir():
            return []
        found = []
        for file in base.rglob("*"):
            if file.is_file() and not file.name.startswith(".part-") and file.stat().st_mtime < epoch_seconds:
                found.append(file.relative_to(self.root).as_posix())
        return sorted(found)


def retention_cutoff(days: int, now: float | None = None) -> float:
    """The moment before which a site keeping recordings ``days`` days deletes them."""
    return (time.time() if now is None else now) - days * 86_400
