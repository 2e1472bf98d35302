"""Pay-per-call routing end to end on Twilio, through the carrier simulator (issue 15):
a zip IVR then a tier; a simultaneous tier where the first to answer and accept wins and
a voicemail cannot; failover on busy and no answer; the fallback when nobody is left.

Buyers and plans are made through the public API, the caller dials a pool number with a
routing plan, and the simulator executes the TwiML the app answers, as Twilio would. What
the carrier did (who was rung, who was bridged) is the ground truth asserted first; the
call's routing log in the API second.
"""

from __future__ import annotations

import random

import pytest

from carriers.scripts import SILENCE, Caller, Keys, Line
from factories import numbers

BUYER_1, BUYER_2, BUYER_3 = "+12125550111", "+12125550122", "+12125550133"
FALLBACK = "+12125550199"


def buyer(carriers, number: str, **fields) -> int:
    body = {"name": f"Buyer {number[-3:]}", "timezone": "America/New_York", "revenue": "40.00",
            "targets": [{"number": number, "ring_seconds": 20}],
            "conversion": {"min_duration": 60, "from": "answer"}} | fields
    response = carriers.admin.post("/v1/buyers", json=body)
    assert response.status_code == 201, response.get_json()
    return response.get_json()["id"]


def routed_number(carriers, tiers: list[dict], ivr: list | None = None,
                  fallback: dict | None = None) -> str:
    """A pool whose calls follow a new plan; returns one of its numbers."""
    plan = {"name": "Plan", "tiers": tiers, "fallback": fallback or {"number": FALLBACK}}
    if ivr:
        plan["ivr"] = ivr
    response = carriers.admin.post("/v1/routing-plans", json=plan)
    assert response.status_code == 201, response.get_json()
    carriers.make_pool(routing_plan=response.get_json()["id"])
    return numbers(1)[0]


def dialled(call) -> list[list[str]]:
    """The numbers each <Dial> rang, in order."""
    return [offer_numbers for offer_numbers in
            ([o.target for o in offers] for offers in call.offers)]


ZIP_IVR = [{"type": "say", "text": "Thanks for calling."},
           {"type": "zip", "text": "Please key your ZIP code.", "retries": 1,
            "on_failure": "continue"}]


def test_zip_ivr_then_a_weighted_tier_filtered_on_the_zip_state(carriers):
    ny_only = buyer(carriers, BUYER_1, filters=[{"caller_state": "NY"}])
    anywhere = buyer(carriers, BUYER_2)
    number = routed_number(carriers, [{"buyers": [ny_only, anywhere], "mode": "weighted"}],
                           ivr=ZIP_IVR)

    call = carriers.twilio.call(number, Caller(keys=(Keys("94105"),), talk=120),
                                lines={BUYER_1: Line.answers(2), BUYER_2: Line.answers(3)})

    assert call.errors == []
    assert call.said()[:2] == ["Thanks for calling.", "Please key your ZIP code."]
    assert [r["params"]["Digits"] for r in call.requests("/gather/")] == ["94105"]
    # 94105 is in California: the New York buyer is skipped, never rung.
    assert dialled(call) == [[BUYER_2]]
    assert call.bridged.target == BUYER_2
    detail = carriers.call_detail(call.sid)
    assert (detail["status"], detail["duration"]) == ("completed", 120)


def test_a_wrong_zip_is_asked_again_then_the_call_goes_on(carriers):
    anywhere = buyer(carriers, BUYER_2)
    number = routed_number(carriers, [{"buyers": [anywhere], "mode": "weighted"}], ivr=ZIP_IVR)

    call = carriers.twilio.call(number, Caller(keys=(Keys("12"), SILENCE), talk=30),
                                lines={BUYER_2: Line.answers(2)})

    assert call.errors == []
    assert call.said().count("Please key your ZIP code.") == 2
    assert dialled(call) == [[BUYER_2]] and call.bridged.target == BUYER_2


