"""The conversions outbox: rules, enqueue with qualification, delivery, retries, retractions.

Delivery runs against a real HTTP receiver on 127.0.0.1 through the real ``http.deliver``.
Most tests use a small JSON destination defined here (``Probe``) whose receiver can be told to
fail, slow down or reject single events; the credentials test uses the real Meta destination.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import threading
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import select

from attribution.conversions import rules as conversion_rules
from attribution.conversions.base import Outcome, PreparedRequest
from attribution.conversions.delivery import Deliverer, Policy, RateLimiter, backoff
from attribution.conversions.destination import Destination, Skip, every, json_body
from attribution.conversions.models import (
    ConversionAttempt,
    ConversionDelivery,
    ConversionDestination,
    ConversionRule,
)
from attribution.conversions.outbox import conversion_for, on_qualification
from attribution.conversions.registry import build_destination
from attribution.models import Call
from factories import make_pool, make_site, numbers

# The workers' clock: later than any row these tests make, however long after collection a
# test runs (a whole suite takes more than minutes), so every new row is due at T0.
T0 = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=6)).replace(microsecond=0)


# -- a receiver and a destination for it -------------------------------------------------------


class Receiver:
    """An HTTP server that records events by key; it can fail, stall or reject some keys."""

    def __init__(self):
        self.events: list[dict] = []
        self.requests = 0
        self.fail_next = 0  # answer 503 (with Retry-After) this many times
        self.retry_after = None
        self.reject: set[str] = set()  # keys answered as permanently invalid
        self.delay = 0.0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if receiver.delay:
                    threading.Event().wait(receiver.delay)
                with receiver.lock:
                    receiver.requests += 1
                    if receiver.fail_next > 0:
                        receiver.fail_next -= 1
                        return self.answer(503, {"error": "down"}, receiver.retry_after)
                    bad = [e["key"] for e in body["events"] if e["key"] in receiver.reject]
                    receiver.events.extend(e for e in body["events"] if e["key"] not in bad)
                self.answer(200, {"accepted": len(body["events"]) - len(bad), "rejected": bad})

            def answer(self, status, payload, retry_after=None):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if retry_after is not None:
                    self.send_header("Retry-After", str(retry_after))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def keys(self, kind: str = "conversion") -> list[str]:
        return [e["key"] for e in self.events if e["kind"] == kind]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class Probe(Destination):
    """A minimal JSON platform: batches, per-event rejections, and retractions."""

    kind = "probe"
    max_batch = 10
    per_minute = 0

    def __init__(self, config):
        super().__init__(config)
        self.url = self.config.url("base_url", "http://127.0.0.1:9")
        self.max_batch = self.config.integer("max_batch", 10)
        self.per_minute = self.config.integer("per_minute", 0, minimum=0)
        self.supports_retraction = self.config.boolean("retractions", True)

    def check(self, conv, now):
        return None if conv.consent else Skip("probe: no consent")

    def prepare(self, convs, now):
        body = json.dumps({"events": [
            {"key": c.key, "kind": c.kind, "name": c.name, "gclid": c.gclid,
             "value": str(c.value) if c.value is not None else None} for c in convs]})
        return PreparedRequest("POST", self.url + "/events", {"Content-Type": "application/json"},
                               body.encode(), self.url + "/events")

    def read(self, status, headers, body, convs):
        if status == 503:
            from attribution.conversions.destination import retry_after
            return every(convs, "retry", "probe: down", retry_after=retry_after(headers))
        rejected = set((json_body(body) or {}).get("rejected") or [])
        return [Outcome(c.key, "failed" if c.key in rejected else "sent",
                        "probe: invalid" if c.key in rejected else "") for c in convs]


def build(kind, config):
    return Probe(config) if kind == "probe" else build_destination(kind, config)


@pytest.fixture
def receiver():
    found = Receiver()
    yield found
    found.close()


_RATE_PREFIXES: dict[int, str] = {}


def deliverer(app, **policy) -> Deliverer:
    services = app.extensions["dni"]
    policy = {"settle_seconds": 0, "base_delay": 10, "max_attempts": 5} | policy
    # Workers of one app share its rate limits; tests on a shared Redis must not (their
    # destinations are numbered from 1 and deliver at the same fixed minutes).
    prefix = _RATE_PREFIXES.setdefault(id(app), f"dnitest-{secrets.token_hex(4)}")
    return Deliverer(services.session_factory,
                     RateLimiter(services.redis_admin, prefix),
                     Policy(**policy), build=build,
                     allow_hosts=services.settings.outbound_allow_hosts,
                     credentials_keys=services.settings.credentials_keys)


# -- setting up a site that converts -------------------------------------------------------------


def setup_site(app, admin, receiver, *, rule=None, **config):
    """A site with a pool, a probe destination at ``receiver`` and a rule sending to it."""
    site = make_site(admin)
    pool = make_pool(admin, site, numbers=numbers(5), revenue="40.00")
    services = app.extensions["dni"]
    with services.session_factory() as db:
        dest = ConversionDestination(site_id=site["id"], name="probe", kind="probe",
                                     config={"base_url": receiver.url, **config})
        db.add(dest)
        db.commit()
        dest_id = dest.id
    body = {"site": site["key"], "actions": [{"destination": dest_id, "name": "Qualified call"}]}
    response = admin.post("/v1/conversions/rules", json=body | (rule or {}))
    assert response.status_code == 201, response.get_json()
    return site, pool, dest_id


def post_call(admin, pool, call_id: str, *, to: str, duration=90, status="completed",
              started_at="2026-03-02T14:00:00Z"):
    response = admin.post("/v1/calls", json={
        "call_id": call_id, "from": "+14158675309", "to": to,
        "started_at": started_at, "duration": duration, "status": status})
    assert response.status_code in (200, 201), response.get_json()
    return response.get_json()


def deliveries(app, **where) -> list[ConversionDelivery]:
    with app.extensions["dni"].session_factory() as db:
        query = select(ConversionDelivery).order_by(ConversionDelivery.id)
        for name, value in where.items():
            query = query.where(getattr(ConversionDelivery, name) == value)
        return list(db.scalars(query))


def pool_number(admin, pool) -> str:
    return admin.get(f"/v1/pools/{pool['id']}/numbers").get_json()["numbers"][0]["number"]


# -- rules (pure) --------------------------------------------------------------------------------


class FakeCall:
    def __init__(self, **kw):
        self.status, self.disposition, self.qualified = "completed", None, True
        self.duration, self.disposition_value = 120, None
        self.__dict__.update(kw)


def test_rules_decide_which_calls_count_and_for_how_much():
    rule = ConversionRule(site_id=1, pool_id=None, enabled=True, qualified_only=True,
                          min_duration=60, dispositions_included=[],
                          dispositions_excluded=["voicemail"], value_source="fixed",
                          value=Decimal("25.00"), unknown_consent="granted")
    assert conversion_rules.counts(rule, FakeCall())
    assert not conversion_rules.counts(rule, FakeCall(status="in-progress"))  # not over yet
    assert not conversion_rules.counts(rule, FakeCall(qualified=False))
    assert not conversion_rules.counts(rule, FakeCall(duration=59))
    assert not conversion_rules.counts(rule, FakeCall(disposition="voicemail"))
    rule.dispositions_included = ["sale"]
    assert not conversion_rules.counts(rule, FakeCall())
    assert conversion_rules.counts(rule, FakeCall(disposition="sale"))
    assert conversion_rules.value_of(rule, FakeCall(), Decimal("40")) == Decimal("25.00")
    rule.value_source = "pool_revenue"
    assert conversion_rules.value_of(rule, FakeCall(), Decimal("40")) == Decimal("40")
    rule.value_source = "disposition"
    assert conversion_rules.value_of(rule, FakeCall(disposition_value=Decimal("300")),
                                     None) == Decimal("300")
    assert conversion_rules.value_of(rule, FakeCall(), None) == Decimal("25.00")
    assert conversion_rules.consent_of(rule, None) is True
    assert conversion_rules.consent_of(rule, False) is False
    rule.unknown_consent = "denied"
    assert conversion_rules.consent_of(rule, None) is False
    pool_rule = ConversionRule(site_id=1, pool_id=7, enabled=True)
    disabled = ConversionRule(site_id=1, pool_id=8, enabled=False)
    assert conversion_rules.pick([rule, pool_rule, disabled], 7) is pool_rule
    assert conversion_rules.pick([rule, pool_rule, disabled], 8) is rule


def test_backoff_grows_with_jitter_and_honours_retry_after():
    policy = Policy(base_delay=10, max_delay=100)
    assert backoff(1, policy, rng=lambda: 0.0) == 5 and backoff(1, policy, rng=lambda: 1.0) == 10
    assert backoff(3, policy, rng=lambda: 1.0) == 40
    assert backoff(10, policy, rng=lambda: 1.0) == 100  # capped
    assert backoff(1, policy, retry_after=300, rng=lambda: 1.0) == 300


# -- enqueue -------------------------------------------------------------------------------------


def test_a_qualified_call_is_queued_once_per_destination(app, admin, receiver):
    site, pool, dest_id = setup_site(app, admin, receiver)
    number = pool_number(admin, pool)
    post_call(admin, pool, "c-1", to=number)
    post_call(admin, pool, "c-1", to=number)  # the same call again
    rows = deliveries(app)
    assert len(rows) == 1
    row = rows[0]
    assert (row.status, row.destination_id, row.name, row.value) == (
        "pending", dest_id, "Qualified call", Decimal("40.00"))  # the pool's revenue
    assert row.key == f"dni-call-{row.call_id}-d{dest_id}"
    post_call(admin, pool, "c-2", to=number, status="in-progress")  # not over: not yet
    assert len(deliveries(app)) == 1


def test_enqueue_commits_or_rolls_back_with_the_qualification(app, admin, receiver):
    site, pool, dest_id = setup_site(app, admin, receiver)
    number = pool_number(admin, pool)
    call = post_call(admin, pool, "c-1", to=number, status="in-progress")
    assert deliveries(app) == []
    factory = app.extensions["dni"].session_factory
    with factory() as db:
        row = db.get(Call, call["id"])
        row.status, row.status_rank = "completed", 300_000
        from attribution.calls import requalify
        requalify(db, row)
        db.flush()
        queued = db.scalars(select(ConversionDelivery)).all()
        assert len(queued) == 1  # visible inside the transaction...
        db.rollback()
    assert deliveries(app) == []  # ...and gone with it
    with factory() as db:
        row = db.get(Call, call["id"])
        row.status = "completed"
        on_qualification(db, row)
        db.commit()
    assert len(deliveries(app)) == 1


# -- delivery ------------------------------------------------------------------------------------


def test_delivering_twice_sends_once(app, admin, receiver):
    site, pool, dest_id = setup_site(app, admin, receiver)
    number = pool_number(admin, pool)
    for i in range(3):
        post_call(admin, pool, f"c-{i}", to=number)
    worker = deliverer(app)
    assert worker.run_once(T0) == 3
    assert worker.run_once(T0) == 0
    assert deliverer(app).run_once(T0 + dt.timedelta(hours=1)) == 0
    assert sorted(receiver.keys()) == sorted(r.key for r in deliveries(app))
    assert receiver.requests == 1  # one batch
    assert {r.status for r in deliveries(app)} == {"sent"}


def test_new_conversions_wait_for_the_settle_time(app, admin, receiver):
    site, pool, dest_id = setup_site(app, admin, receiver)
    post_call(admin, pool, "c-1", to=pool_number(admin, pool))
    created = deliveries(app)[0].created_at
    worker = deliverer(app, settle_seconds=60)
    assert worker.run_once(created + dt.timedelta(seconds=30)) == 0
    assert worker.run_once(created + dt.timedelta(seconds=61)) == 1
    assert len(receiver.keys()) == 1


def test_retries_back_off_until_the_platform_answers(app, admin, receiver):
    site, pool, dest_id = setup_site(app, admin, receiver)
    post_call(admin, pool, "c-1", to=pool_number(admin, pool))
    receiver.fail_next, receiver.retry_after = 3, 120
    worker = deliverer(app, base_delay=10)
    now = T0
    waits = []
    for _ in range(3):
        assert worker.run_once(now) == 1
        row = deliveries(app)[0]
        assert row.status == "retry" and "down" in row.last_error
        waits.append((row.next_attempt_at - now).total_seconds())
        assert worker.run_once(row.next_attempt_at - dt.timedelta(seconds=1)) == 0  # not yet
        now = row.next_attempt_at
    assert all(w >= 120 for w in waits)  # Retry-After beats the shorter back-off
    assert worker.run_once(now) == 1
    row = deliveries(app)[0]
    assert (row.status, row.attempts, receiver.keys()) == ("sent", 4, [row.key])
    with app.extensions["dni"].session_factory() as db:
        log = db.scalars(select(ConversionAttempt).order_by(ConversionAttempt.id)).all()
    assert [a.outcome for a in log] == ["retry", "retry", "retry", "sent"]
    assert [a.http_status for a in log] == [503, 503, 503, 200]


def test_exponential_back_off_without_retry_after_then_give_up(app, admin, receiver):
    site, pool, dest_id = setup_site(app, admin, receiver)
    post_call(admin, pool, "c-1", to=pool_number(admin, pool))
    receiver.fail_next = 10
    worker = deliverer(app, base_delay=10, max_attempts=3)
    now, waits = T0, []
    for _ in range(3):
        worker.run_once(now)
        row = deliveries(app)[0]
        if row.status == "retry":
            waits.append((row.next_attempt_at - now).total_seconds())
            now = row.next_attempt_at
    assert 5 <= waits[0] <= 10 and 10 <= waits[1] <= 20  # base * 2**(n-1), jittered
    assert row.status == "failed" and "gave up after 3 attempts" in row.last_error
    assert worker.run_once(now + dt.timedelta(days=1)) == 0  # failed stays failed
    receiver.fail_next = 0
    response = admin.post(f"/v1/conversions/deliveries/{row.id}/retry")
    assert response.status_code == 200 and response.get_json()["status"] == "pending"
    assert worker.run_once(now + dt.timedelta(days=1)) == 1
    assert deliveries(app)[0].status == "sent" and len(receiver.keys()) == 1


def test_partial_failure_keeps_the_good_events(app, admin, receiver):
    site, pool, dest_id = setup_site(app, admin, receiver)
    number = pool_number(admin, pool)
    for i in range(3):
        post_call(admin, pool, f"c-{i}", to=number)
    bad = deliveries(app)[1].key
    receiver.reject = {bad}
    deliverer(app).run_once(T0)
    statuses = {r.key: r.status for r in deliveries(app)}
    assert statuses.pop(bad) == "failed"
    assert set(statuses.values()) == {"sent"}
    assert sorted(receiver.keys()) == sorted(statuses)


def test_rate_limit_per_destination_per_minute(app, admin, receiver):
    site, pool, dest_id = setup_site(app, admin, receiver, per_minute=2, max_batch=1)
    number = pool_number(admin, pool)
    for i in range(5):
        post_call(admin, pool, f"c-{i}", to=number)
    minute = T0.replace(second=5)
    first, second = deliverer(app), deliverer(app)  # two workers share the limit
    assert first.run_once(minute) == 2
    assert second.run_once(minute + dt.timedelta(seconds=30)) == 0
    assert second.run_once(minute + dt.timedelta(minutes=1)) == 2
    assert first.run_once(minute + dt.timedelta(minutes=2)) == 1
    assert receiver.requests == 5 and len(set(receiver.keys())) == 5


def test_concurrent_workers_never_send_twice(app, admin, receiver):
    site, pool, dest_id = setup_site(app, admin, receiver, max_batch=3)
    number = pool_number(admin, pool)
    for i in range(24):
        post_call(admin, pool, f"c-{i}", to=number, started_at=f"2026-03-02T14:{i:02d}:00Z")
    receiver.delay = 0.02
    errors = []

    def work():
        worker = deliverer(app)
        try:
            for _ in range(20):
                worker.run_once(T0)
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    keys = receiver.keys()
    assert len(keys) == 24 and len(set(keys)) == 24
    assert {r.status for r in deliveries(app)} == {"sent"}


def test_a_worker_that_died_mid_send_is_taken_over_with_the_same_key(app, admin, receiver):
    site, pool, dest_id = setup_site(app, admin, receiver)
    post_call(admin, pool, "c-1", to=pool_number(admin, pool))
    dead = deliverer(app, lease_seconds=300)
    token, ids = dead.claim(dest_id, 10, T0)  # claimed, then the process died
    assert len(ids) == 1 and deliveries(app)[0].status == "sending"
    other = deliverer(app)
    assert other.run_once(T0 + dt.timedelta(seconds=299)) == 0  # the lease still holds
    assert other.run_once(T0 + dt.timedelta(seconds=301)) == 1
    row = deliveries(app)[0]
    assert row.status == "sent" and row.attempts == 2 and receiver.keys() == [row.key]


# -- retractions and consent ---------------------------------------------------------------------


def test_a_call_disqualified_after_sending_is_retracted(app, admin, receiver):
    site, pool, dest_id = setup_site(app, admin, receiver)
    call = post_call(admin, pool, "c-1", to=pool_number(admin, pool))
    worker = deliverer(app)
    worker.run_once(T0)
    response = admin.post(f"/v1/calls/{call['id']}/disposition", json={"disposition": "spam"})
    assert response.status_code == 200
    row = deliveries(app)[0]
    assert (row.status, row.operation) == ("retraction_pending", "retraction")
    worker.run_once(T0 + dt.timedelta(minutes=1))
    row = deliveries(app)[0]
    assert row.status == "retracted" and row.retracted_at is not None
    assert receiver.keys("retraction") == [row.key] and receiver.keys() == [row.key]
    worker.run_once(T0 + dt.timedelta(hours=1))
    assert len(receiver.events) == 2  # nothing more


def test_retraction_unsupported_is_marked(app, admin, receiver):
    site, pool, dest_id = setup_site(app, admin, receiver, retractions=False)
    call = post_call(admin, pool, "c-1", to=pool_number(admin, pool))
    worker = deliverer(app)
    worker.run_once(T0)
    admin.post(f"/v1/calls/{call['id']}/disposition", json={"disposition": "wrong_number"})
    worker.run_once(T0 + dt.timedelta(minutes=1))
    row = deliveries(app)[0]
    assert row.status == "retraction_unsupported"
    assert receiver.keys("retraction") == []


def test_disqualified_before_sending_is_skipped_and_requalified_is_queued(app, admin, receiver):
    site, pool, dest_id = setup_site(app, admin, receiver)
    call = post_call(admin, pool, "c-1", to=pool_number(admin, pool))
    admin.post(f"/v1/calls/{call['id']}/disposition", json={"disposition": "spam"})
    assert deliveries(app)[0].status == "skipped"
    deliverer(app).run_once(T0)
    assert receiver.events == []
    admin.post(f"/v1/calls/{call['id']}/disposition", json={"disposition": "sale",
                                                            "value": "300.00"})
    row = deliveries(app)[0]
    assert row.status == "pending" and row.value == Decimal("40.00")  # rule: pool revenue
    deliverer(app).run_once(T0)
    assert receiver.keys() == [row.key]


def test_consent_denied_sends_nothing_identifying(app, admin, receiver):
    site, pool, dest_id = setup_site(app, admin, receiver)
    call = post_call(admin, pool, "c-1", to=pool_number(admin, pool))
    factory = app.extensions["dni"].session_factory
    with factory() as db:
        row = db.get(Call, call["id"])
        row.gclid, row.fbclid, row.ga_client_id = "EAIaIQ-test", "IwAR-test", "123.456"
        row.ad_consent = False
        on_qualification(db, row)  # the same path a re-qualification takes
        db.commit()
        delivery = db.scalars(select(ConversionDelivery)).one()
        delivery.consent = False  # already queued: consent is read at enqueue
        db.commit()
        conv = conversion_for(db, delivery, row)
    assert conv.consent is False
    assert (conv.gclid, conv.fbclid, conv.ga_client_id, conv.caller_e164, conv.click_at) == (
        None, None, None, None, None)
    deliverer(app).run_once(T0)
    assert receiver.events == []
    assert deliveries(app)[0].status == "skipped"


def test_consent_is_taken_from_the_visit_when_queued(app, admin, receiver):
    site, pool, dest_id = setup_site(app, admin, receiver, rule={"unknown_consent": "denied"})
    post_call(admin, pool, "c-1", to=pool_number(admin, pool))
    assert deliveries(app)[0].consent is False  # never asked + "denied" default


# -- credentials -----------------------------------------------------------------------------------


META_TOKEN = "EAAtestSECRETaccesstoken0123456789"


def test_credentials_never_reach_the_log(app, admin, caplog):
    import logging

    caplog.set_level(logging.DEBUG)
    got = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            got.append((self.path, body))
            data = json.dumps({"events_received": len(body["data"]), "messages": [],
                               "fbtrace_id": "Atrace"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    from http.server import ThreadingHTTPServer as Server
    server = Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        site = make_site(admin)
        pool = make_pool(admin, site, numbers=numbers(5))
        response = admin.post("/v1/conversions/destinations", json={
            "site": site["key"], "name": "meta", "kind": "meta", "config": {
                "base_url": f"http://127.0.0.1:{server.server_port}", "pixel_id": "1234567890",
                "access_token": META_TOKEN}})
        assert response.status_code == 201
        dest = response.get_json()
        assert META_TOKEN not in json.dumps(dest) and dest["config"]["access_token"] == "****6789"
        admin.post("/v1/conversions/rules", json={
            "site": site["key"], "actions": [{"destination": dest["id"], "name": "Lead"}]})
        recent = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).isoformat()
        call = post_call(admin, pool, "c-1", to=pool_number(admin, pool), started_at=recent)
        deliverer(app).run_once(dt.datetime.now(dt.UTC))
        assert len(got) == 1 and f"access_token={META_TOKEN}" in got[0][0]  # really sent
        row = deliveries(app)[0]
        assert row.status == "sent"
        attempts = admin.get(f"/v1/conversions/deliveries/{row.id}/attempts").get_json()
        assert attempts["attempts"][0]["http_status"] == 200
        assert "access_token=****6789" in attempts["attempts"][0]["request"]["url"]
        for answer in (attempts, admin.get("/v1/conversions/destinations").get_json(),
                       admin.get(f"/v1/conversions/deliveries?call={call['id']}").get_json()):
            assert META_TOKEN not in json.dumps(answer)
        assert META_TOKEN not in caplog.text
        page = admin.get("/dashboard/conversions")  # not logged in: a redirect, no data
        assert META_TOKEN not in page.get_data(as_text=True)
    finally:
        server.shutdown()
        server.server_close()
