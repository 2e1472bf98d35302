"""A routed call that survives the app restarting between two of its webhooks (issue 15):
before each turn the serving app is stopped and a new one, with empty process memory,
takes its place behind the same public URL."""

from __future__ import annotations

import itertools

import pytest

from carriers.conftest import PUBLIC_URL, TELNYX_API_KEY, Carriers, serve
from carriers.scripts import Caller, Keys, Line
from carriers.test_routing_twilio import BUYER_1, BUYER_2, ZIP_IVR, buyer, dialled, routed_number
from carriers.twilio_sim import TwilioSimulator
from factories import ADMIN_TOKEN, TWILIO_TOKEN, AdminClient


@pytest.mark.slow
def test_a_routed_call_survives_restarts_between_its_turns(make_app):
    def start_app():
        app = make_app(DNI_REDIS_TIMEOUT_MS="2000", DNI_TWILIO_AUTH_TOKEN=TWILIO_TOKEN,
                       DNI_TELNYX_API_KEY=TELNYX_API_KEY, DNI_PUBLIC_URL=PUBLIC_URL)
        return (app, *serve(app))

    running = [start_app()]
    app, url, _, _ = running[0]
    twilio = TwilioSimulator(PUBLIC_URL, TWILIO_TOKEN, backends=[url])
    carriers = Carriers(PUBLIC_URL, app, AdminClient(app.test_client(), ADMIN_TOKEN), twilio,
                        None)
    first = buyer(carriers, BUYER_1)
    second = buyer(carriers, BUYER_2)
    number = routed_number(carriers, [{"buyers": [first], "mode": "weighted"},
                                      {"buyers": [second], "mode": "weighted"}], ivr=ZIP_IVR)
    restarts = []

    def restart(request_url):
        if "/route/" not in request_url:
            return  # only between the turns of the plan
        _, _, server, thread = running[-1]
        server.shutdown()
        thread.join(5)
        running.append(start_app())
        twilio.backends = itertools.cycle([running[-1][1]])
        restarts.append(request_url.rsplit("/route/", 1)[1])

    twilio.before_request = restart
    try:
        call = twilio.call(number, Caller(keys=(Keys("94105"),), talk=60), lines={
            BUYER_1: Line.no_answer(), BUYER_2: Line.answers(3)})
    finally:
        _, _, server, thread = running[-1]
        server.shutdown()
        thread.join(5)
        twilio.http.close()

    assert call.errors == []
    # A new app for every turn: the zip, the first offer's end, the second buyer's pick-up
    # and the second offer's end.
    assert [turn.split("/")[1] for turn in restarts] == ["gather", "dial", "whisper", "dial"]
    assert [r["params"]["Digits"] for r in call.requests("/gather/")] == ["94105"]
    assert dialled(call) == [[BUYER_1], [BUYER_2]] and call.bridged.target == BUYER_2
    detail = carriers.call_detail(call.sid)
    assert [(o["buyer"], o["outcome"]) for o in detail["routing"]["offers"]] == [
        (first, "no_answer"), (second, "answered")]
