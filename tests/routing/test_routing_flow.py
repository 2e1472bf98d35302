"""The plan's unfolding (routing/flow.py), choosing (routing/choose.py), eligibility and
money, without a carrier: the IVR with retries, tiers, weights, simultaneous offers,
accept and decline, failover, recovery and the fallback."""

from __future__ import annotations

import datetime as dt
import random
from collections import Counter

import pytest

from routing import flow
from routing.capacity import Reservation
from routing.choose import weighted_order
from routing.eligibility import CallFacts, is_open, static_refusal, validate_filters
from routing.flow import Ask, Context, Forward, Hangup, Offer, Say

NOW = dt.datetime(2026, 3, 11, 17, 0, tzinfo=dt.UTC)  # 13:00 in New York, a Wednesday


def buyer(number: str, **fields) -> dict:
    return {"name": number, "timezone": "America/New_York", "revenue": "40.00",
            "targets": [{"number": number, "ring_seconds": 20}],
            "conversion": {"min_duration": 90, "from": "answer"}} | fields


BUYERS = {1: buyer("+12125550101"), 2: buyer("+12125550102"), 3: buyer("+12125550103")}
PLAN = {"ivr": [{"type": "say", "text": "Thanks for calling."},
                {"type": "zip", "text": "Your ZIP code?", "retries": 1,
                 "on_failure": "continue"}],
        "tiers": [{"buyers": [1], "mode": "weighted"},
                  {"buyers": [2, 3], "mode": "simultaneous"}],
        "fallback": {"message": "Nobody is free."}}


class Redis:
    """Stands in for routing.capacity: who is full, and every release."""

    def __init__(self, full: dict[int, str] | None = None):
        self.full = full or {}
        self.held: set[int] = set()
        self.released: list[tuple] = []

    def reserve(self, ids):
        out = []
        for b in ids:
            if b in self.full:
                out.append(Reservation(b, reason=self.full[b]))
            else:
                self.held.add(b)
                out.append(Reservation(b, target=0))
        return out

    def release(self, buyer_id, *, connected, converted):
        self.held.discard(buyer_id)
        self.released.append((buyer_id, connected, converted))
        return True


def context(redis: Redis, plan=PLAN, buyers=BUYERS, now=NOW) -> Context:
    return Context(plan, buyers, now, redis.reserve, redis.release, random.Random(7))


CALLER = CallFacts(caller="+14155550100")


def start(redis: Redis, plan=PLAN, facts=CALLER):
    state = flow.new_state(9, facts, NOW)
    return state, flow.begin(context(redis, plan), state)


def test_the_ivr_says_then_asks_and_retries_then_offers_the_first_tier():
    redis = Redis()
    state, verbs = start(redis)
    assert verbs == [Say("Thanks for calling."), Ask(1, "Your ZIP code?", 5)]
    assert flow.keyed(context(redis), state, 1, "12") == [Ask(1, "Your ZIP code?", 5)]
    verbs = flow.keyed(context(redis), state, 1, "94105#")
    assert isinstance(verbs[0], Offer) and [leg.buyer for leg in verbs[0].legs] == [1]
    assert state["ivr"]["zip"] == "94105" and flow.facts_of(state).caller_state == "CA"
    # A redelivered answer to a step already passed does nothing.
    assert flow.keyed(context(redis), state, 1, "94105") == []


def test_no_answer_fails_over_to_a_simultaneous_tier_and_the_first_to_answer_wins():
    redis = Redis()
    state, _ = start(redis)
    flow.keyed(context(redis), state, 1, "94105")
    verbs = flow.dial_ended(context(redis), state, "no-answer", None, caller_gone=False)
    assert [leg.buyer for leg in verbs[0].legs] == [2, 3] and verbs[0].ring_seconds == 20
    assert flow.buyer_answered(context(redis), state, 3) == []  # no whisper: bridged
    assert flow.buyer_answered(context(redis), state, 2) == [Hangup()]  # too late
    later = context(redis, now=NOW + dt.timedelta(minutes=3))
    assert flow.dial_ended(later, state, "completed", 120, caller_gone=True) == [Hangup()]
    assert state["buyer"] == 3 and state["converted"] and flow.revenue_of(state) == 40
    assert [(o["buyer"], o["outcome"]) for o in state["offers"]] == [
        (1, "no_answer"), (2, "no_answer"), (3, "answered")]
    assert redis.released == [(1, False, False), (2, False, False), (3, True, True)]
    assert state["outcome"] == "connected"


