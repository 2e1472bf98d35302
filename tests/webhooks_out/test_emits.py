"""Where events come from: publisher scoping, a buyer's conversion, pool exhaustion, and
the worker's own loop delivering them."""

from __future__ import annotations

import datetime as dt

from factories import make_pool, make_site, numbers, post_session, record
from pools.models import utcnow
from webhooks_out.conftest import deliverer, drain, pool_number, post_call, rows, subscribe
from webhooks_out.receiver import Receiver


def t0() -> dt.datetime:
    return utcnow() + dt.timedelta(seconds=1)


def test_a_publishers_subscription_gets_only_its_calls_as_it_sees_them(app, admin, receiver):
    site = make_site(admin)
    pool_a = make_pool(admin, site, numbers=numbers(2), publisher="A")
    pool_b = make_pool(admin, site, numbers=numbers(2, start=150), publisher="B",
                       name="B pool", target="+18005550111")
    everything = Receiver()
    try:
        subscribe(admin, site, receiver, events=["call.completed"], publisher="A")
        subscribe(admin, site, everything, events=["call.completed"])
        call_a = post_call(admin, "a-1", pool_number(admin, pool_a))
        call_b = post_call(admin, "b-1", pool_number(admin, pool_b))
        drain(deliverer(app), t0(), passes=3, step=1)
        assert [e["data"]["id"] for e in receiver.accepted] == [call_a["id"]]
        assert sorted(e["data"]["id"] for e in everything.accepted) == sorted(
            [call_a["id"], call_b["id"]])
        assert "b-1" not in str(receiver.accepted)
        # the payload is what publisher A's own token is shown for that call
        token = admin.post("/v1/tokens", json={"name": "a", "scope": "publisher",
                                                "publisher": "A"}).get_json()["token"]
        seen_by_a = app.test_client().get(f"/v1/calls/{call_a['id']}", headers={
            "Authorization": f"Bearer {token}"}).get_json()
        assert receiver.accepted[0]["data"] == seen_by_a
    finally:
        everything.close()


def test_a_buyers_conversion_is_announced_once(app, admin, receiver, setup):
    from routing import money

    site, pool, subscription = setup
    call = post_call(admin, "c-1", pool_number(admin, pool))
    with app.extensions["dni"].session_factory() as db:
        for converted in (False, True, True):
            money.settle(db, "api", "c-1", converted)
            db.commit()
    drain(deliverer(app), t0(), passes=6, step=1)
    types = [e["type"] for e in receiver.accepted]
    assert types.count("call.converted") == 1 and types[-1] == "call.converted"
    assert receiver.accepted[-1]["data"]["id"] == call["id"]


def test_pool_exhaustion_is_announced_once_per_quiet_period(app, admin, client, receiver):
    site = make_site(admin, keyword_params=["kw"])
    pool = make_pool(admin, site, numbers=numbers(1), fallback="+18005550102")
    subscribe(admin, site, receiver, events=["pool.exhausted"])
    post_session(client, site["key"])
    for i in range(3):  # three visitors refused
        body = post_session(client, site["key"], ip=f"192.0.2.{20 + i}").get_json()
        assert body["numbers"][0]["reason"] == "pool_exhausted"
    record(app)
    post_session(client, site["key"], ip="192.0.2.40")
    record(app)  # a later refusal inside the quiet period: no second event
    drain(deliverer(app), t0(), passes=3, step=1)
    (event,) = receiver.accepted
    assert event["type"] == "pool.exhausted"
    assert event["data"]["pool"]["id"] == pool["id"]
    assert event["data"]["pool"]["fallback"] == "+18005550102"
    assert event["data"]["visitors_refused"] >= 3
    assert rows(app)[0].call_id is None


def test_the_worker_loop_delivers(app, admin, receiver, setup):
    from dni_server.worker import Worker

    site, pool, subscription = setup
    post_call(admin, "c-1", pool_number(admin, pool))
    worker = Worker(app)
    for _ in range(4):
        worker.run_once()
    assert [e["type"] for e in receiver.accepted][:2] == ["call.started", "call.completed"]
    assert receiver.bad_signatures == 0


def test_no_subscription_no_rows(app, admin):
    site = make_site(admin)
    pool = make_pool(admin, site, numbers=numbers(2))
    post_call(admin, "c-1", pool_number(admin, pool))
    assert rows(app) == []


def test_emit_takes_new_event_kinds_by_name_only(app, admin, receiver, monkeypatch):
    import pytest

    from attribution.webhooks import events

    site = make_site(admin)
    monkeypatch.setitem(events.EVENT_TYPES, "fraud.flagged", "a call was flagged")
    subscribe(admin, site, receiver, events=["fraud.flagged"])
    with app.extensions["dni"].session_factory() as db:
        with pytest.raises(ValueError, match="unknown webhook event type"):
            events.emit(db, "fraud.flaged", site_id=site["id"], publisher=None)
        assert events.emit(db, "fraud.flagged", site_id=site["id"], publisher=None,
                           data={"score": 0.93}, ordering_key="fraud:1")
        db.commit()
    drain(deliverer(app), t0(), passes=2, step=1)
    (event,) = receiver.accepted
    assert event["type"] == "fraud.flagged" and event["data"] == {"score": 0.93}
