"""Pay-per-call routing end to end on Telnyx Call Control, through its simulator (issue 15,
"Carriers"): recovery when a buyer hangs up at once, the fallback by transfer, and every
event delivered twice and out of order giving one dial per offer and one count per cap."""

from __future__ import annotations

import datetime as dt

import pytest

from carriers.scripts import Caller, Keys, Line
from carriers.test_routing_twilio import (
    BUYER_1,
    BUYER_2,
    BUYER_3,
    FALLBACK,
    ZIP_IVR,
    buyer,
    routed_number,
)
from factories import numbers


def plan_number(carriers, tiers: list[dict], **plan) -> str:
    body = {"name": "Plan", "tiers": tiers, "fallback": {"number": FALLBACK}} | plan
    response = carriers.admin.post("/v1/routing-plans", json=body)
    assert response.status_code == 201, response.get_json()
    carriers.make_pool(routing_plan=response.get_json()["id"])
    return numbers(1)[0]


def dials(call) -> list[str]:
    """The buyers' legs the app dialled (POST /calls), in order."""
    return [c["body"]["to"] for c in call.commands if c["name"] == "dial"]


def usage(carriers, buyer_id: int) -> dict:
    """The buyer's live calls and counts, as Redis holds them."""
    calls = carriers.app.extensions["routing"]
    spec = calls.directory.current().buyers[buyer_id]
    return calls.capacity.usage(buyer_id, spec, dt.datetime.now(dt.UTC))


def test_a_buyer_hanging_up_at_once_is_recovered_to_the_next(carriers):
    quitter = buyer(carriers, BUYER_1)
    keeper = buyer(carriers, BUYER_2)
    number = plan_number(carriers, [{"buyers": [quitter], "mode": "weighted"},
                                    {"buyers": [keeper], "mode": "weighted"}],
                         recovery={"min_seconds": 10, "attempts": 1})

    call = carriers.telnyx.call(number, Caller(talk=90), lines={
        BUYER_1: Line.hangs_up(after=2, talk=4), BUYER_2: Line.answers(3)})

    assert carriers.telnyx.errors == []
    assert dials(call) == [BUYER_1, BUYER_2]
    first, second = call.legs[1:]
    assert first.outcome == "answered" and first.ended_at - first.answered_at == 4
    # The caller stayed (parked by the bridge) and was bridged to the second buyer.
    assert [c["body"]["call_control_id"] for c in call.acted("bridge")] == [
        first.control_id, second.control_id]
    assert second.ended_at - second.answered_at == 90
    routing = carriers.call_detail(call.session_id)["routing"]
    assert [(o["buyer"], o["outcome"]) for o in routing["offers"]] == [
        (quitter, "answered"), (keeper, "answered")]
    assert (routing["buyer"], routing["converted"], routing["outcome"]) == (
        keeper, True, "connected")


def test_a_buyer_who_talks_past_the_recovery_time_is_not_recovered(carriers):
    talker = buyer(carriers, BUYER_1)
    spare = buyer(carriers, BUYER_2)
    number = plan_number(carriers, [{"buyers": [talker], "mode": "weighted"},
                                    {"buyers": [spare], "mode": "weighted"}],
                         recovery={"min_seconds": 10, "attempts": 1})

    call = carriers.telnyx.call(number, Caller(talk=None), lines={
        BUYER_1: Line.hangs_up(after=2, talk=75), BUYER_2: Line.answers(3)})

    assert carriers.telnyx.errors == []
    assert dials(call) == [BUYER_1]
    assert call.a_leg.ended_at == call.legs[1].ended_at  # hung up then, not left parked
    assert call.acted("hangup")[-1]["leg"] == call.a_leg.control_id
    routing = carriers.call_detail(call.session_id)["routing"]
    assert (routing["buyer"], routing["converted"]) == (talker, True)


def test_nobody_left_the_caller_is_transferred_to_the_fallback(carriers):
    first = buyer(carriers, BUYER_1)
    second = buyer(carriers, BUYER_2)
    number = plan_number(carriers, [{"buyers": [first], "mode": "weighted"},
                                    {"buyers": [second], "mode": "weighted"}])

    call = carriers.telnyx.call(number, Caller(talk=30), lines={
        BUYER_1: Line.busy(), BUYER_2: Line.no_answer(), FALLBACK: Line.answers(2)})

    assert carriers.telnyx.errors == []
    assert dials(call) == [BUYER_1, BUYER_2]
    [transfer] = call.acted("transfer")
    assert transfer["body"]["to"] == FALLBACK
    fallback_leg = call.legs[-1]
    assert fallback_leg.to == FALLBACK and fallback_leg.bridged_to is call.a_leg
    routing = carriers.call_detail(call.session_id)["routing"]
    assert [(o["buyer"], o["outcome"]) for o in routing["offers"]] == [
        (first, "busy"), (second, "no_answer")]
    assert (routing["buyer"], routing["outcome"]) == (None, "fallback")