def test_accept_a_voicemail_never_wins_and_a_decline_goes_on():
    buyers = {1: buyer("+12125550101", accept=True, whisper="Roofing lead."),
              2: buyer("+12125550102")}
    plan = {"tiers": [{"buyers": [1, 2]}], "fallback": {"number": "+12125550199"}}
    redis = Redis()
    ctx = context(redis, plan, buyers)
    state = flow.new_state(9, CallFacts(), NOW)
    redis_order = flow.begin(ctx, state)[0].legs[0].buyer
    if redis_order != 1:  # the weighted draw put buyer 2 first: make it not answer
        flow.dial_ended(ctx, state, "no-answer", None, caller_gone=False)
    assert flow.buyer_answered(ctx, state, 1) == [Ask(-1, "Roofing lead. Press 1 to accept.", 1)]
    assert flow.buyer_decided(ctx, state, 1, "") == [Hangup()]  # a voicemail: silence
    verbs = flow.dial_ended(ctx, state, "completed", 30, caller_gone=False)
    entry = next(o for o in state["offers"] if o["buyer"] == 1)
    assert entry["outcome"] == "declined" and (1, False, False) in redis.released
    if redis_order == 1:
        assert [leg.buyer for leg in verbs[0].legs] == [2]
        verbs = flow.dial_ended(ctx, state, "busy", None, caller_gone=False)
    assert verbs == [Forward("+12125550199")] and state["outcome"] == "fallback"


def test_accept_conversion_counts_from_the_key_press():
    buyers = {1: buyer("+12125550101", accept=True,
                       conversion={"min_duration": 60, "from": "accept"})}
    plan = {"tiers": [{"buyers": [1]}], "fallback": {}}
    redis = Redis()
    state = flow.new_state(9, CallFacts(), NOW)
    flow.begin(context(redis, plan, buyers), state)
    flow.buyer_answered(context(redis, plan, buyers, NOW + dt.timedelta(seconds=5)), state, 1)
    flow.buyer_decided(context(redis, plan, buyers, NOW + dt.timedelta(seconds=15)), state, 1,
                       "1")
    # 65 s from answer, but only 55 s from the accept: not a conversion.
    flow.dial_ended(context(redis, plan, buyers), state, "completed", 65, caller_gone=True)
    assert state["buyer"] == 1 and not state["converted"] and redis.released == [(1, True, False)]


def test_a_decline_in_a_simultaneous_offer_rings_the_others_again_once():
    """Twilio ends the other legs when one answers: after that buyer declines, the buyers
    that never answered are rung again; a second round of silence goes on."""
    buyers = {1: buyer("+12125550101", accept=True), 2: buyer("+12125550102"),
              3: buyer("+12125550103")}
    plan = {"tiers": [{"buyers": [1, 2], "mode": "simultaneous"}, {"buyers": [3]}],
            "fallback": {}}
    redis = Redis()
    ctx = context(redis, plan, buyers)
    state = flow.new_state(9, CallFacts(), NOW)
    flow.begin(ctx, state)
    flow.buyer_answered(ctx, state, 1)
    flow.buyer_decided(ctx, state, 1, "2")
    again = flow.dial_ended(ctx, state, "completed", 3, caller_gone=False)
    assert [leg.buyer for leg in again[0].legs] == [2]
    nobody = flow.dial_ended(ctx, state, "no-answer", None, caller_gone=False)
    assert [leg.buyer for leg in nobody[0].legs] == [3]
    assert [(o["buyer"], o["outcome"]) for o in state["offers"]] == [
        (1, "declined"), (2, "no_answer"), (2, "no_answer"), (3, None)]


def test_recovery_offers_the_caller_again_when_the_buyer_hangs_up_early():
    plan = {"tiers": [{"buyers": [1, 2, 3]}], "fallback": {},
            "recovery": {"min_seconds": 20, "attempts": 1}}
    redis = Redis()
    ctx = context(redis, plan)
    state = flow.new_state(9, CallFacts(), NOW)
    first = flow.begin(ctx, state)[0].legs[0].buyer
    flow.buyer_answered(ctx, state, first)
    second = flow.dial_ended(ctx, state, "completed", 5, caller_gone=False)
    assert isinstance(second[0], Offer) and second[0].legs[0].buyer != first
    flow.buyer_answered(ctx, state, second[0].legs[0].buyer)
    # Attempts used up: a second early hang-up ends the call.
    assert flow.dial_ended(ctx, state, "completed", 5, caller_gone=False) == [Hangup()]
    assert state["recoveries"] == 1


