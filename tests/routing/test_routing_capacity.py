"""Buyers' caps and live calls in Redis (routing/lua/reserve.lua, release.lua): every cap in
one script, under racing calls, with day caps that reset at the buyer's own midnight."""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest
import redis as redis_lib

from routing.capacity import Capacity, buckets

NOW = dt.datetime(2026, 3, 10, 15, 0, tzinfo=dt.UTC)


def buyer(**fields) -> dict:
    return {"timezone": "America/New_York", "revenue": "40.00",
            "targets": [{"number": "+12125550101"}], "caps": {}} | fields


@pytest.fixture
def capacity(redis_client):
    return Capacity(redis_client, prefix="t")


def test_a_slot_is_held_once_and_released_once(capacity):
    b = buyer(caps={"concurrency": 1})
    first = capacity.reserve(1, b, "CA1", "+14155550100", NOW)
    assert first.ok and first.target == 0 and not first.again
    # The same call again (a redelivered webhook): the same slot, nothing counted twice.
    assert capacity.reserve(1, b, "CA1", "+14155550100", NOW).again
    assert capacity.reserve(1, b, "CA2", "+14155550101", NOW).reason == "concurrency"
    assert capacity.release(1, b, "CA1", "+14155550100", NOW, connected=True)
    assert not capacity.release(1, b, "CA1", "+14155550100", NOW, connected=True)
    assert capacity.reserve(1, b, "CA2", "+14155550101", NOW).ok


def test_usage_reads_live_calls_and_counts(capacity):
    b = buyer(targets=[{"number": "+12125550101"}, {"number": "+12125550102", "weight": 0}])
    capacity.reserve(1, b, "CA1", None, NOW)
    capacity.reserve(1, b, "CA2", None, NOW)
    capacity.release(1, b, "CA2", None, NOW, connected=True, converted=True)
    used = capacity.usage(1, b, NOW)
    assert used["live"] == 1 and used["targets"] == [1, 0]
    assert used["counts"]["day"] == {"calls": 2, "connections": 1, "conversions": 1,
                                     "revenue": "40.00"}


def test_calls_in_progress_count_toward_conversion_caps(capacity):
    b = buyer(caps={"conversions": {"day": 2}})
    assert capacity.reserve(1, b, "CA1", None, NOW).ok
    assert capacity.reserve(1, b, "CA2", None, NOW).ok
    assert capacity.reserve(1, b, "CA3", None, NOW).reason == "cap:day:conversions"
    capacity.release(1, b, "CA1", None, NOW, connected=True)  # talked, did not convert
    assert capacity.reserve(1, b, "CA3", None, NOW).ok
    capacity.release(1, b, "CA2", None, NOW, connected=True, converted=True)
    capacity.release(1, b, "CA3", None, NOW, connected=True, converted=True)
    assert capacity.reserve(1, b, "CA4", None, NOW).reason == "cap:day:conversions"


def test_call_revenue_hour_and_total_caps(capacity):
    b = buyer(caps={"calls": {"hour": 2}, "revenue": {"total": "80.00"}})
    assert capacity.reserve(1, b, "CA1", None, NOW).ok
    capacity.release(1, b, "CA1", None, NOW, connected=True, converted=True)
    assert capacity.reserve(1, b, "CA2", None, NOW).ok  # 40 earned + 40 possible = 80
    assert capacity.reserve(1, b, "CA3", None, NOW).reason == "cap:hour:calls"
    later = NOW + dt.timedelta(hours=1)
    assert capacity.reserve(1, b, "CA3", None, later).reason == "cap:total:revenue"
    capacity.release(1, b, "CA2", None, later)  # no answer: earns nothing
    assert capacity.reserve(1, b, "CA3", None, later).ok


