"""A buyer's suppression list: the caller is never offered to that buyer, silently, and the
routing log says why."""

from __future__ import annotations

import xml.etree.ElementTree as ET

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

SUPPRESSED, OTHER = "+13105550140", "+17185550141"


def buyer(admin, name, number, **fields) -> int:
    body = {"name": name, "timezone": "America/Los_Angeles",
            "targets": [{"number": number, "ring_seconds": 20}],
            "conversion": {"min_duration": 60}, "revenue": "30.00"} | fields
    response = admin.post("/v1/buyers", json=body)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def test_a_suppressed_caller_skips_that_buyer(make_app):
    app = make_app(DNI_TWILIO_AUTH_TOKEN=TWILIO_TOKEN)
    admin = AdminClient(app.test_client(), ADMIN_TOKEN)
    picky = buyer(admin, "Picky", "+12125550101", suppress=["+1 310 555", "+19005550100"])
    assert picky["suppress"] == ["+1310555", "+19005550100"]
    easy = buyer(admin, "Easy", "+12125550102")
    plan = admin.post("/v1/routing-plans", json={
        "name": "P", "tiers": [{"buyers": [picky["id"], easy["id"]], "mode": "simultaneous"}]
    }).get_json()
    to = numbers(1, start=191)[0]
    make_pool(admin, make_site(admin), numbers=[to], routing_plan=plan["id"])

    def dialled(sid: str, caller: str) -> list[str]:
        answer = twilio_post(app.test_client(), "/webhooks/twilio/voice",
                             twilio_call(sid, to, caller)).get_data(as_text=True)
        return [n.text for n in ET.fromstring(answer).iter("Number")]

    assert dialled("CA-sup", SUPPRESSED) == ["+12125550102"]
    assert sorted(dialled("CA-ok", OTHER)) == ["+12125550101", "+12125550102"]
    twilio_post(app.test_client(), "/webhooks/twilio/route/1/dial",
                twilio_call("CA-sup", to, SUPPRESSED) | {"DialCallStatus": "no-answer",
                                                          "CallStatus": "completed"})
    routing = admin.get("/v1/calls/CA-sup").get_json()["routing"]
    assert {"buyer": picky["id"], "reason": "suppressed"} in routing["skipped"]


def test_a_bad_suppression_entry_is_422(make_app):
    admin = AdminClient(make_app().test_client(), ADMIN_TOKEN)
    response = admin.post("/v1/buyers", json={
        "name": "X", "timezone": "UTC", "targets": [{"number": "+12125550101"}],
        "conversion": {"min_duration": 60}, "revenue": "1.00", "suppress": ["310555"]})
    assert response.status_code == 422
    assert "suppress" in response.get_json()["error"]["fields"]