def test_simultaneous_tier_first_to_answer_and_accept_wins_not_a_voicemail(carriers):
    voicemail = buyer(carriers, BUYER_1, accept=True, whisper="Roofing lead.")
    decliner = buyer(carriers, BUYER_2, accept=True, whisper="Roofing lead.")
    taker = buyer(carriers, BUYER_3, accept=True, whisper="Roofing lead.")
    number = routed_number(carriers, [{"buyers": [voicemail, decliner, taker],
                                       "mode": "simultaneous"}])

    call = carriers.twilio.call(number, Caller(talk=120), lines={
        BUYER_1: Line.voicemail(), BUYER_2: Line.declines(after=2),
        BUYER_3: Line.accepts(after=5)})

    assert call.errors == []
    assert sorted(dialled(call)[0]) == [BUYER_1, BUYER_2, BUYER_3]
    assert call.bridged.target == BUYER_3
    # The voicemail was still silent at the question when buyer 3 pressed 1 (at 8.4 s): its
    # leg is hung up then. Buyer 2 had declined.
    outcomes = {o.target: o.outcome for o in call.offers[0]}
    assert outcomes == {BUYER_1: "canceled", BUYER_2: "declined", BUYER_3: "completed"}
    # Each answering buyer heard the whisper and the accept question.
    assert all("Roofing lead. Press 1 to accept." in call.said(o.leg.sid)
               for o in call.offers[0])
    # The caller talked 120 s; the buyer's leg (Twilio's DialCallDuration, which the call
    # reports) also counts the whisper and the key press.
    assert call.duration == 120
    dial_duration = call.requests("/dial")[-1]["params"]["DialCallDuration"]
    assert dial_duration == "124"
    detail = carriers.call_detail(call.sid)
    assert detail["status"] == "completed" and detail["duration"] == 124


def test_simultaneous_tier_with_only_a_voicemail_fails_over_to_the_fallback(carriers):
    voicemail = buyer(carriers, BUYER_1, accept=True)
    number = routed_number(carriers, [{"buyers": [voicemail], "mode": "simultaneous"}])

    call = carriers.twilio.call(number, Caller(talk=40),
                                lines={BUYER_1: Line.voicemail(), FALLBACK: Line.answers(1)})

    assert call.errors == []
    assert dialled(call) == [[BUYER_1], [FALLBACK]]
    assert call.bridged.target == FALLBACK


def test_failover_on_busy_then_no_answer(carriers):
    first = buyer(carriers, BUYER_1)
    second = buyer(carriers, BUYER_2)
    third = buyer(carriers, BUYER_3)
    number = routed_number(carriers, [{"buyers": [first], "mode": "weighted"},
                                      {"buyers": [second], "mode": "weighted"},
                                      {"buyers": [third], "mode": "weighted"}])

    call = carriers.twilio.call(number, Caller(talk=90), lines={
        BUYER_1: Line.busy(), BUYER_2: Line.no_answer(), BUYER_3: Line.answers(4)})

    assert call.errors == []
    assert dialled(call) == [[BUYER_1], [BUYER_2], [BUYER_3]]
    statuses = [r["params"]["DialCallStatus"] for r in call.requests("/dial")]
    assert statuses == ["busy", "no-answer", "completed"]
    no_answer = call.offers[1][0]
    assert no_answer.ended_at - no_answer.started_at == 20  # rang for the buyer's ring_seconds
    assert call.bridged.target == BUYER_3
    routing = carriers.call_detail(call.sid)["routing"]
    assert [(o["buyer"], o["outcome"]) for o in routing["offers"]] == [
        (first, "busy"), (second, "no_answer"), (third, "answered")]
    assert (routing["buyer"], routing["converted"]) == (third, True)


def test_the_fallback_number_when_nobody_is_left(carriers):
    first = buyer(carriers, BUYER_1)
    second = buyer(carriers, BUYER_2)
    number = routed_number(carriers, [{"buyers": [first, second], "mode": "weighted"}])

    call = carriers.twilio.call(number, Caller(talk=30), lines={
        BUYER_1: Line.busy(), BUYER_2: Line.fails(), FALLBACK: Line.answers(2)})

    assert call.errors == []
    assert sorted(dialled(call)[:2]) == [[BUYER_1], [BUYER_2]]
    assert dialled(call)[2] == [FALLBACK] and call.bridged.target == FALLBACK
    routing = carriers.call_detail(call.sid)["routing"]
    assert sorted((o["buyer"], o["outcome"]) for o in routing["offers"]) == [
        (first, "busy"), (second, "failed")]
    assert (routing["buyer"], routing["outcome"], routing["revenue"]) == (None, "fallback",
                                                                          "0.00")


