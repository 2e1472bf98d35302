"""Which buyers a routed call may reach, end to end on Twilio through the simulator:
concurrency held while a call is connected, a day cap, open hours, paused buyers, duplicate
callers, the caller challenge (press 1) and a menu tag that buyers filter on."""

from __future__ import annotations

import datetime as dt
import zoneinfo

from carriers.scripts import SILENCE, Caller, Keys, Line
from carriers.test_routing_twilio import (
    BUYER_1,
    BUYER_2,
    FALLBACK,
    buyer,
    dialled,
    routed_number,
)
from carriers.twilio_sim import TwilioSimulator
from factories import TWILIO_TOKEN

LINES = {BUYER_1: Line.answers(2), BUYER_2: Line.answers(2), FALLBACK: Line.answers(2)}


def two_tiers(carriers, first_fields: dict, ivr: list | None = None) -> str:
    """Buyer 1 (with ``first_fields``) first, then buyer 2; the fallback after them."""
    first = buyer(carriers, BUYER_1, **first_fields)
    second = buyer(carriers, BUYER_2)
    return routed_number(carriers, [{"buyers": [first], "mode": "weighted"},
                                    {"buyers": [second], "mode": "weighted"}], ivr=ivr)


def test_a_buyer_at_its_concurrency_is_skipped_while_its_call_is_connected(carriers):
    number = two_tiers(carriers, {"caps": {"concurrency": 1}})
    during = []

    def second_call(call, offer):
        if not during:  # only from the first call's bridge
            other = TwilioSimulator(carriers.url, TWILIO_TOKEN)
            during.append(other.call(number, Caller("+14155550123", talk=30), lines=LINES))

    carriers.twilio.on_bridge = second_call
    first = carriers.twilio.call(number, Caller(talk=60), lines=LINES)

    assert first.errors == [] and first.bridged.target == BUYER_1
    [second] = during
    assert second.errors == [] and dialled(second) == [[BUYER_2]]
    # Once the first call has ended, buyer 1 takes calls again.
    third = TwilioSimulator(carriers.url, TWILIO_TOKEN).call(number, Caller("+14155550124"),
                                                             lines=LINES)
    assert dialled(third) == [[BUYER_1]]


def test_a_day_cap_on_calls(carriers):
    number = two_tiers(carriers, {"caps": {"calls": {"day": 1}}})

    first = carriers.twilio.call(number, Caller("+14155550121", talk=30), lines=LINES)
    second = carriers.twilio.call(number, Caller("+14155550122", talk=30), lines=LINES)

    assert dialled(first) == [[BUYER_1]] and dialled(second) == [[BUYER_2]]


def test_a_closed_buyer_and_a_paused_one_are_not_rung(carriers):
    today = dt.datetime.now(zoneinfo.ZoneInfo("America/New_York")).weekday()
    closed = buyer(carriers, BUYER_1, hours=[{"days": [(today + 3) % 7], "start": "09:00",
                                              "end": "17:00"}])
    paused = buyer(carriers, BUYER_2, paused=True)
    number = routed_number(carriers, [{"buyers": [closed, paused], "mode": "simultaneous"}])

    call = carriers.twilio.call(number, Caller(talk=30), lines=LINES)

    assert call.errors == [] and dialled(call) == [[FALLBACK]]


def test_a_duplicate_caller_goes_to_another_buyer(carriers):
    number = two_tiers(carriers, {"duplicate": {"days": 30, "after": "connected"}})

    first = carriers.twilio.call(number, Caller(talk=30), lines=LINES)
    again = carriers.twilio.call(number, Caller(talk=30), lines=LINES)
    other = carriers.twilio.call(number, Caller("+14155550199", talk=30), lines=LINES)

    assert dialled(first) == [[BUYER_1]]
    assert dialled(again) == [[BUYER_2]]
    assert dialled(other) == [[BUYER_1]]


PRESS = [{"type": "press", "text": "Press 1 to be connected.", "digit": "1", "retries": 1}]


def test_the_caller_challenge_no_key_no_call(carriers):
    number = two_tiers(carriers, {}, ivr=PRESS)

    silent = carriers.twilio.call(number, Caller(keys=(SILENCE, SILENCE)), lines=LINES)
    pressed = carriers.twilio.call(number, Caller(keys=(Keys("1"),), talk=30), lines=LINES)

    assert silent.errors == [] and silent.offers == []
    assert silent.said().count("Press 1 to be connected.") == 2
    assert silent.verbs()[-1]["verb"] == "Hangup"
    assert dialled(pressed) == [[BUYER_1]]


MENU = [{"type": "menu", "text": "Press 1 for roofing, 2 for solar.", "tag": "vertical",
         "options": {"1": "roofing", "2": "solar"}, "retries": 1}]


def test_a_menu_tag_that_buyers_filter_on(carriers):
    number = two_tiers(carriers, {"filters": [{"vertical": "solar"}]}, ivr=MENU)

    roofing = carriers.twilio.call(number, Caller(keys=(Keys("1"),), talk=30), lines=LINES)
    solar = carriers.twilio.call(number, Caller("+14155550131", keys=(Keys("2"),), talk=30),
                                 lines=LINES)

    assert dialled(roofing) == [[BUYER_2]]
    assert dialled(solar) == [[BUYER_1]]
