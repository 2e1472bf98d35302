"""Delivery end to end: a call's events reach a real receiver, signed, in order, at least once.

Calls are stored through the API (``POST /v1/calls``) so the emit hooks run where they do in
production; the worker's deliverer runs passes on a virtual clock against the receiver.
"""

from __future__ import annotations

import datetime as dt
import random
import threading

from sqlalchemy import select

from attribution.webhooks.delivery import WebhookDeliverer, WebhookPolicy
from attribution.webhooks.models import OPEN, WebhookAttempt, WebhookSubscription
from factories import make_pool, make_site, numbers
from pools.models import utcnow
from webhooks_out.conftest import (
    deliverer,
    drain,
    pool_number,
    post_call,
    rows,
    subscribe,
)


def t0() -> dt.datetime:
    return utcnow() + dt.timedelta(seconds=1)


def test_a_calls_events_arrive_signed_in_order_with_the_api_view(app, admin, receiver, setup):
    site, pool, subscription = setup
    number = pool_number(admin, pool)
    post_call(admin, "c-1", number, status="ringing", duration=None)
    view = post_call(admin, "c-1", number, status="completed", duration=90)
    assert deliverer(app).run_once(t0()) >= 1
    drain(deliverer(app), t0(), passes=4, step=1)
    got = receiver.accepted
    assert [e["type"] for e in got][:2] == ["call.started", "call.completed"]
    assert got[2]["type"] in ("call.qualified", "call.disqualified")
    assert got[2]["type"] == ("call.qualified" if view["qualified"] else "call.disqualified")
    assert receiver.bad_signatures == 0
    assert len({e["id"] for e in got}) == 3 and all(e["id"].startswith("evt_") for e in got)
    completed = got[1]
    assert set(completed) == {"id", "type", "created_at", "data"}
    api_view = admin.get(f"/v1/calls/{view['id']}").get_json()
    assert completed["data"]["id"] == view["id"]
    assert set(completed["data"]) == set(api_view)  # the same view as GET /v1/calls/<id>
    assert completed["data"]["status"] == "completed"
    assert receiver.headers[0]["Content-Type"] == "application/json"
    assert receiver.headers[0]["DNI-Event-Id"] == got[0]["id"]
    assert {r.status for r in rows(app)} == {"sent"}


def test_the_package_helper_verifies_what_was_sent(app, admin, receiver, setup):
    from attribution.webhooks.signing import verify

    site, pool, subscription = setup
    post_call(admin, "c-1", pool_number(admin, pool))
    drain(deliverer(app), t0(), passes=4, step=1)
    with app.extensions["dni"].session_factory() as db:
        attempt = db.scalars(select(WebhookAttempt).order_by(WebhookAttempt.id)).first()
    request = attempt.request
    assert verify(request["body"].encode(), request["headers"]["DNI-Signature"],
                  subscription["secret"]) > 0


def test_events_only_for_subscribed_types_and_the_subscriptions_site(app, admin, receiver):
    site, other = make_site(admin), make_site(admin, name="Other")
    pool = make_pool(admin, site, numbers=numbers(3))
    make_pool(admin, other, numbers=numbers(3, start=140), target="+18005550123")
    subscribe(admin, other, receiver)  # another site: gets nothing of this one
    subscribe(admin, site, receiver, events=["call.completed"])
    post_call(admin, "c-1", pool_number(admin, pool))
    drain(deliverer(app), t0(), passes=3, step=1)
    assert [e["type"] for e in receiver.accepted] == ["call.completed"]


def test_each_change_of_qualification_is_announced_once(app, admin, receiver, setup):
    """Qualification is flipped directly (the fraud hold and dispositions decide it in
    production): each change after the call ended is announced, a repeat is not."""
    from attribution.models import Call
    from attribution.webhooks.events import call_changed

    site, pool, subscription = setup
    call = post_call(admin, "c-1", pool_number(admin, pool))
    with app.extensions["dni"].session_factory() as db:
        row = db.get(Call, call["id"])
        for qualified in (not call["qualified"], not call["qualified"], call["qualified"]):
            row.qualified = qualified
            call_changed(db, row)
            db.commit()
    drain(deliverer(app), t0(), passes=8, step=1)
    first = "call.qualified" if call["qualified"] else "call.disqualified"
    flipped = "call.disqualified" if call["qualified"] else "call.qualified"
    assert [e["type"] for e in receiver.accepted] == [
        "call.started", "call.completed", first, flipped, first]


def test_retry_after_is_honoured_and_nothing_is_lost(app, admin, receiver, setup):
    site, pool, subscription = setup
    post_call(admin, "c-1", pool_number(admin, pool))
    receiver.fail_next, receiver.retry_after = 2, "600"
    worker, start = deliverer(app, base_delay=1), t0()
    assert worker.run_once(start) == 1
    first = rows(app)[0]
    assert first.status == "retry" and first.attempts == 1
    assert first.next_attempt_at >= start + dt.timedelta(seconds=600)
    assert worker.run_once(start + dt.timedelta(seconds=599)) == 0  # Retry-After holds
    assert worker.run_once(start + dt.timedelta(seconds=601)) == 1
    drain(worker, start + dt.timedelta(seconds=1300), passes=5, step=700)
    assert [e["type"] for e in receiver.accepted][:2] == ["call.started", "call.completed"]
    assert {r.status for r in rows(app)} == {"sent"}
    assert rows(app)[0].attempts == 3
    # the body did not change between attempts: the same event, resigned
    assert len({e["id"] for e in receiver.seen if e["type"] == "call.started"}) == 1


