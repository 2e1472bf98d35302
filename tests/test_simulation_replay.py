"""Replaying a pool's own recorded traffic: read back from SQL, resampled, played at other sizes."""

from __future__ import annotations

import dataclasses
import datetime as dt
import secrets

from attribution import callers
from attribution.call_areas import region_key
from attribution.models import Call
from attribution.simulation import PoolSettings, TrafficModel, forget, free_block, plan, simulate
from attribution.simulation.replay import recorded_traffic, replay_accuracy, replay_schedule
from attribution.simulation.runner import PoolRun, caller_number
from dni_server.extensions import db

# Five minutes of traffic with 30-second leases: nothing may assume an hour.
SETTINGS = PoolSettings(lease_seconds=30, cooldown_seconds=5, attribution_window_seconds=300,
                        max_lease_seconds=3600)
MODEL = TrafficModel(arrivals_per_hour=1500, hourly_weights=(1.0,) * 24,
                     visit_median_seconds=40, visit_sigma=0.5, pages_mean=1.5,
                     returning_share=0.0, call_share=0.5, right_after_mean_seconds=20,
                     later_median_seconds=60, later_sigma=0.3, later_max_seconds=120)
START_MS = 1_767_600_000_000
DAYS = 5 / 1440
BIG = 200
RENEW_MS = 10_000  # the snippet renews a 30-second lease every 10 s


def generate(redis_client, session):
    """Play the model on a pool far larger than its load (the runner stores each call as
    ingest would: credited to the session the matcher named)."""
    schedule = plan(MODEL, SETTINGS, days=DAYS, seed=3, start_ms=START_MS)
    prefix = f"dnisim-{secrets.token_hex(4)}"
    try:
        run = PoolRun(redis_client, session, schedule, SETTINGS, BIG, prefix=prefix,
                      number_block=free_block(session))
        result = run.run()
    finally:
        forget(redis_client, prefix)
    return schedule, result, run.pool.id


def test_recorded_traffic_gives_back_what_the_pool_saw_and_replays_it(redis_client, app):
    with app.app_context():
        schedule, result, pool_id = generate(redis_client, db.session)
        traffic = recorded_traffic(db.session, pool_id, START_MS,
                                   START_MS + schedule.span_ms)

        assert result.visits_refused == 0 and result.accuracy == 1.0
        assert traffic.settings == SETTINGS
        planned = schedule.visits
        assert traffic.visits == len(planned) > 50
        assert traffic.arrivals_ms == [v.start_ms - START_MS for v in planned]
        # Recorded durations end at the last heartbeat: at most one renewal short.
        for visit, duration in zip(planned, traffic.durations_ms, strict=True):
            assert 0 <= (visit.end_ms - visit.start_ms) - duration <= RENEW_MS
        assert len(traffic.call_delays_ms) == schedule.calls > 20
        assert abs(traffic.call_share - schedule.calls / len(planned)) < 1e-9
        for visit, delay in zip(planned, traffic.delays_ms, strict=True):
            if visit.call is None:
                assert delay is None
                continue
            true_delay = visit.call.at_ms - visit.end_ms
            assert 0 <= delay - true_delay <= RENEW_MS
            if visit.call.phase == "during":
                assert delay <= RENEW_MS
        assert any(d > 0 for d in traffic.call_delays_ms)
        assert any(d <= 0 for d in traffic.call_delays_ms)
        assert traffic.unmatched_calls == 0
        # Where each visit was located and its caller is from: the model's area evidence.
        assert traffic.regions == [("US", v.located) if v.located else None for v in planned]
        assert sum(r is not None for r in traffic.regions) > 50
        for visit, caller in zip(planned, traffic.caller_regions, strict=True):
            phone = callers.identify(caller_number(visit))
            assert caller == (region_key(phone.country, phone.region)
                              if visit.call is not None else None)
        assert sum(c is not None for c in traffic.caller_regions) > 20
        # A call credited to no visit (the fallback) is counted, not given a delay.
        db.session.add(Call(provider="sim", provider_call_id="sim-fallback",
                            from_number="+14158675309", to_number="+14150000000",
                            pool_id=pool_id, method="fallback",
                            started_at=dt.datetime.fromtimestamp(START_MS / 1000 + 60, dt.UTC)))
        db.session.commit()
        again = recorded_traffic(db.session, pool_id, START_MS, START_MS + schedule.span_ms)
        assert again.unmatched_calls == 1 and again.delays_ms == traffic.delays_ms

        # A window that ends early holds only the visits that began in it.
        half = recorded_traffic(db.session, pool_id, START_MS, START_MS + schedule.span_ms // 2)
        assert 0 < half.visits < traffic.visits

        rows = replay_accuracy(redis_client, db.session, traffic, [1, BIG], seed=5)
        assert not list(redis_client.scan_iter(match="dnisim-*"))

    (one, acc_one, _, _, exhausted), (big, acc_big, wrong, unattributed, lost) = rows
    assert (one, big) == (1, BIG)
    assert exhausted > 0 and acc_one < acc_big
    assert lost == 0 and acc_big > 0.9


def test_replay_credits_every_in_visit_call_right_on_a_large_pool(redis_client, app):
    with app.app_context():
        schedule, _, pool_id = generate(redis_client, db.session)
        traffic = recorded_traffic(db.session, pool_id, START_MS, START_MS + schedule.span_ms)
        in_visit = dataclasses.replace(
            traffic, delays_ms=[min(d, 0) if d is not None else None for d in traffic.delays_ms])
        assert len(in_visit.call_delays_ms) > 20
        rows = replay_accuracy(redis_client, db.session, in_visit, [BIG], seed=5)

    assert rows == [(BIG, 1.0, 0, 0, 0)]


def test_the_same_seed_gives_the_same_schedule_and_another_seed_another(redis_client, app):
    with app.app_context():
        schedule, _, pool_id = generate(redis_client, db.session)
        traffic = recorded_traffic(db.session, pool_id, START_MS, START_MS + schedule.span_ms)

    def story(s):
        return [(v.start_ms, v.end_ms, v.call and v.call.at_ms) for v in s.visits]

    first, again, other = (replay_schedule(traffic, seed) for seed in (1, 1, 2))
    assert story(first) == story(again) != story(other)
    assert [v.start_ms for v in first.visits] == [v.start_ms for v in other.visits]
    assert first.span_ms == schedule.span_ms and first.lease_ms == 30_000


def test_replayed_accuracy_follows_the_simulation_that_made_the_traffic(redis_client, app):
    sizes = [6, 15, 50]
    with app.app_context():
        schedule, _, pool_id = generate(redis_client, db.session)
        traffic = recorded_traffic(db.session, pool_id, START_MS, START_MS + schedule.span_ms)
        replayed = replay_accuracy(redis_client, db.session, traffic, sizes, seed=5)
        original = simulate(redis_client, db.session, model=MODEL, settings=SETTINGS,
                            days=DAYS, seed=3, sizes=sizes)

    # Resampled visits differ one by one, so only the curve is compared (deterministic seeds;
    # about 45 calls, so a loose band).
    for (size, accuracy, *_), result in zip(replayed, original.sizes, strict=True):
        assert size == result.numbers
        assert abs(accuracy - result.accuracy) <= 0.2
    assert [r[1] for r in replayed] == sorted(r[1] for r in replayed)
