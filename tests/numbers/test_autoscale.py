"""Autoscale decisions on a virtual clock: a pool under a traffic ramp grows to its accuracy
target and shrinks before the bill after the ramp, within ``max`` and the daily limit.

The traffic model here is Erlang B (``attribution.pool_health.erlang_b``): a visitor who
finds every number leased gets the fallback, so the expected accuracy at a size is the
share of visitors served. Production hands ``decide`` the pool health accuracy model
instead; the decisions are the same function of it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools

import pytest

from attribution.numbers.autoscale import (
    Decision,
    Policy,
    PolicyError,
    PoolState,
    decide,
    trim_floor,
)
from attribution.pool_health import erlang_b

START = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
HOLD_HOURS = 0.25  # a visit and its lease's tail


def arrivals_per_hour(at: dt.datetime) -> float:
    """60 an hour, ramping up to 240 from day 5 to day 10, down again by day 16."""
    day = (at - START).total_seconds() / 86400
    if day < 5 or day >= 16:
        return 60.0
    if day < 10:
        return 60 + 180 * (day - 5) / 5
    if day < 13:
        return 240.0
    return 240 - 180 * (day - 13) / 3


def play(policy: Policy, days: int = 30, size: int = 20):
    """Decide every virtual hour and apply what ``apply`` mode applies; the log of it."""
    bought_on: dict[dt.date, int] = {}
    releasable, last_change, log = 0, None, []
    now = START
    while now < START + dt.timedelta(days=days):
        load = arrivals_per_hour(now) * HOLD_HOURS
        visitors = round(arrivals_per_hour(now))
        refused = round(visitors * erlang_b(size, load))
        state = PoolState(size, releasable, visitors, refused, bought_on.get(now.date(), 0),
                          last_change, accuracy=lambda n, load=load: 1 - erlang_b(n, load))
        decision = decide(policy, state, now)
        log.append((now, size, decision))
        if policy.mode == "apply" and decision.action != "hold":
            if decision.action == "grow":
                size += decision.count
                releasable += decision.count
                bought_on[now.date()] = bought_on.get(now.date(), 0) + decision.count
            else:
                size -= decision.count
                releasable -= decision.count
            last_change = now
        now += dt.timedelta(hours=1)
    return log, bought_on


POLICY = Policy(enabled=True, mode="apply", min=5, max=70, accuracy_target=0.95, step=5,
                cooldown_minutes=60, trim_day=28, daily_limit=25)


def test_a_ramp_grows_the_pool_to_its_target_and_the_bill_trims_it_back():
    log, bought_on = play(POLICY)
    sizes = {now: size for now, size, _ in log}
    peak_day = START + dt.timedelta(days=12)
    peak_load = arrivals_per_hour(peak_day) * HOLD_HOURS
    peak_size = sizes[peak_day]
    # At the peak the pool meets its target (and not by wasting numbers: one fewer misses).
    assert 1 - erlang_b(peak_size, peak_load) >= 0.95
    assert 1 - erlang_b(peak_size - POLICY.step - 1, peak_load) < 0.95
    assert max(sizes.values()) <= POLICY.max
    assert max(bought_on.values()) <= POLICY.daily_limit

    grows = [(now, d) for now, _, d in log if d.action == "grow"]
    trims = [(now, d) for now, _, d in log if d.action == "trim"]
    assert grows and trims
    # Growth follows the ramp; trims come only in the three days before the 28th.
    assert all(now.day in (25, 26, 27) for now, _ in trims)
    assert all(d.count <= POLICY.step for _, d in grows + trims)
    final = log[-1][1]
    base_load = 60 * HOLD_HOURS
    assert final < peak_size
    assert 1 - erlang_b(final, base_load) >= 0.95  # trimmed, still on target
    # Trimmed as far as the target and its margin allow.
    assert 1 - erlang_b(final, base_load) >= trim_floor(POLICY)
    assert 1 - erlang_b(final - 1, base_load) < trim_floor(POLICY)
    assert any("under the target 95.0%" in d.reason for _, d in grows)
    assert all("days before billing" in d.reason for _, d in trims)


def test_max_and_the_daily_limit_hold_back_growth_and_say_so():
    tight = Policy(**{**POLICY.__dict__, "max": 40, "daily_limit": 8})
    log, bought_on = play(tight)
    assert max(size for _, size, _ in log) == 40
    assert max(bought_on.values()) <= 8
    reasons = [d.reason for _, _, d in log if d.action == "hold"]
    assert any("at its maximum 40" in r for r in reasons)
    assert any("daily limit 8" in r for r in reasons)


def test_propose_mode_only_shows_what_it_would_do():
    log, bought_on = play(Policy(**{**POLICY.__dict__, "mode": "propose"}), days=12)
    assert {size for _, size, _ in log} == {20}
    assert bought_on == {}
    assert any(d.action == "grow" for _, _, d in log)


def test_cooldown_spaces_changes():
    slow = Policy(**{**POLICY.__dict__, "cooldown_minutes": 6 * 60})
    log, _ = play(slow, days=12)
    changes = [now for now, _, d in log if d.action != "hold"]
    assert all(b - a >= dt.timedelta(hours=6) for a, b in itertools.pairwise(changes))
    assert any("cooling down" in d.reason for _, _, d in log)


def test_more_refusals_than_the_target_allows_grow_the_pool():
    """The model says 99%, but 10 of 100 visitors were refused: believe the refusals."""
    state = PoolState(10, 0, visitors=100, refused=10, bought_today=0, last_change=None,
                      accuracy=lambda n: 0.99)
    decision = decide(POLICY, state, START)
    assert (decision.action, decision.count) == ("grow", 1)
    assert "10 of 100 visitors got the fallback" in decision.reason
    within = PoolState(10, 0, visitors=100, refused=4, bought_today=0, last_change=None,
                       accuracy=lambda n: 0.99)
    assert decide(POLICY, within, START).action == "hold"  # 4% refused is within 95%


def test_only_bought_numbers_are_trimmed_and_never_below_min():
    at = dt.datetime(2026, 12, 26, tzinfo=dt.UTC)
    state = PoolState(12, 2, 100, 0, 0, None, accuracy=lambda n: 1.0)
    assert decide(POLICY, state, at) == Decision("trim", 2, decide(POLICY, state, at).reason,
                                                 1.0)
    floor = Policy(**{**POLICY.__dict__, "min": 11})
    assert decide(floor, state, at).count == 1
    assert decide(POLICY, state, dt.datetime(2026, 12, 28, tzinfo=dt.UTC)).action == "hold"


@pytest.mark.parametrize(("raw", "field"), [
    ({"mode": "auto"}, "mode"), ({"min": 9, "max": 5}, "min"), ({"max": 0}, "max"),
    ({"accuracy_target": 1.5}, "accuracy_target"), ({"step": 0}, "step"),
    ({"trim_day": 31}, "trim_day"), ({"cooldown_minutes": -1}, "cooldown_minutes"),
    ({"enabled": "yes"}, "enabled"), ({"daily_limit": True}, "daily_limit"),
    ({"budget": 3}, "budget"),
])
def test_bad_policies_name_the_setting(raw, field):
    with pytest.raises(PolicyError) as caught:
        Policy.parse(raw)
    assert field in caught.value.fields


def test_a_policy_parses_from_its_json_form():
    policy = Policy.parse({"enabled": True, "mode": "apply", "min": 5, "max": 60,
                           "accuracy_target": 0.9, "step": 3, "cooldown_minutes": 30,
                           "trim_day": 1})
    assert (policy.enabled, policy.mode, policy.max, policy.trim_day) == (True, "apply", 60, 1)


@pytest.mark.parametrize(("raw", "field"), [
    ({"account": True}, "account"), ({"account": 0}, "account"), ({"account": ""}, "account"),
    ({"area_code": "４１５"}, "area_code"), ({"area_code": "4"}, "area_code"),
])
def test_where_numbers_are_bought_is_checked(raw, field):
    with pytest.raises(PolicyError) as caught:
        Policy.parse(raw)
    assert set(caught.value.fields) == {field}


def test_growth_that_cannot_raise_accuracy_holds_and_says_why():
    """Calls past the attribution window cap every size: buying more would not help."""
    capped = PoolState(30, 0, visitors=100, refused=0, bought_today=0, last_change=None,
                       accuracy=lambda n: min(0.8, 0.5 + n / 100))
    decision = decide(POLICY, capped, START)
    assert decision.action == "hold" and "would not help" in decision.reason
    # Below the cap more numbers still help, though the target is out of reach: grow.
    assert decide(POLICY, dataclasses.replace(capped, size=20), START).action == "grow"
    # The model's own smallest size for the target is used when it is given.
    asked = []
    model = PoolState(20, 0, 100, 0, 0, None, accuracy=lambda n: 0.9 if n < 27 else 0.96,
                      smallest=lambda target: asked.append(target) or 27)
    assert decide(POLICY, model, START).count == 5  # 7 needed, one step of 5
    assert asked == [0.95]