def test_give_up_after_max_attempts_then_later_events_flow_and_replay(app, admin, receiver,
                                                                      setup):
    site, pool, subscription = setup
    post_call(admin, "c-1", pool_number(admin, pool))
    receiver.fail_types = {"call.started"}
    drain(deliverer(app, max_attempts=3), t0(), passes=12, step=3600)
    started = rows(app, event_type="call.started")[0]
    assert started.status == "failed" and started.attempts == 3
    assert "gave up after 3 attempts: HTTP 503" in started.last_error
    assert [e["type"] for e in receiver.accepted][0] == "call.completed"
    log = admin.get(f"/v1/webhooks/{subscription['id']}/deliveries?status=failed").get_json()
    (shown,) = log["deliveries"]
    assert [a["http_status"] for a in shown["log"]] == [503, 503, 503]
    assert all(a["elapsed_ms"] is not None for a in shown["log"])
    assert shown["log"][0]["request"]["headers"]["DNI-Signature"].startswith("t=")
    receiver.fail_types = set()
    replay = admin.post(f"/v1/webhooks/{subscription['id']}/deliveries/{shown['id']}/replay")
    assert replay.status_code == 202 and replay.get_json()["replay_of"] == shown["id"]
    drain(deliverer(app), t0(), passes=2, step=1)
    assert receiver.accepted[-1]["type"] == "call.started"
    assert receiver.accepted[-1]["id"] == started.event_id  # the same event, again
    other = admin.post(f"/v1/webhooks/{subscription['id']}/deliveries/999999/replay")
    assert other.status_code == 404


def test_a_long_run_of_failures_disables_the_subscription_with_its_reason(app, admin,
                                                                           receiver, setup):
    site, pool, subscription = setup
    number = pool_number(admin, pool)
    for i in range(4):
        post_call(admin, f"c-{i}", number, started_at=f"2026-03-02T14:0{i}:00Z")
    receiver.fail_next, receiver.fail_status = 10_000, 500
    burst = deliverer(app, disable_after=6, max_attempts=50, base_delay=0.01,
                      disable_after_seconds=3 * 3600)
    drain(burst, t0(), passes=8, step=1)
    shown = admin.get(f"/v1/webhooks/{subscription['id']}").get_json()
    assert shown["failures_in_a_row"] >= 6 and shown["enabled"] is True  # a burst: kept
    drain(deliverer(app, disable_after=6, max_attempts=50, disable_after_seconds=3 * 3600),
          t0(), passes=12, step=3600)
    shown = admin.get(f"/v1/webhooks/{subscription['id']}").get_json()
    assert shown["enabled"] is False and shown["failures_in_a_row"] >= 6
    assert shown["failing_since"] is not None
    assert "failed deliveries in a row" in shown["disabled_reason"]
    assert "HTTP 500" in shown["disabled_reason"]
    requests_before = len(receiver.seen)
    drain(deliverer(app), t0(), passes=3, step=3600)
    assert len(receiver.seen) == requests_before  # disabled: nothing more is sent
    post_call(admin, "c-new", number, started_at="2026-03-02T15:00:00Z")
    assert not rows(app, call_id=None)  # sanity: every row here belongs to a call
    # re-enabled: the queue waited, nothing was lost
    receiver.fail_next = 0
    admin.patch(f"/v1/webhooks/{subscription['id']}", json={"enabled": True})
    drain(deliverer(app), t0() + dt.timedelta(days=1), passes=12, step=3600)
    delivered = {(e["type"], e["data"]["id"]) for e in receiver.accepted}
    queued = {(r.event_type, r.call_id) for r in rows(app)}
    assert queued <= delivered
    assert {r.status for r in rows(app)} == {"sent"}


def test_a_slow_receiver_times_out_and_is_retried(app, admin, receiver, setup):
    site, pool, subscription = setup
    post_call(admin, "c-1", pool_number(admin, pool))
    receiver.delay = 1.5
    worker = deliverer(app, timeout=0.5)
    start = t0()
    worker.run_once(start)
    row = rows(app)[0]
    assert row.status == "retry" and "ReadTimeout" in row.last_error
    receiver.delay = 0
    drain(worker, start + dt.timedelta(hours=1), passes=4, step=3600)
    types = [e["type"] for e in receiver.accepted]
    assert types[:2] == ["call.started", "call.completed"]
    assert {r.status for r in rows(app)} == {"sent"}