def test_the_fallback_message_when_there_is_no_fallback_number(carriers):
    first = buyer(carriers, BUYER_1)
    number = routed_number(carriers, [{"buyers": [first], "mode": "weighted"}],
                           fallback={"message": "Sorry, nobody can take your call."})

    call = carriers.twilio.call(number, lines={BUYER_1: Line.no_answer()})

    assert call.errors == []
    assert call.said()[-1] == "Sorry, nobody can take your call."
    assert call.verbs()[-1]["verb"] == "Hangup" and call.bridged is None


def test_a_routed_call_delivered_twice_and_out_of_order_is_one_offer_per_buyer(carriers):
    first = buyer(carriers, BUYER_1)
    second = buyer(carriers, BUYER_2)
    number = routed_number(carriers, [{"buyers": [first], "mode": "weighted"},
                                      {"buyers": [second], "mode": "weighted"}], ivr=ZIP_IVR)
    carriers.twilio.redeliver = carriers.twilio.repeat_twiml = True
    carriers.twilio.shuffle = random.Random(3)

    call = carriers.twilio.call(number, Caller(keys=(Keys("94105"),), talk=90), lines={
        BUYER_1: Line.busy(), BUYER_2: Line.answers(3)})

    assert call.errors == [] and call.differing_answers == []
    assert dialled(call) == [[BUYER_1], [BUYER_2]] and call.bridged.target == BUYER_2


def test_the_call_shows_its_routing(carriers):
    ny_only = buyer(carriers, BUYER_1, filters=[{"caller_state": "NY"}])
    first = buyer(carriers, BUYER_2)
    second = buyer(carriers, BUYER_3)
    number = routed_number(carriers, [{"buyers": [ny_only, first], "mode": "weighted"},
                                      {"buyers": [second], "mode": "weighted"}], ivr=ZIP_IVR)

    call = carriers.twilio.call(number, Caller(keys=(Keys("94105"),), talk=120), lines={
        BUYER_2: Line.busy(), BUYER_3: Line.answers(3)})

    routing = carriers.call_detail(call.sid)["routing"]
    assert routing["ivr"]["zip"] == "94105"
    assert routing["skipped"] == [{"buyer": ny_only, "reason": "filter:caller_state"}]
    assert [(o["buyer"], o["outcome"]) for o in routing["offers"]] == [
        (first, "busy"), (second, "answered")]
    assert (routing["buyer"], routing["converted"], routing["revenue"]) == (second, True,
                                                                             "40.00")


def test_a_buyer_hanging_up_at_once_is_recovered_to_the_next(carriers):
    quitter = buyer(carriers, BUYER_1)
    keeper = buyer(carriers, BUYER_2)
    plan = {"name": "Plan", "tiers": [{"buyers": [quitter], "mode": "weighted"},
                                      {"buyers": [keeper], "mode": "weighted"}],
            "fallback": {"number": FALLBACK}, "recovery": {"min_seconds": 10, "attempts": 1}}
    response = carriers.admin.post("/v1/routing-plans", json=plan)
    assert response.status_code == 201, response.get_json()
    carriers.make_pool(routing_plan=response.get_json()["id"])

    call = carriers.twilio.call(numbers(1)[0], Caller(talk=90), lines={
        BUYER_1: Line.hangs_up(after=2, talk=4), BUYER_2: Line.answers(3)})

    assert call.errors == []
    assert dialled(call) == [[BUYER_1], [BUYER_2]]
    first = call.requests("/dial")[0]["params"]
    assert (first["DialCallStatus"], first["DialCallDuration"]) == ("completed", "4")
    assert [o.target for o in call.bridges] == [BUYER_1, BUYER_2]


