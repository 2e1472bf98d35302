"""The embedded defaults: no services to install, a demo site on an empty database."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from ports import free_port, wait_until_up

from dni_server import create_app
from dni_server.demo import DEMO_TARGET
from factories import post_session, record

ROOT = Path(__file__).resolve().parent.parent


def test_embedded_app_seeds_a_demo_site_and_leases(tmp_path):
    app = create_app({"DNI_WORKER": "false"}, instance_path=str(tmp_path))
    try:
        token = app.extensions["dni"].settings.admin_token
        assert (tmp_path / "admin_token").read_text().strip() == token
        client = app.test_client()
        sites = client.get("/v1/sites", headers={"Authorization": f"Bearer {token}"}).json
        [demo] = sites["sites"]
        body = post_session(client, demo["key"]).get_json()
        entry = body["numbers"][0]
        assert entry["target"] == DEMO_TARGET and entry["fallback"] is False
        assert record(app) == 1
        # A second app on the same instance reuses the data and the token.
        again = create_app({"DNI_WORKER": "false"}, instance_path=str(tmp_path))
        assert again.extensions["dni"].settings.admin_token == token
    finally:
        from dni_server.extensions import db

        with app.app_context():
            db.engine.dispose()


@pytest.mark.slow
def test_gunicorn_on_embedded_defaults(tmp_path):
    """What the README's run command starts: gunicorn, SQLite, embedded Redis, the worker."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(DNI_BIND=f"127.0.0.1:{port}", DNI_INSTANCE_PATH=str(tmp_path))
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py", "wsgi:app"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_up(base, proc)
        token = (tmp_path / "admin_token").read_text().strip()
        headers = {"Authorization": f"Bearer {token}"}
        demo = requests.get(base + "/v1/sites", headers=headers, timeout=5).json()["sites"][0]
        body = requests.post(
            base + "/v1/sessions", timeout=5,
            data=json.dumps({"site": demo["key"], "url": "http://localhost/?utm_source=print"}),
            headers={"Content-Type": "text/plain", "User-Agent": "Mozilla/5.0 Chrome/120.0"},
        ).json()
        assert body["numbers"][0]["fallback"] is False
        for _ in range(100):  # the in-process worker records the visit within a moment
            shown = requests.get(f"{base}/v1/sessions/{body['session_id']}", headers=headers,
                                 timeout=5)
            if shown.status_code == 200:
                break
            time.sleep(0.1)
        assert shown.json()["source"] == "print"
    finally:
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=30)[0]
    assert re.search(r"admin token: \S+", output), output
