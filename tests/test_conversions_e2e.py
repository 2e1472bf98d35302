"""End to end: a visit with click ids, a qualified call, the worker, and the four platforms'
strict local receivers (tests/conversions/receivers.py): exactly one conversion each, also
after an outage, and also when the worker process is killed in the middle of a delivery."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import threading
import time

from conversions.receivers import GA4Receiver, GoogleReceiver, MetaReceiver, MicrosoftReceiver
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from attribution.conversions.models import ConversionDelivery
from factories import (
    ADMIN_TOKEN,
    CREDENTIALS_KEY,
    OUTBOUND_ALLOW_HOSTS,
    AdminClient,
    make_pool,
    make_site,
    numbers,
    post_session,
    record,
)

LANDING = ("https://shop.example/plumbing?utm_source=google&utm_medium=cpc"
           "&gclid=EAIaIQobChMI-e2e&fbclid=IwAR-e2e-click&msclkid=5a6b7c8d9e")
GA_CLIENT = "1234567890.1699999999"
ACTIONS = {"google": "555000111", "meta": "Lead", "ga4": "qualified_call",
           "microsoft": "Qualified call"}


def receivers():
    return {"google": GoogleReceiver(), "meta": MetaReceiver(), "ga4": GA4Receiver(),
            "microsoft": MicrosoftReceiver(goals={"Qualified call"})}


def configure(admin, found: dict) -> dict:
    """A site with a pool, one destination per platform and a rule sending to all four."""
    site = make_site(admin)
    make_pool(admin, site, numbers=numbers(3), revenue="120.00")
    actions = []
    for kind, receiver in found.items():
        dest = admin.post("/v1/conversions/destinations", json={
            "site": site["key"], "name": kind, "kind": kind, "config": receiver.config()})
        assert dest.status_code == 201, dest.get_json()
        actions.append({"destination": dest.get_json()["id"], "name": ACTIONS[kind]})
    rule = admin.post("/v1/conversions/rules", json={
        "site": site["key"], "min_duration": 30, "actions": actions})
    assert rule.status_code == 201, rule.get_json()
    return site


def visit_and_call(app, admin, site, call_id: str, ip: str) -> dict:
    client = app.test_client()
    session = post_session(client, site["key"], LANDING, ip=ip, ga_client_id=GA_CLIENT)
    assert session.status_code == 200, session.get_json()
    number = session.get_json()["numbers"][0]
    assert not number["fallback"], number
    record(app)  # the visit reaches SQL
    started = dt.datetime.now(dt.UTC).isoformat()
    call = admin.post("/v1/calls", json={"call_id": call_id, "from": "+16505550123",
                                         "to": number["number"], "started_at": started,
                                         "duration": 95})
    assert call.status_code == 201, call.get_json()
    body = call.get_json()
    assert body["qualified"], body["qualification_failures"]
    assert body["attribution"]["gclid"] == "EAIaIQobChMI-e2e", body["explanation"]
    return body


def statuses(app) -> list[str]:
    with app.extensions["dni"].session_factory() as db:
        return [r.status for r in db.scalars(select(ConversionDelivery)
                                             .order_by(ConversionDelivery.id))]


def keys_seen(found: dict) -> dict:
    return {"google": [e["transactionId"] for e in found["google"].events()],
            "meta": [e["event_id"] for e in found["meta"].events()],
            "ga4": [e["params"]["transaction_id"] for e in found["ga4"].events()],
            "microsoft": [e.get("MicrosoftClickId") for e in found["microsoft"].events()]}


def test_each_platform_gets_exactly_one_conversion_even_after_an_outage(make_app):
    app = make_app(DNI_CONVERSIONS_SETTLE_SECONDS="0", DNI_CONVERSIONS_RETRY_SECONDS="1")
    admin = AdminClient(app.test_client(), ADMIN_TOKEN)
    found = receivers()
    for receiver in found.values():
        receiver.start()
    try:
        site = configure(admin, found)
        visit_and_call(app, admin, site, "e2e-1", "192.0.2.10")
        from dni_server.worker import Worker
        worker = Worker(app)
        worker.run_once()
        worker.run_once()
        for kind, receiver in found.items():
            assert receiver.errors == [], (kind, receiver.errors)
            assert len(receiver.events()) == 1, (kind, receiver.requests)
        google = found["google"].events()[0]
        assert google["adIdentifiers"] == {"gclid": "EAIaIQobChMI-e2e"}
        assert google["conversionValue"] == 120
        meta = found["meta"].events()[0]
        assert meta["action_source"] == "phone_call"
        assert meta["user_data"]["fbc"].endswith(".IwAR-e2e-click")
        assert found["ga4"].received[0]["client_id"] == GA_CLIENT
        assert found["microsoft"].events()[0]["MicrosoftClickId"] == "5a6b7c8d9e"
        assert set(statuses(app)) == {"sent"}

        # Every platform down for a while, then back.
        for receiver in found.values():
            receiver.reset()
            receiver.fail_next(3)
        visit_and_call(app, admin, site, "e2e-2", "192.0.2.11")
        now = dt.datetime.now(dt.UTC)
        for step in range(8):
            worker.conversions.run_once(now + dt.timedelta(minutes=step))
        for kind, receiver in found.items():
            assert receiver.errors == [], (kind, receiver.errors)
            assert len(receiver.events()) == 1, (kind, len(receiver.requests))
            assert len(receiver.requests) == 4, kind  # three failures, one success
        assert set(statuses(app)) == {"sent"}
        worker.run_once()
        assert all(len(r.events()) == 1 for r in found.values())
    finally:
        for receiver in found.values():
            receiver.stop()


class SlowMeta(MetaReceiver):
    """Meta, but the first request takes a long while (the worker is killed meanwhile)."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.arrived = threading.Event()
        self.slow = True

    def handle(self, request, body):
        if self.slow:
            self.slow = False
            self.arrived.set()
            time.sleep(3)
        return super().handle(request, body)