def test_the_caller_hanging_up_while_buyers_ring_ends_the_call(carriers):
    first = buyer(carriers, BUYER_1)
    second = buyer(carriers, BUYER_2)
    number = routed_number(carriers, [{"buyers": [first], "mode": "weighted"},
                                      {"buyers": [second], "mode": "weighted"}])

    call = carriers.twilio.call(number, Caller(hangup_at=8), lines={
        BUYER_1: Line.answers(after=15), BUYER_2: Line.answers(1)})

    assert call.errors == []
    assert dialled(call) == [[BUYER_1]]  # never offered on: the caller is gone
    action = call.requests("/dial")[0]
    assert action["params"]["DialCallStatus"] == "canceled"
    assert "<Dial" not in action["body"]
    routing = carriers.call_detail(call.sid)["routing"]
    assert (routing["outcome"], routing["buyer"]) == ("caller_hung_up", None)
    assert [o["outcome"] for o in routing["offers"]] == ["no_answer"]


def test_telnyx_routed_call_runs_the_zip_ivr_and_reaches_the_buyer(carriers):
    anywhere = buyer(carriers, BUYER_2)
    number = routed_number(carriers, [{"buyers": [anywhere], "mode": "weighted"}], ivr=ZIP_IVR)

    call = carriers.telnyx.call(number, Caller(keys=(Keys("94105"),), talk=90),
                                lines={BUYER_2: Line.answers(3)})

    assert carriers.telnyx.errors == []
    names = [c["name"] for c in call.acted()]
    assert names[:2] == ["answer", "speak"] or names[:2] == ["answer", "gather_using_speak"]
    assert "gather_using_speak" in names
    assert [leg.to for leg in call.legs[1:]] == [BUYER_2]
    assert call.legs[1].outcome == "answered" and call.legs[1].bridged_to is call.a_leg


def test_the_call_shows_each_buyer_and_why(carriers):
    voicemail = buyer(carriers, BUYER_1, accept=True, whisper="Roofing lead.")
    decliner = buyer(carriers, BUYER_2, accept=True, whisper="Roofing lead.")
    taker = buyer(carriers, BUYER_3, accept=True, whisper="Roofing lead.")
    number = routed_number(carriers, [{"buyers": [voicemail, decliner, taker],
                                       "mode": "simultaneous"}])

    call = carriers.twilio.call(number, Caller(talk=120), lines={
        BUYER_1: Line.voicemail(), BUYER_2: Line.declines(after=2),
        BUYER_3: Line.accepts(after=5)})

    routing = carriers.call_detail(call.sid)["routing"]
    assert {o["buyer"]: o["outcome"] for o in routing["offers"]} == {
        voicemail: "declined", decliner: "declined", taker: "accepted"}
    assert (routing["buyer"], routing["target"], routing["outcome"]) == (taker, BUYER_3,
                                                                         "connected")
    assert (routing["converted"], routing["revenue"]) == (True, "40.00")


@pytest.mark.slow
@pytest.mark.parametrize("counted_from, converted", [("answer", True), ("accept", False)])
def test_conversion_talk_time_counts_from_the_accept_key(carriers, counted_from, converted):
    """In real time (the app times the whisper itself): the buyer's leg lasts 8 s, of
    which 3.4 s of whisper before the key; 6 s are needed."""
    taker = buyer(carriers, BUYER_1, accept=True, whisper="Roofing lead.",
                  conversion={"min_duration": 6, "from": counted_from})
    number = routed_number(carriers, [{"buyers": [taker], "mode": "simultaneous"}])
    carriers.twilio.real_time = 1.0

    call = carriers.twilio.call(number, Caller(talk=4), lines={BUYER_1: Line.accepts(after=1)})

    assert call.requests("/dial")[0]["params"]["DialCallDuration"] == "8"
    routing = carriers.call_detail(call.sid)["routing"]
    assert (routing["buyer"], routing["converted"]) == (taker, converted)
    assert routing["revenue"] == ("40.00" if converted else "0.00")
