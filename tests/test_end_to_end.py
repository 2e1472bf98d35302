"""A visit from an ad becomes a leased number, a forwarded call, and a qualified, attributed call."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from factories import (
    ADMIN_TOKEN,
    IPHONE_UA,
    TWILIO_TOKEN,
    AdminClient,
    make_pool,
    make_site,
    numbers,
    post_session,
    twilio_call,
    twilio_post,
)


def test_visit_to_qualified_call(make_app):
    app = make_app(DNI_TWILIO_AUTH_TOKEN=TWILIO_TOKEN)
    admin = AdminClient(app.test_client(), ADMIN_TOKEN)
    site = make_site(admin, keyword_params=["kw"])
    make_pool(admin, site, numbers=numbers(3), qualification={"min_duration": 60},
              revenue="35.00", payout="20.00", publisher="Acme Media")

    landing = ("https://plumbing.example/emergency?utm_source=google&utm_medium=cpc"
               "&utm_campaign=burst-pipes&utm_term=emergency+plumber&gclid=EAIaIQobChMI_x-Y")
    session = post_session(app.test_client(), site["key"], landing, ua=IPHONE_UA,
                           referrer="https://www.google.com/").get_json()
    number = session["numbers"][0]["number"]

    # The visitor calls the number they were shown.
    client = app.test_client()
    sid = "CA" + "e" * 32
    answer = twilio_post(client, "/webhooks/twilio/voice", twilio_call(sid, number))
    assert ET.fromstring(answer.data).find("Dial/Number").text == "+12125550199"
    ringing = admin.get(f"/v1/calls/{sid}").json
    assert ringing["qualified"] is False and ringing["qualification_failures"] == ["too_short"]

    # 75 seconds later the call completes.
    twilio_post(client, "/webhooks/twilio/status", twilio_call(
        sid, number, CallStatus="completed", CallDuration="75", SequenceNumber="3",
        CallbackSource="call-progress-events"))

    call = admin.get(f"/v1/calls/{ringing['id']}").json
    a = call["attribution"]
    assert (a["method"], a["session_id"]) == ("session", session["session_id"])
    assert (a["source"], a["medium"], a["campaign"]) == ("google", "cpc", "burst-pipes")
    assert a["keyword"] == "emergency plumber" and a["term"] == "emergency plumber"
    assert a["gclid"] == "EAIaIQobChMI_x-Y"
    assert a["landing_page"] == landing and a["landing_path"] == "/emergency"
    assert (a["device_type"], a["os"]) == ("mobile", "iOS")
    assert a["publisher"] == "Acme Media"
    assert (call["status"], call["duration"], call["qualified"]) == ("completed", 75, True)
    assert (call["revenue"], call["payout"]) == ("35.00", "20.00")
    assert call["caller"]["number"] == "+14158675309"
    assert call["explanation"]["leases"][0]["session_id"] == session["session_id"]
