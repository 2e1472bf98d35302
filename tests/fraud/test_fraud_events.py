"""``fraud.flagged``: a call held for review is announced to the outgoing webhooks once, in
the transaction that held it, and only to subscriptions that may see the call."""

from __future__ import annotations

import datetime as dt

import pytest
from webhooks_out.conftest import deliverer, drain, subscribe
from webhooks_out.receiver import Receiver

from attribution.webhooks.events import EVENT_TYPES
from factories import (
    ADMIN_TOKEN,
    TWILIO_TOKEN,
    AdminClient,
    make_site,
    numbers,
    twilio_call,
    twilio_post,
)
from pools.models import utcnow

DESTINATION = "+12125550199"


@pytest.fixture
def world(make_app):
    app = make_app(DNI_TWILIO_AUTH_TOKEN=TWILIO_TOKEN)
    admin = AdminClient(app.test_client(), ADMIN_TOKEN)
    site = make_site(admin)
    to = numbers(1, start=181)[0]
    static = admin.post("/v1/static-numbers", json={
        "site": site["key"], "number": to, "destination": DESTINATION, "source": "radio",
        "medium": "offline", "publisher": "A"})
    assert static.status_code == 201, static.get_json()
    other = admin.post("/v1/static-numbers", json={
        "site": site["key"], "number": numbers(1, start=182)[0], "destination": DESTINATION,
        "source": "tv", "medium": "offline", "publisher": "B"})
    assert other.status_code == 201, other.get_json()
    policy = admin.put(f"/v1/sites/{site['key']}/fraud-policy", json={"settings": {}})
    assert policy.status_code == 200, policy.get_json()
    return {"app": app, "admin": admin, "site": site, "to": to}


@pytest.fixture
def receivers():
    found = {name: Receiver() for name in ("network", "A", "B")}
    yield found
    for receiver in found.values():
        receiver.close()


def voice(world, sid: str, **extra) -> None:
    response = twilio_post(world["app"].test_client(), "/webhooks/twilio/voice",
                           twilio_call(sid, world["to"], "+13105550142", **extra))
    assert response.status_code == 200, response.get_data(as_text=True)


def test_the_type_is_known():
    assert "fraud.flagged" in EVENT_TYPES


def test_a_held_call_is_announced_once_to_those_who_may_see_it(world, receivers):
    site, admin = world["site"], world["admin"]
    subscribe(admin, site, receivers["network"], events=["fraud.flagged", "call.started"])
    subscribe(admin, site, receivers["A"], events=["fraud.flagged"], publisher="A")
    subscribe(admin, site, receivers["B"], events=["fraud.flagged"], publisher="B")
    voice(world, "CA-honest", StirVerstat="TN-Validation-Passed-A")
    voice(world, "CA-spoofed", StirVerstat="TN-Validation-Failed-A")  # 50: held
    voice(world, "CA-spoofed", StirVerstat="TN-Validation-Failed-A")  # redelivered
    held = admin.get("/v1/calls/CA-spoofed").get_json()
    assert admin.get("/v1/calls/CA-spoofed/fraud").get_json()["review"]["state"] == "pending"
    drain(deliverer(world["app"]), utcnow() + dt.timedelta(seconds=1), passes=3, step=1)

    def flagged(receiver) -> list:
        return [e["data"]["id"] for e in receiver.accepted if e["type"] == "fraud.flagged"]

    assert flagged(receivers["network"]) == [held["id"]]
    assert flagged(receivers["A"]) == [held["id"]]
    assert receivers["B"].accepted == []
    started = [e for e in receivers["network"].accepted if e["type"] == "call.started"]
    assert len(started) == 2  # both calls started; only one was held


def test_a_caller_rotating_through_publishers_has_earlier_calls_held_too(world, receivers):
    site, admin = world["site"], world["admin"]
    third = numbers(1, start=183)[0]
    made = admin.post("/v1/static-numbers", json={
        "site": site["key"], "number": third, "destination": DESTINATION, "source": "web",
        "medium": "offline", "publisher": "C"})
    assert made.status_code == 201, made.get_json()
    subscribe(admin, site, receivers["A"], events=["fraud.flagged"], publisher="A")
    rotator, client = "+13105550177", world["app"].test_client()
    for sid, to in (("CA-r1", world["to"]), ("CA-r2", numbers(1, start=182)[0]),
                    ("CA-r3", third)):
        response = twilio_post(client, "/webhooks/twilio/voice", twilio_call(sid, to, rotator))
        assert response.status_code == 200
        if sid == "CA-r2":  # one other publisher: shopping around, nothing held yet
            state = admin.get("/v1/calls/CA-r1/fraud").get_json()
            assert state["review"] is None and state["qualified"] is True
            assert admin.get("/v1/calls/CA-r2/fraud").get_json()["review"] is None
    for sid in ("CA-r1", "CA-r2", "CA-r3"):
        state = admin.get(f"/v1/calls/{sid}/fraud").get_json()
        assert state["review"]["state"] == "pending", (sid, state)
        assert state["qualified"] is False
    first = admin.get("/v1/calls/CA-r1/fraud").get_json()
    cross = next(s for s in first["signals"] if s["name"] == "cross_publisher")
    assert cross["value"] == {"other_publishers": 2, "days": 7, "seen_later": True}
    # An honest caller of the same publisher is left alone.
    twilio_post(client, "/webhooks/twilio/voice", twilio_call("CA-h", world["to"],
                                                              "+13105550178"))
    assert admin.get("/v1/calls/CA-h/fraud").get_json()["review"] is None
    drain(deliverer(world["app"]), utcnow() + dt.timedelta(seconds=1), passes=3, step=1)
    held = admin.get("/v1/calls/CA-r1").get_json()["id"]
    assert [e["data"]["id"] for e in receivers["A"].accepted
            if e["type"] == "fraud.flagged"] == [held]  # A's own call, never C's
