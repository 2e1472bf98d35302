"""Routed calls racing across two app instances (one Redis, one database): a buyer's
concurrency and day cap hold, every other call goes to the next tier, none is lost."""

from __future__ import annotations

import threading
import time
import xml.etree.ElementTree as ET

from sqlalchemy import func, select

from dni_server.extensions import db
from factories import (
    ADMIN_TOKEN,
    TWILIO_TOKEN,
    AdminClient,
    make_pool,
    make_site,
    numbers,
    twilio_call,
    twilio_post,
)
from routing.models import CallRouting

CALLS = 40


def test_racing_calls_on_two_app_servers_hold_caps_and_lose_nothing(make_app):
    apps = [make_app(DNI_TWILIO_AUTH_TOKEN=TWILIO_TOKEN) for _ in range(2)]
    admin = AdminClient(apps[0].test_client(), ADMIN_TOKEN)
    capped = admin.post("/v1/buyers", json={
        "name": "Capped", "timezone": "America/New_York",
        "targets": [{"number": "+12125550101"}],
        "caps": {"concurrency": 5, "conversions": {"day": 10}},
        "conversion": {"min_duration": 60}, "revenue": "50"}).get_json()["id"]
    spare = admin.post("/v1/buyers", json={
        "name": "Spare", "timezone": "America/New_York", "targets": [{"number": "+12125550102"}],
        "conversion": {"min_duration": 60}, "revenue": "20"}).get_json()["id"]
    plan = admin.post("/v1/routing-plans", json={
        "name": "Race", "tiers": [{"buyers": [capped]}, {"buyers": [spare]}],
        "fallback": {"message": "Busy."}}).get_json()["id"]
    to = numbers(1)[0]
    make_pool(admin, make_site(admin), numbers=[to], routing_plan=plan)

    lock = threading.Lock()
    live, peak, winners = [0], [0], []
    start = threading.Barrier(8)

    def call(index: int):
        client = apps[index % 2].test_client()  # each turn may land on either server
        other = apps[(index + 1) % 2].test_client()
        sid = f"CA-race-{index:03d}"
        answer = twilio_post(client, "/webhooks/twilio/voice", twilio_call(sid, to, "+1415555"
                                                                           f"{index:04d}"))
        dial = ET.fromstring(answer.get_data(as_text=True)).find("Dial")
        number = dial.find("Number")
        buyer = int(number.get("url").rsplit("/", 1)[1])
        turn = dial.get("action").split("/route/")[1].split("/")[0]
        if buyer == capped:
            with lock:
                live[0] += 1
                peak[0] = max(peak[0], live[0])
        leg = twilio_call(f"CA-leg-{index:03d}", number.text, ParentCallSid=sid)
        twilio_post(other, number.get("url").replace("http://localhost", ""), leg)
        time.sleep(0.01)  # talking
        if buyer == capped:
            with lock:
                live[0] -= 1
        done = twilio_post(client, f"/webhooks/twilio/route/{turn}/dial", twilio_call(
            sid, to, DialCallStatus="completed", DialCallDuration="120",
            DialCallSid=f"CA-leg-{index:03d}", CallStatus="completed"))
        assert done.status_code == 200
        with lock:
            winners.append(buyer)

    def worker(first: int):
        start.wait()
        for index in range(first, CALLS, 8):
            call(index)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert len(winners) == CALLS  # no call lost
    assert winners.count(capped) == 10 and winners.count(spare) == CALLS - 10
    assert peak[0] <= 5
    with apps[0].app_context():
        converted = db.session.scalar(select(func.count()).select_from(CallRouting).where(
            CallRouting.buyer_id == capped, CallRouting.converted))
        assert converted == 10


def test_a_day_cap_resets_at_the_buyers_midnight_not_the_servers(make_app):
    """A Los Angeles buyer with a day cap of one call, on a controlled clock: full until
    midnight in Los Angeles (08:00 UTC), free again just after; UTC's midnight resets
    nothing."""
    import datetime as dt

    from dni_server.api.routing_calls import routed_calls

    app = make_app(DNI_TWILIO_AUTH_TOKEN=TWILIO_TOKEN)
    admin = AdminClient(app.test_client(), ADMIN_TOKEN)
    capped = admin.post("/v1/buyers", json={
        "name": "West", "timezone": "America/Los_Angeles",
        "targets": [{"number": "+12125550101"}], "caps": {"calls": {"day": 1}},
        "conversion": {"min_duration": 60}, "revenue": "50"}).get_json()["id"]
    spare = admin.post("/v1/buyers", json={
        "name": "Spare", "timezone": "UTC", "targets": [{"number": "+12125550102"}],
        "conversion": {"min_duration": 60}, "revenue": "20"}).get_json()["id"]
    plan = admin.post("/v1/routing-plans", json={
        "name": "Midnight", "tiers": [{"buyers": [capped]}, {"buyers": [spare]}],
        "fallback": {"message": "Busy."}}).get_json()["id"]
    to = numbers(1)[0]
    make_pool(admin, make_site(admin), numbers=[to], routing_plan=plan)
    now = [dt.datetime(2026, 3, 3, 23, 59, 0, tzinfo=dt.UTC)]
    with app.app_context():
        routed_calls().clock = lambda: now[0]
    client = app.test_client()

    def offered_to(sid: str, at: dt.datetime) -> str:
        now[0] = at
        answer = twilio_post(client, "/webhooks/twilio/voice", twilio_call(sid, to))
        number = ET.fromstring(answer.get_data(as_text=True)).find("Dial/Number")
        twilio_post(client, "/webhooks/twilio/route/1/dial", twilio_call(
            sid, to, DialCallStatus="completed", DialCallDuration="90", CallStatus="completed"))
        return number.text

    utc = dt.UTC
    # UTC midnight (16:00 in Los Angeles) is no boundary for this buyer.
    assert offered_to("CA-mid-1", dt.datetime(2026, 3, 3, 23, 59, 50, tzinfo=utc)) == (
        "+12125550101")
    assert offered_to("CA-mid-2", dt.datetime(2026, 3, 4, 0, 0, 10, tzinfo=utc)) == (
        "+12125550102")
    # 07:59:50 UTC is 23:59:50 in Los Angeles: still the same day there, still full.
    assert offered_to("CA-mid-3", dt.datetime(2026, 3, 4, 7, 59, 50, tzinfo=utc)) == (
        "+12125550102")
    # 08:00:10 UTC is just past midnight in Los Angeles: a new day, a new call.
    assert offered_to("CA-mid-4", dt.datetime(2026, 3, 4, 8, 0, 10, tzinfo=utc)) == (
        "+12125550101")
    assert offered_to("CA-mid-5", dt.datetime(2026, 3, 4, 8, 0, 30, tzinfo=utc)) == (
        "+12125550102")
    with app.app_context():
        skipped = db.session.scalar(select(CallRouting.skipped).where(
            CallRouting.provider_call_id == "CA-mid-5"))
    assert skipped == [{"buyer": capped, "reason": "cap:day:calls"}]