def test_the_fallback_message_then_a_hang_up(carriers):
    first = buyer(carriers, BUYER_1)
    number = routed_number(carriers, [{"buyers": [first], "mode": "weighted"}],
                           fallback={"message": "Sorry, nobody can take your call."})

    call = carriers.telnyx.call(number, Caller(talk=30), lines={BUYER_1: Line.fails()})

    assert carriers.telnyx.errors == []
    spoken = [c["body"]["payload"] for c in call.acted("speak")]
    assert spoken == ["Sorry, nobody can take your call."]
    hangups = call.acted("hangup")
    assert hangups and hangups[-1]["leg"] == call.a_leg.control_id


def test_every_event_twice_and_replayed_out_of_order_dials_once_per_offer_counts_once(
        carriers):
    first = buyer(carriers, BUYER_1, caps={"calls": {"day": 10}})
    second = buyer(carriers, BUYER_2, caps={"conversions": {"day": 10}})
    third = buyer(carriers, BUYER_3, accept=True, whisper="Roofing lead.")
    number = routed_number(carriers, [{"buyers": [first], "mode": "weighted"},
                                      {"buyers": [second, third], "mode": "simultaneous"}],
                           ivr=ZIP_IVR)
    carriers.telnyx.redeliver = True

    call = carriers.telnyx.call(number, Caller(keys=(Keys("94105"),), talk=90), lines={
        BUYER_1: Line.busy(), BUYER_2: Line.answers(4), BUYER_3: Line.declines(2)})
    carriers.telnyx.replay(call, seed=5, times=2)

    assert carriers.telnyx.errors == []
    assert dials(call)[0] == BUYER_1 and sorted(dials(call)[1:]) == [BUYER_2, BUYER_3]
    # Every command the app sent twice carried the same command_id: acted on once.
    acted = [(c["leg"], c["body"].get("command_id")) for c in call.acted()]
    assert len(acted) == len(set(acted))
    assert len(call.acted("bridge")) == 1 and len(call.acted("gather_using_speak")) == 2
    winner = next(leg for leg in call.legs if leg.to == BUYER_2)
    assert winner.bridged_to is call.a_leg and winner.ended_at - winner.answered_at >= 90
    # One count per cap: each buyer offered once, one connection, one conversion.
    today = {b: usage(carriers, b)["counts"]["day"] for b in (first, second, third)}
    assert [today[b]["calls"] for b in (first, second, third)] == [1, 1, 1]
    assert today[second]["conversions"] == 1 and today[second]["connections"] == 1
    assert today[third]["conversions"] == 0 and today[first]["connections"] == 0
    assert [usage(carriers, b)["live"] for b in (first, second, third)] == [0, 0, 0]
    routing = carriers.call_detail(call.session_id)["routing"]
    assert {o["buyer"]: o["outcome"] for o in routing["offers"]} == {
        first: "busy", second: "answered", third: "declined"}
    assert (routing["buyer"], routing["converted"], routing["revenue"]) == (second, True,
                                                                             "40.00")


@pytest.mark.parametrize("talk, converted", [(45, False), (75, True)])
def test_talk_time_follows_the_carriers_clock(carriers, talk, converted):
    """Conversion needs 60 s of talk: the simulator's events say how long the buyer talked,
    however fast they arrive (virtual seconds, never slept)."""
    taker = buyer(carriers, BUYER_1)
    number = routed_number(carriers, [{"buyers": [taker], "mode": "weighted"}])

    call = carriers.telnyx.call(number, Caller(talk=talk), lines={BUYER_1: Line.answers(2)})

    assert carriers.telnyx.errors == []
    assert call.legs[1].ended_at - call.legs[1].answered_at == talk
    routing = carriers.call_detail(call.session_id)["routing"]
    assert (routing["buyer"], routing["converted"]) == (taker, converted)
    assert routing["revenue"] == ("40.00" if converted else "0.00")


def test_a_routed_call_across_two_servers_each_event_twice(two_servers):
    first = buyer(two_servers, BUYER_1)
    second = buyer(two_servers, BUYER_2)
    number = routed_number(two_servers, [{"buyers": [first], "mode": "weighted"},
                                         {"buyers": [second], "mode": "weighted"}], ivr=ZIP_IVR)
    two_servers.telnyx.redeliver = True

    call = two_servers.telnyx.call(number, Caller(keys=(Keys("94105"),), talk=90), lines={
        BUYER_1: Line.busy(), BUYER_2: Line.answers(3)})
    two_servers.telnyx.replay(call, seed=7)

    assert two_servers.telnyx.errors == []
    assert dials(call) == [BUYER_1, BUYER_2]
    assert [leg.to for leg in call.legs if leg.bridged_to is call.a_leg] == [BUYER_2]
    routing = two_servers.call_detail(call.session_id)["routing"]
    assert routing["ivr"]["zip"] == "94105"
    assert [(o["buyer"], o["outcome"]) for o in routing["offers"]] == [
        (first, "busy"), (second, "answered")]
    assert (routing["buyer"], routing["converted"]) == (second, True)