def test_day_caps_reset_at_the_buyers_midnight_not_utcs(capacity):
    """New York's midnight is 05:00 UTC in March (after the DST change): a call at 04:59 UTC
    still counts toward the New York day before, one at 05:00 starts the new day."""
    b = buyer(caps={"conversions": {"day": 1}})
    before = dt.datetime(2026, 3, 10, 3, 59, tzinfo=dt.UTC)  # 23:59 in New York, March 9
    assert capacity.reserve(1, b, "CA1", None, before).ok
    capacity.release(1, b, "CA1", None, before, connected=True, converted=True)
    utc_midnight = dt.datetime(2026, 3, 10, 0, 30, tzinfo=dt.UTC)
    assert buckets("America/New_York", utc_midnight)[0]["day"] == "20260309"
    still = dt.datetime(2026, 3, 10, 3, 59, 59, tzinfo=dt.UTC)
    assert capacity.reserve(1, b, "CA2", None, still).reason == "cap:day:conversions"
    after = dt.datetime(2026, 3, 10, 4, 0, tzinfo=dt.UTC)  # 00:00 EDT, March 10
    assert buckets("America/New_York", after)[0]["day"] == "20260310"
    assert capacity.reserve(1, b, "CA2", None, after).ok


def test_spacing_duplicates_and_target_concurrency(capacity):
    b = buyer(caps={"spacing_seconds": 30}, duplicate={"days": 7, "after": "connected"},
              targets=[{"number": "+12125550101", "concurrency": 1},
                       {"number": "+12125550102", "concurrency": 1}])
    assert capacity.reserve(1, b, "CA1", "+14155550100", NOW).ok
    assert capacity.reserve(1, b, "CA2", "+14155550101", NOW).reason == "spacing"
    later = NOW + dt.timedelta(seconds=31)
    second = capacity.reserve(1, b, "CA2", "+14155550101", later)
    assert second.ok and second.target == 1 - capacity.reserve(
        1, b, "CA1", "+14155550100", NOW).target  # the other target: the first is full
    much_later = later + dt.timedelta(seconds=31)
    assert capacity.reserve(1, b, "CA3", "+14155550102", much_later).reason == \
        "concurrency:target"
    capacity.release(1, b, "CA1", "+14155550100", much_later, connected=True)
    again = much_later + dt.timedelta(seconds=31)
    assert capacity.reserve(1, b, "CA4", "+14155550100", again).reason == "duplicate"
    assert capacity.reserve(1, b, "CA4", "+14155550199", again).ok


def test_weights_pick_targets_in_proportion(capacity):
    b = buyer(targets=[{"number": "+12125550101", "weight": 1},
                       {"number": "+12125550102", "weight": 3}])
    picks = [0, 0]
    for i in range(400):
        r = capacity.reserve(1, b, f"CA{i}", None, NOW)
        picks[r.target] += 1
    assert 60 < picks[0] < 140 and picks[0] + picks[1] == 400


def test_racing_calls_never_exceed_concurrency_and_hit_the_cap_exactly(redis_url,
                                                                       redis_client):
    """200 calls at once against concurrency 5 and a day cap of 50 conversions, each call
    converting and waiting while the buyer is busy: never more than 5 live, exactly 50
    conversions, the other 150 refused by the cap."""
    b = buyer(caps={"concurrency": 5, "conversions": {"day": 50}})
    live, peak, busy, lock = [0], [0], [0], threading.Lock()
    outcomes: list[str] = []
    start = threading.Barrier(20)

    def caller(worker: int):
        client = redis_lib.Redis.from_url(redis_url, decode_responses=True)
        capacity = Capacity(client, prefix="t")
        start.wait()
        for i in range(10):
            call = f"CA{worker}-{i}"
            got = capacity.reserve(1, b, call, None, NOW)
            while got.reason == "concurrency":  # busy: this call waits for a slot
                with lock:
                    busy[0] += 1
                time.sleep(0.001)
                got = capacity.reserve(1, b, call, None, NOW)
            if not got.ok:
                with lock:
                    outcomes.append(got.reason)
                continue
            with lock:
                live[0] += 1
                peak[0] = max(peak[0], live[0])
            time.sleep(0.005)  # on the phone a moment: the others race for the slots
            # Counted down before the release: the count never lags behind Redis's.
            with lock:
                live[0] -= 1
                outcomes.append("converted")
            capacity.release(1, b, call, None, NOW, connected=True, converted=True)
        client.close()

    threads = [threading.Thread(target=caller, args=(w,)) for w in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(outcomes) == 200
    assert outcomes.count("converted") == 50
    assert outcomes.count("cap:day:conversions") == 150
    assert peak[0] <= 5 and busy[0] > 0  # the race really happened
    names, _ = buckets("America/New_York", NOW)
    assert redis_client.hget(f"t:buyer:{{b1}}:count:day:{names['day']}", "conversions") == "50"