def test_skipped_buyers_say_why_and_nobody_left_means_the_message_and_a_hang_up():
    buyers = {1: buyer("+12125550101", paused=True),
              2: buyer("+12125550102", filters=validate_filters([{"caller_state": "NY"}])),
              3: buyer("+12125550103")}
    plan = {"tiers": [{"buyers": [1, 2, 3]}], "fallback": {"message": "Nobody is free."}}
    redis = Redis(full={3: "cap:day:conversions"})
    state = flow.new_state(9, CallFacts(caller_state="CA"), NOW)
    assert flow.begin(context(redis, plan, buyers), state) == [Say("Nobody is free."), Hangup()]
    assert sorted(state["skipped"], key=lambda s: s["buyer"]) == [
        {"buyer": 1, "reason": "paused"}, {"buyer": 2, "reason": "filter:caller_state"},
        {"buyer": 3, "reason": "cap:day:conversions"}]


def test_a_press_challenge_without_the_key_hangs_up():
    plan = {"ivr": [{"type": "press", "text": "Press 1.", "digit": "1", "retries": 0}],
            "tiers": [{"buyers": [1]}], "fallback": {}}
    redis = Redis()
    state, verbs = start(redis, plan)
    assert verbs == [Ask(0, "Press 1.", 1)]
    assert flow.keyed(context(redis, plan), state, 0, "") == [Hangup()]
    assert state["outcome"] == "challenge_failed" and not redis.held


def test_a_menu_sets_a_tag_that_filters_buyers():
    buyers = {1: buyer("+12125550101", filters=validate_filters([{"coverage": "medicare"}])),
              2: buyer("+12125550102")}
    plan = {"ivr": [{"type": "menu", "text": "1 Medicare, 2 other.", "tag": "coverage",
                     "options": {"1": "medicare", "2": "other"}, "retries": 1}],
            "tiers": [{"buyers": [1]}, {"buyers": [2]}], "fallback": {}}
    redis = Redis()
    state, _ = start(redis, plan)
    verbs = flow.keyed(context(redis, plan, buyers), state, 0, "2")
    assert verbs[0].legs[0].buyer == 2 and state["ivr"]["tags"] == {"coverage": "other"}
    assert state["skipped"] == [{"buyer": 1, "reason": "filter:coverage"}]


def test_weighted_order_follows_the_weights():
    rng = random.Random(1)
    firsts = Counter(weighted_order({1: 1, 2: 3}, rng)[0] for _ in range(4000))
    assert 0.70 < firsts[2] / 4000 < 0.80


def test_hours_in_the_buyers_zone_including_overnight():
    hours = [{"days": [2], "start": "09:00", "end": "17:00"},
             {"days": [4], "start": "22:00", "end": "02:00"}]
    assert is_open(hours, "America/New_York", NOW)  # Wednesday 13:00 in New York
    # 08:30 in Los Angeles (UTC-7 since March 8): not yet open there.
    assert not is_open(hours, "America/Los_Angeles",
                       dt.datetime(2026, 3, 11, 15, 30, tzinfo=dt.UTC))
    friday_night = dt.datetime(2026, 3, 14, 4, 30, tzinfo=dt.UTC)  # Saturday 00:30 EDT
    saturday_2am = dt.datetime(2026, 3, 14, 6, 0, tzinfo=dt.UTC)  # Saturday 02:00 EDT
    assert is_open(hours, "America/New_York", friday_night)
    assert not is_open(hours, "America/New_York", saturday_2am)
    assert static_refusal(buyer("+1", hours=hours), CallFacts(),
                          dt.datetime(2026, 3, 11, 23, 0, tzinfo=dt.UTC)) == "closed"


@pytest.mark.parametrize("steps, message", [
    ([{"type": "zip", "text": "ZIP?", "on_failure": "explode"}], "on_failure"),
    ([{"type": "menu", "text": "?", "tag": "Bad Tag", "options": {"1": "x"}}], "tag"),
    ([{"type": "press", "text": "?", "digit": "12"}], "digit"),
    ([{"type": "say"}], "text"),
    ([{"type": "dance", "text": "?"}], "type"),
])
def test_ivr_validation_names_the_problem(steps, message):
    with pytest.raises(ValueError, match=message):
        flow.validate_ivr(steps)
