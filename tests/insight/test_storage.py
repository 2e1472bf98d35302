"""The local folder recording store."""

from __future__ import annotations

import os
import stat
import time

import pytest

from attribution.insight.storage import FolderStore, RecordingMissing, check_key, retention_cutoff


def test_put_get_path_delete(tmp_path):
    store = FolderStore(tmp_path / "recordings")
    store.put("site-3/CA1.wav", b"RIFF-one")
    assert store.get("site-3/CA1.wav") == b"RIFF-one"
    path = store.path("site-3/CA1.wav")
    assert path and open(path, "rb").read() == b"RIFF-one"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    store.put("site-3/CA1.wav", b"RIFF-two")  # replaced whole
    assert store.get("site-3/CA1.wav") == b"RIFF-two"
    assert store.delete("site-3/CA1.wav") is True
    assert store.delete("site-3/CA1.wav") is False
    assert store.path("site-3/CA1.wav") is None
    with pytest.raises(RecordingMissing):
        store.get("site-3/CA1.wav")
    assert not [p for p in (tmp_path / "recordings" / "site-3").iterdir()]  # no partial files left


@pytest.mark.parametrize("key", ["../etc/passwd", "/abs.wav", "a/../../b", "", "a//b", "a/./b", "x" * 200,
                                 "a/b/c/d/e", "sp ace.wav"])
def test_unsafe_keys_are_refused(tmp_path, key):
    with pytest.raises(ValueError):
        check_key(key)
    with pytest.raises(ValueError):
        FolderStore(tmp_path).put(key, b"x")


def test_retention_lists_what_is_older(tmp_path):
    store = FolderStore(tmp_path)
    store.put("site-1/old.wav", b"o")
    store.put("site-1/new.wav", b"n")
    store.put("site-2/old.wav", b"o")
    now = time.time()
    ten_days = now - 10 * 86_400
    for key in ("site-1/old.wav", "site-2/old.wav"):
        os.utime(store.path(key), (ten_days, ten_days))
    cutoff = retention_cutoff(7, now=now)
    assert store.older_than(cutoff) == ["site-1/old.wav", "site-2/old.wav"]
    assert store.older_than(cutoff, prefix="site-1") == ["site-1/old.wav"]
    assert store.older_than(cutoff, prefix="site-9") == []