def test_at_least_once_in_order_per_call_under_failures_and_concurrent_workers(
        app, admin, receiver, setup):
    """Many calls, each with several events, random failures, four workers at once."""
    site, pool, subscription = setup
    number = pool_number(admin, pool)
    for i in range(12):
        at = f"2026-03-02T14:{i:02d}:00Z"
        post_call(admin, f"c-{i}", number, status="ringing", duration=None, started_at=at)
    for i in range(12):
        post_call(admin, f"c-{i}", number, status="completed", duration=90,
                  started_at=f"2026-03-02T14:{i:02d}:00Z")
    queued = rows(app)
    rng = random.Random(7)
    original = receiver.signed

    def flaky(raw, header):  # a flaky network after the signature check passed
        ok = original(raw, header)
        with_failure = rng.random() < 0.3
        if ok and with_failure:
            receiver.fail_next = max(receiver.fail_next, 1)
        return ok

    receiver.signed = flaky
    errors, clock = [], {"now": t0()}
    lock = threading.Lock()

    def work():
        # a lease far longer than the virtual time a send takes: no takeover, so no repeat
        worker = deliverer(app, base_delay=1, max_delay=60, max_attempts=100,
                           lease_seconds=3600)
        try:
            for _ in range(400):  # until every row is settled (the assertions say if not)
                if not [r for r in rows(app) if r.status in OPEN]:
                    break
                with lock:
                    clock["now"] += dt.timedelta(seconds=30)
                    now = clock["now"]
                worker.run_once(now)
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(180)
    assert not errors
    assert {r.status for r in rows(app)} == {"sent"}
    ids = [e["id"] for e in receiver.accepted]
    assert set(ids) == {r.event_id for r in queued}  # nothing lost
    assert len(ids) == len(set(ids))  # no duplicate without a crash
    by_call: dict[int, list[str]] = {}
    for event in receiver.accepted:
        by_call.setdefault(event["data"]["id"], []).append(event["id"])
    for call_id, got in by_call.items():
        expected = [r.event_id for r in queued if r.call_id == call_id]
        assert got == expected, f"call {call_id} out of order"


def test_a_worker_that_died_mid_delivery_is_taken_over(app, admin, receiver, setup):
    site, pool, subscription = setup
    post_call(admin, "c-1", pool_number(admin, pool))
    start = t0()
    dead = deliverer(app, lease_seconds=120)
    token, ids = dead.claim(subscription["id"], 5, start)  # claimed, then the process died
    assert len(ids) == 1 and rows(app)[0].status == "sending"
    other = deliverer(app)
    assert other.run_once(start + dt.timedelta(seconds=119)) == 0  # the lease still holds
    drain(other, start + dt.timedelta(seconds=121), passes=4, step=1)
    assert [e["type"] for e in receiver.accepted][:2] == ["call.started", "call.completed"]
    assert rows(app)[0].attempts == 2


def test_ssrf_a_public_name_that_resolves_to_loopback_is_refused_at_send(app, admin,
                                                                         receiver, setup):
    site, pool, subscription = setup
    with app.extensions["dni"].session_factory() as db:
        row = db.get(WebhookSubscription, subscription["id"])
        row.url = receiver.url.replace("127.0.0.1", "localtest.invalid")
        db.commit()
    post_call(admin, "c-1", pool_number(admin, pool))
    services = app.extensions["dni"]
    strict = WebhookDeliverer(services.session_factory, WebhookPolicy(max_attempts=2),
                              credentials_keys=services.settings.credentials_keys)
    import socket
    from unittest import mock

    real = socket.getaddrinfo

    def resolve(host, *args, **kwargs):  # DNS answering a private address for a public name
        return real("127.0.0.1" if host == "localtest.invalid" else host, *args, **kwargs)

    with mock.patch("socket.getaddrinfo", resolve):
        strict.run_once(t0())
    row = rows(app)[0]
    assert row.status == "failed" and "refused" in row.last_error
    assert "loopback" in row.last_error
    assert receiver.seen == [] and receiver.bad_signatures == 0


def test_no_send_starts_that_the_claims_lease_might_not_cover(app, admin, receiver, setup):
    site, pool, subscription = setup
    post_call(admin, "c-1", pool_number(admin, pool))
    assert deliverer(app, lease_seconds=1, timeout=5).run_once(t0()) == 0
    assert receiver.seen == []
    row = rows(app)[0]
    assert row.status == "retry" and row.attempts == 0 and row.claim_token is None
    drain(deliverer(app), t0(), passes=3, step=1)
    assert [e["type"] for e in receiver.accepted][:2] == ["call.started", "call.completed"]


def test_a_payload_that_cannot_be_built_is_retried_not_lost(app, admin, receiver, setup):
    site, pool, subscription = setup
    post_call(admin, "c-1", pool_number(admin, pool))
    broken = deliverer(app)

    def render(*args):
        raise RuntimeError("a bug in a view")

    broken.render_call = render
    broken.run_once(t0())
    row = rows(app)[0]
    assert row.status == "retry" and row.body is None and receiver.seen == []
    assert row.last_error == "the payload could not be built"
    drain(deliverer(app), t0() + dt.timedelta(hours=1), passes=3, step=3600)
    assert [e["type"] for e in receiver.accepted][:2] == ["call.started", "call.completed"]
