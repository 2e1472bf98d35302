"""One call's webhooks landing on two app servers in turn (one public URL, a load balancer
in front): today's forwarding on both carriers, and a routed call with an IVR and failover."""

from __future__ import annotations

import random

from carriers.scripts import Caller, Keys, Line
from carriers.test_routing_twilio import BUYER_1, BUYER_2, ZIP_IVR, buyer, dialled, routed_number
from carriers.test_today_flows import DESTINATION, assert_matched, leased_number, stored_calls


def test_twilio_forwarding_across_two_servers(two_servers):
    pool = two_servers.make_pool(record_calls=True)
    number, session_id = leased_number(two_servers, pool)

    call = two_servers.twilio.call(number, Caller(talk=75), lines={DESTINATION: Line.answers(4)})

    assert call.errors == [] and call.bridged.target == DESTINATION
    # The app names its public URL in the TwiML; the simulator signed that URL.
    assert call.requests("/dial")[0]["url"] == "https://dni.example/webhooks/twilio/dial"
    detail = two_servers.call_detail(call.sid)
    assert (detail["status"], detail["duration"]) == ("completed", 75)
    assert detail["recording_url"] == call.recordings[0]["RecordingUrl"]
    assert_matched(detail, session_id)


def test_telnyx_forwarding_across_two_servers_twice_and_out_of_order(two_servers):
    pool = two_servers.make_pool()
    number, session_id = leased_number(two_servers, pool)
    two_servers.telnyx.redeliver, two_servers.telnyx.shuffle = True, random.Random(2)

    call = two_servers.telnyx.call(number, Caller(talk=75), lines={DESTINATION: Line.answers(4)})
    two_servers.telnyx.replay(call, seed=4)

    assert two_servers.telnyx.errors == []
    assert [c["name"] for c in call.commands] == ["transfer"]
    assert stored_calls(two_servers) == 1
    assert_matched(two_servers.call_detail(call.session_id), session_id)


def test_routed_call_across_two_servers(two_servers):
    first = buyer(two_servers, BUYER_1)
    second = buyer(two_servers, BUYER_2)
    number = routed_number(two_servers, [{"buyers": [first], "mode": "weighted"},
                                         {"buyers": [second], "mode": "weighted"}], ivr=ZIP_IVR)
    two_servers.twilio.redeliver = True

    call = two_servers.twilio.call(number, Caller(keys=(Keys("94105"),), talk=90), lines={
        BUYER_1: Line.busy(), BUYER_2: Line.answers(3)})

    assert call.errors == []
    servers = {r["sent_to"].split("/webhooks/")[0] for r in call.requests()}
    assert len(servers) == 2  # every turn of the call reached both servers
    assert [r["params"]["Digits"] for r in call.requests("/gather/")] == ["94105"]
    assert dialled(call) == [[BUYER_1], [BUYER_2]] and call.bridged.target == BUYER_2
    assert two_servers.call_detail(call.sid)["status"] == "completed"
