"""A worker process killed with SIGKILL in the middle of a POST loses nothing: its claimed
row stays ``sending`` until the lease runs out, then another worker sends it again (same
event id), and the call's later events follow in order."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys

from pools.models import utcnow
from webhooks_out.conftest import deliverer, drain, pool_number, post_call, rows

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WORKER = """
import sys
from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker
from attribution.webhooks.delivery import WebhookDeliverer, WebhookPolicy
engine = create_engine(sys.argv[1])
WebhookDeliverer(sessionmaker(engine), WebhookPolicy(lease_seconds=5, timeout=2),
                 allow_hosts=("127.0.0.1",), credentials_keys=(sys.argv[2],)).run_once()
"""


def test_a_killed_worker_loses_nothing(app, admin, receiver, setup, database_url):
    site, pool, subscription = setup
    post_call(admin, "c-1", pool_number(admin, pool))
    queued = rows(app)
    assert [r.event_type for r in queued][:2] == ["call.started", "call.completed"]
    receiver.hold.clear()  # the receiver takes the request and does not answer yet
    key = app.extensions["dni"].settings.credentials_keys[0]
    process = subprocess.Popen([sys.executable, "-c", WORKER, database_url, key], cwd=ROOT)
    try:
        assert receiver.arrived.wait(60), "the worker never sent"
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(30)
    receiver.hold.set()
    first = rows(app)[0]
    assert first.status == "sending" and first.attempts == 1
    after_lease = utcnow() + dt.timedelta(seconds=6)
    drain(deliverer(app), after_lease, passes=5, step=1)
    assert {r.status for r in rows(app)} == {"sent"}
    ids = [e["id"] for e in receiver.accepted]
    assert set(ids) == {r.event_id for r in queued}  # nothing lost
    assert ids.count(first.event_id) <= 2  # repeated at most once: at least once
    first_seen = list(dict.fromkeys(ids))
    assert first_seen == [r.event_id for r in queued]  # and in order
