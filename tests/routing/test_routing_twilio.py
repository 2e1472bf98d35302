"""Routed calls on Twilio: the TwiML a plan with a ZIP step and two tiers answers, turn by
turn, as Twilio would request it (signed), with redeliveries answered the same."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from sqlalchemy import select

from dni_server.extensions import db
from factories import TWILIO_TOKEN, make_pool, make_site, numbers, twilio_call, twilio_post
from routing.models import CallRouting

CALLER = "+14155550100"


@pytest.fixture
def twilio_app(make_app):
    return make_app(DNI_TWILIO_AUTH_TOKEN=TWILIO_TOKEN)


def buyer(admin, name: str, number: str, **fields) -> int:
    body = {"name": name, "timezone": "America/Los_Angeles",
            "targets": [{"number": number, "ring_seconds": 20}],
            "conversion": {"min_duration": 60}, "revenue": "30.00"} | fields
    response = admin.post("/v1/buyers", json=body)
    assert response.status_code == 201, response.get_json()
    return response.get_json()["id"]


@pytest.fixture
def routed(twilio_app):
    """A pool whose calls go through a plan: ZIP, then buyer A, then B and C at once."""
    from factories import ADMIN_TOKEN, AdminClient

    admin = AdminClient(twilio_app.test_client(), ADMIN_TOKEN)
    a = buyer(admin, "A", "+12125550101", filters=[{"caller_state": "CA"}])
    b = buyer(admin, "B", "+12125550102", whisper="Lead from the plan.", accept=True)
    c = buyer(admin, "C", "+12125550103")
    plan = admin.post("/v1/routing-plans", json={
        "name": "Roofing", "ivr": [{"type": "say", "text": "Thanks for calling."},
                                   {"type": "zip", "text": "Please key your ZIP code."}],
        "tiers": [{"buyers": [a]}, {"buyers": [b, c], "mode": "simultaneous"}],
        "fallback": {"message": "Nobody is free."}}).get_json()
    site = make_site(admin)
    pool = make_pool(admin, site, numbers=numbers(1), routing_plan=plan["id"])
    return {"client": twilio_app.test_client(), "to": numbers(1)[0], "a": a, "b": b, "c": c,
            "plan": plan["id"], "app": twilio_app, "pool": pool}


def post(world, path, **params):
    response = twilio_post(world["client"], path, twilio_call("CA-routed", world["to"], CALLER)
                           | params)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_data(as_text=True)


def test_a_zip_step_then_two_tiers_in_twiml(routed):
    first = post(routed, "/webhooks/twilio/voice")
    root = ET.fromstring(first)
    assert root[0].tag == "Say" and root[0].text == "Thanks for calling."
    gather = root[1]
    assert gather.tag == "Gather" and gather.get("numDigits") == "5"
    assert gather.get("action") == "http://localhost/webhooks/twilio/route/1/gather/1"
    assert gather.get("actionOnEmptyResult") == "true" and gather[0].text.startswith("Please")
    # Twilio asks again (a redelivery): the same answer, nothing done twice.
    assert post(routed, "/webhooks/twilio/voice") == first

    # A ZIP in Nevada: buyer A (California only) is skipped; B and C ring at once.
    offered = post(routed, "/webhooks/twilio/route/1/gather/1", Digits="89101")
    offer = ET.fromstring(offered)
    dial = offer.find("Dial")
    assert dial.get("action") == "http://localhost/webhooks/twilio/route/2/dial"
    assert dial.get("timeout") == "20" and dial.get("callerId") == CALLER
    legs = {n.text: n.get("url") for n in dial.findall("Number")}
    assert legs == {
        "+12125550102": f"http://localhost/webhooks/twilio/route/2/whisper/{routed['b']}",
        "+12125550103": f"http://localhost/webhooks/twilio/route/2/whisper/{routed['c']}"}
    # Redelivered: the same offer, not a second reservation.
    assert post(routed, "/webhooks/twilio/route/1/gather/1", Digits="89101") == offered

    # B's voicemail picks up: asked to press 1, it never does; its leg hangs up.
    whisper = ET.fromstring(post(routed, f"/webhooks/twilio/route/2/whisper/{routed['b']}",
                                 CallSid="CA-leg-b", ParentCallSid="CA-routed"))
    assert whisper[0].tag == "Gather" and whisper[0].get("numDigits") == "1"
    assert "Press 1" in whisper[0][0].text and whisper[1].tag == "Hangup"
    declined = ET.fromstring(post(routed, f"/webhooks/twilio/route/2/accept/{routed['b']}",
                                  CallSid="CA-leg-b", ParentCallSid="CA-routed"))
    assert [e.tag for e in declined] == ["Hangup"]
    # C answers (no whisper, no accept): bridged at once.
    assert len(ET.fromstring(post(routed, f"/webhooks/twilio/route/2/whisper/{routed['c']}",
                                  CallSid="CA-leg-c", ParentCallSid="CA-routed"))) == 0
    done = ET.fromstring(post(routed, "/webhooks/twilio/route/2/dial", DialCallStatus="completed",
                              DialCallDuration="75", DialCallSid="CA-leg-c",
                              CallStatus="completed"))
    assert [e.tag for e in done] == ["Hangup"]

    with routed["app"].app_context():
        log = db.session.scalar(select(CallRouting))
        assert log.buyer_id == routed["c"] and log.converted and str(log.revenue) == "30.00"
        assert log.ivr["zip"] == "89101" and log.outcome == "connected"
        assert log.skipped == [{"buyer": routed["a"], "reason": "filter:caller_state"}]
        assert sorted((o["buyer"], o["outcome"]) for o in log.offers) == [
            (routed["b"], "declined"), (routed["c"], "answered")]
        from attribution.models import Call

        call_id = db.session.scalar(select(Call.id).where(Call.provider_call_id == "CA-routed"))

    # The call shows its routing: every buyer considered, and why it won or lost.
    from factories import ADMIN_TOKEN, AdminClient

    shown = AdminClient(routed["app"].test_client(), ADMIN_TOKEN).get(
        f"/v1/calls/{call_id}").get_json()["routing"]
    assert shown["plan"] == routed["plan"] and shown["buyer"] == routed["c"]
    assert shown["converted"] and shown["revenue"] == "30.00"
    assert shown["ivr"] == {"zip": "89101", "tags": {}, "pressed": None}
    assert {o["outcome"] for o in shown["offers"]} == {"declined", "answered"}
    assert all(o["at"].endswith("+00:00") and o["ring_seconds"] is not None
               for o in shown["offers"])


def test_nobody_eligible_gives_the_message_and_a_hang_up(routed):
    post(routed, "/webhooks/twilio/voice")
    # Buyers B and C are paused, A takes California only: nobody for Texas.
    from factories import ADMIN_TOKEN, AdminClient

    admin = AdminClient(routed["app"].test_client(), ADMIN_TOKEN)
    for b in (routed["b"], routed["c"]):
        assert admin.patch(f"/v1/buyers/{b}", json={"paused": True}).status_code == 200
    answer = ET.fromstring(post(routed, "/webhooks/twilio/route/1/gather/1", Digits="75001"))
    assert [(e.tag, e.text) for e in answer] == [("Say", "Nobody is free."), ("Hangup", None)]


def test_a_forged_route_webhook_is_refused(routed):
    response = twilio_post(routed["client"], "/webhooks/twilio/route/1/gather/1",
                           twilio_call("CA-routed", routed["to"], CALLER, Digits="1"),
                           signature="bad")
    assert response.status_code == 403


def test_numbers_without_a_plan_are_forwarded_as_before(routed):
    from factories import ADMIN_TOKEN, AdminClient

    admin = AdminClient(routed["app"].test_client(), ADMIN_TOKEN)
    admin.patch(f"/v1/pools/{routed['pool']['id']}", json={"routing_plan": None})
    root = ET.fromstring(post(routed, "/webhooks/twilio/voice"))
    assert root[0].tag == "Dial" and root[0].find("Number").text == "+12125550199"


def round_trips(monkeypatch) -> list[int]:
    """Count Redis round trips from now on, on every client: a command, or a pipeline's
    execute (with any command it sends first on its own, as SCRIPT EXISTS)."""
    from redis.client import Pipeline, Redis

    sent = [0]

    def counting(method):
        def counted(*args, **kwargs):
            sent[0] += 1
            return method(*args, **kwargs)
        return counted

    monkeypatch.setattr(Redis, "execute_command", counting(Redis.execute_command))
    monkeypatch.setattr(Pipeline, "execute", counting(Pipeline.execute))
    monkeypatch.setattr(Pipeline, "immediate_execute_command",
                        counting(Pipeline.immediate_execute_command))
    return sent


def test_a_routed_new_call_costs_one_redis_round_trip_and_no_extra_sql(routed, monkeypatch):
    """The routing decision adds one Redis round trip (the call's state written; without an
    IVR, with the buyer's reservation in the same pipeline) and not one SQL statement to
    today's new-call path: plans and buyers come from the per-process cache."""
    from sqlalchemy import event

    from dni_server.api import routing_calls

    app = routed["app"]
    plain = numbers(1, start=140)[0]  # a pool number without a plan, for comparison
    at_once = numbers(1, start=150)[0]  # a plan without an IVR: offered to a buyer at once
    from factories import ADMIN_TOKEN, AdminClient

    admin = AdminClient(app.test_client(), ADMIN_TOKEN)
    site = make_site(admin)
    make_pool(admin, site, numbers=[plain], target="+18005550111")
    no_ivr = admin.post("/v1/routing-plans", json={
        "name": "Straight", "tiers": [{"buyers": [routed["c"], routed["b"]]}],
        "fallback": {"message": "Nobody is free."}}).get_json()["id"]
    make_pool(admin, site, numbers=[at_once], target="+18005550112", routing_plan=no_ivr)

    def cost(sid: str, to: str) -> tuple[int, int, str]:
        with app.test_request_context():
            app.extensions["dni"].routes.routes()  # warm, as in a running service
            routing_calls.routing_directory().current()
        statements = [0]

        def before(*_args):
            statements[0] += 1

        with app.app_context():
            engine = db.engine
        sent = round_trips(monkeypatch)
        event.listen(engine, "before_cursor_execute", before)
        try:
            response = twilio_post(app.test_client(), "/webhooks/twilio/voice",
                                   twilio_call(sid, to, CALLER))
        finally:
            event.remove(engine, "before_cursor_execute", before)
            monkeypatch.undo()
        assert response.status_code == 200
        return sent[0], statements[0], response.get_data(as_text=True)

    forwarded_redis, forwarded_sql, _ = cost("CA-plain", plain)
    routed_redis, routed_sql, asked = cost("CA-new-routed", routed["to"])
    assert "<Gather" in asked
    assert routed_redis == forwarded_redis + 1
    assert routed_sql == forwarded_sql
    at_once_redis, at_once_sql, offered = cost("CA-at-once", at_once)
    dial = ET.fromstring(offered).find("Dial")
    assert dial is not None and dial.find("Number").text in ("+12125550102", "+12125550103")
    assert at_once_redis == forwarded_redis + 1
    assert at_once_sql == forwarded_sql


def capacity_of(world):
    import datetime as dt

    from dni_server.api.routing_calls import routing_directory
    from routing.capacity import Capacity

    services = world["app"].extensions["dni"]
    with world["app"].app_context():
        buyers = routing_directory().current().buyers
    capacity = Capacity(services.redis_admin, services.settings.redis_prefix)
    return lambda buyer_id: capacity.usage(buyer_id, buyers[buyer_id], dt.datetime.now(dt.UTC))


def test_a_plan_without_an_ivr_offers_at_once_and_a_redelivery_reserves_nothing_more(routed):
    from factories import ADMIN_TOKEN, AdminClient

    admin = AdminClient(routed["app"].test_client(), ADMIN_TOKEN)
    plan = admin.post("/v1/routing-plans", json={
        "name": "Straight", "tiers": [{"buyers": [routed["c"]]}],
        "fallback": {"message": "Nobody is free."}}).get_json()["id"]
    admin.patch(f"/v1/pools/{routed['pool']['id']}", json={"routing_plan": plan})
    first = post(routed, "/webhooks/twilio/voice")
    dial = ET.fromstring(first).find("Dial")
    assert dial.get("action") == "http://localhost/webhooks/twilio/route/1/dial"
    assert [n.text for n in dial.findall("Number")] == ["+12125550103"]
    assert post(routed, "/webhooks/twilio/voice") == first
    usage = capacity_of(routed)(routed["c"])
    assert usage["live"] == 1 and usage["counts"]["total"]["calls"] == 1


def test_a_redis_that_lost_its_scripts_still_reserves(routed):
    """The reservation goes as a bare EVALSHA in the claim's pipeline: a server that forgot
    the script (a restart, SCRIPT FLUSH) has it loaded, and the call is offered all the
    same."""
    from factories import ADMIN_TOKEN, AdminClient

    admin = AdminClient(routed["app"].test_client(), ADMIN_TOKEN)
    plan = admin.post("/v1/routing-plans", json={
        "name": "Straight", "tiers": [{"buyers": [routed["b"], routed["c"]],
                                       "mode": "simultaneous"}],
        "fallback": {"message": "Nobody is free."}}).get_json()["id"]
    admin.patch(f"/v1/pools/{routed['pool']['id']}", json={"routing_plan": plan})
    routed["app"].extensions["dni"].redis_admin.script_flush()
    dial = ET.fromstring(post(routed, "/webhooks/twilio/voice")).find("Dial")
    assert sorted(n.text for n in dial.findall("Number")) == ["+12125550102", "+12125550103"]
    usage = capacity_of(routed)
    assert usage(routed["b"])["live"] == 1 and usage(routed["c"])["live"] == 1


def test_a_buyer_without_room_after_all_is_skipped_and_the_next_offered(routed):
    """The first turn is worked out taking the first buyer to have room; it has none (its
    concurrency is taken by another call): the turn is worked out again, and the state
    that later turns and redeliveries read is the corrected one."""
    import datetime as dt

    from dni_server.api.routing_calls import routing_directory
    from factories import ADMIN_TOKEN, AdminClient
    from routing.capacity import Capacity

    app = routed["app"]
    admin = AdminClient(app.test_client(), ADMIN_TOKEN)
    busy = buyer(admin, "Busy", "+12125550104", caps={"concurrency": 1})
    plan = admin.post("/v1/routing-plans", json={
        "name": "Straight", "tiers": [{"buyers": [busy]}, {"buyers": [routed["c"]]}],
        "fallback": {"message": "Nobody is free."}}).get_json()["id"]
    admin.patch(f"/v1/pools/{routed['pool']['id']}", json={"routing_plan": plan})
    services = app.extensions["dni"]
    with app.app_context():
        contract = routing_directory().current().buyers[busy]
    capacity = Capacity(services.redis_admin, services.settings.redis_prefix)
    assert capacity.reserve(busy, contract, "twilio:CA-other", None, dt.datetime.now(dt.UTC)).ok

    first = post(routed, "/webhooks/twilio/voice")
    assert [n.text for n in ET.fromstring(first).find("Dial").findall("Number")] == [
        "+12125550103"]
    assert post(routed, "/webhooks/twilio/voice") == first
    usage = capacity_of(routed)
    assert usage(busy)["live"] == 1 and usage(routed["c"])["live"] == 1
    # The dial's end settles buyer C: the state was the corrected one.
    post(routed, "/webhooks/twilio/route/1/dial", DialCallStatus="no-answer",
         CallStatus="in-progress")
    assert usage(routed["c"])["live"] == 0 and usage(busy)["live"] == 1
    with app.app_context():
        log = db.session.scalar(select(CallRouting))
        assert {"buyer": busy, "reason": "concurrency"} in log.skipped
        assert [(o["buyer"], o["outcome"]) for o in log.offers] == [(routed["c"], "no_answer")]


def test_redis_down_mid_call_sends_the_caller_to_the_fallback(routed, monkeypatch):
    from redis.exceptions import ConnectionError as RedisDown

    post(routed, "/webhooks/twilio/voice")
    redis = routed["app"].extensions["dni"].redis_admin

    def down(*_a, **_k):
        raise RedisDown("gone")

    monkeypatch.setattr(redis, "execute_command", down)
    monkeypatch.setattr(redis, "pipeline", down)
    answer = ET.fromstring(post(routed, "/webhooks/twilio/route/1/gather/1", Digits="89101"))
    assert [e.tag for e in answer] == ["Say", "Hangup"]


def test_every_turn_delivered_twice_gives_the_same_outcome_and_counts_once(routed):
    """Twilio retries a webhook it got no answer to: the same TwiML, one reservation, one
    release, one conversion."""
    from routing.capacity import Capacity

    twice = [post(routed, "/webhooks/twilio/voice") for _ in range(2)]
    assert twice[0] == twice[1]
    offers = [post(routed, "/webhooks/twilio/route/1/gather/1", Digits="89101")
              for _ in range(2)]
    assert offers[0] == offers[1]
    leg = dict(CallSid="CA-leg-c", ParentCallSid="CA-routed")
    whispers = [post(routed, f"/webhooks/twilio/route/2/whisper/{routed['c']}", **leg)
                for _ in range(2)]
    assert whispers[0] == whispers[1]
    end = dict(DialCallStatus="completed", DialCallDuration="75", DialCallSid="CA-leg-c",
               CallStatus="completed")
    ends = [post(routed, "/webhooks/twilio/route/2/dial", **end) for _ in range(2)]
    assert ends[0] == ends[1]
    # A late copy of an earlier turn changes nothing either.
    assert post(routed, "/webhooks/twilio/route/1/gather/1", Digits="89101") == offers[0]

    services = routed["app"].extensions["dni"]
    with routed["app"].app_context():
        from dni_server.api.routing_calls import routing_directory

        buyers = routing_directory().current().buyers
    import datetime as dt

    capacity = Capacity(services.redis_admin, services.settings.redis_prefix)
    now = dt.datetime.now(dt.UTC)
    for buyer_id, calls, conversions in ((routed["b"], 1, 0), (routed["c"], 1, 1)):
        used = capacity.usage(buyer_id, buyers[buyer_id], now)
        assert used["live"] == 0
        assert (used["counts"]["total"]["calls"],
                used["counts"]["total"]["conversions"]) == (calls, conversions)


def test_the_callers_hang_up_frees_a_ringing_buyer(routed):
    """The status callback of the caller's call ending releases what still rings (say the
    <Dial action> was lost), once."""
    from routing.capacity import Capacity

    post(routed, "/webhooks/twilio/voice")
    post(routed, "/webhooks/twilio/route/1/gather/1", Digits="94105")  # California: buyer A
    services = routed["app"].extensions["dni"]
    capacity = Capacity(services.redis_admin, services.settings.redis_prefix)
    with routed["app"].app_context():
        from dni_server.api.routing_calls import routing_directory

        a = routing_directory().current().buyers[routed["a"]]
    import datetime as dt

    assert capacity.usage(routed["a"], a, dt.datetime.now(dt.UTC))["live"] == 1
    for _ in range(2):
        response = twilio_post(routed["client"], "/webhooks/twilio/status", twilio_call(
            "CA-routed", routed["to"], CALLER, CallStatus="completed", CallDuration="40",
            SequenceNumber="3"))
        assert response.status_code == 204
    used = capacity.usage(routed["a"], a, dt.datetime.now(dt.UTC))
    assert used["live"] == 0 and used["counts"]["total"]["connections"] == 0
    with routed["app"].app_context():
        log = db.session.scalar(select(CallRouting))
        assert log.outcome == "caller_hung_up" and log.offers[0]["outcome"] == "no_answer"
