"""A web worker is ready before its first request: gunicorn.conf.py's post_worker_init."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# In a fresh interpreter: nothing has parsed a user agent yet.
PROBE = """
import gc, runpy, ua_parser
assert "parser" not in vars(ua_parser), "the parser was built before the hook"
conf = runpy.run_path("gunicorn.conf.py")
conf["post_worker_init"](None)
assert "parser" in vars(ua_parser), "post_worker_init left the user-agent parser unbuilt"
assert gc.get_freeze_count() > 0, "post_worker_init froze nothing"
print("ready")
"""


def test_the_worker_hook_builds_the_user_agent_parser_before_serving(tmp_path):
    # The config makes (and owns) a metrics folder unless given one: give it one to drop.
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("ready")