def test_worker_killed_mid_delivery_sends_once_per_key(make_app, database_url, redis_url):
    app = make_app()
    admin = AdminClient(app.test_client(), ADMIN_TOKEN)
    meta = SlowMeta().start()
    worker = None
    try:
        site = configure(admin, {"meta": meta})
        visit_and_call(app, admin, site, "e2e-kill", "192.0.2.12")
        env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url,
               "DNI_ADMIN_TOKEN": ADMIN_TOKEN, "DNI_SECRET_KEY": "test-secret-key-0123456789",
               "DNI_WORKER": "false", "DNI_CONVERSIONS_SETTLE_SECONDS": "0",
               "DNI_CONVERSIONS_LEASE_SECONDS": "5", "DNI_CREDENTIALS_KEYS": CREDENTIALS_KEY,
               "DNI_OUTBOUND_ALLOW_HOSTS": OUTBOUND_ALLOW_HOSTS}
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        command = [sys.executable, "-m", "flask", "--app", "wsgi", "dni", "worker"]

        def start():
            return subprocess.Popen(command, cwd=root, env=env, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, start_new_session=True)

        worker = start()
        assert meta.arrived.wait(60), "the worker never called the platform"
        os.killpg(worker.pid, signal.SIGKILL)  # mid-request: sent, never recorded
        worker.wait(10)
        assert statuses(app) == ["sending"]
        worker = start()
        deadline = time.monotonic() + 90
        while statuses(app) != ["sent"] and time.monotonic() < deadline:
            time.sleep(0.5)
        assert statuses(app) == ["sent"]
        ids = [e["event_id"] for e in meta.events()]
        assert meta.errors == []
        assert len(set(ids)) == 1  # one conversion per key: Meta dedupes on event_id
        assert 1 <= len(ids) <= 2  # the killed request may or may not have landed
        engine = create_engine(database_url.replace("postgresql://", "postgresql+psycopg://", 1))
        with Session(engine) as db:
            row = db.scalars(select(ConversionDelivery)).one()
            assert row.attempts == 2 and row.key == ids[0]
        engine.dispose()
    finally:
        if worker is not None and worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(10)
        meta.stop()
