"""Pool health: concurrency sweep, Erlang B sizing, and the API over recorded leases."""

from __future__ import annotations

import datetime as dt

import pytest

from attribution.pool_health import HOUR_MS, Interval, concurrency, erlang_b, servers_for
from dni_server.extensions import db
from factories import make_pool, make_site, numbers
from pools.models import Lease, PoolExhaustion

T0 = int(dt.datetime(2026, 5, 4, tzinfo=dt.UTC).timestamp() * 1000)


def test_concurrency_per_hour():
    intervals = [Interval(T0 + 10, T0 + HOUR_MS + 10), Interval(T0 + 20, T0 + 30),
                 Interval(T0 + 30, T0 + 40),  # starts as the previous one ends: not 3 at once
                 Interval(T0 - 5, T0 + 25)]   # running when the period starts
    peaks, peak = concurrency(intervals, T0, T0 + 3 * HOUR_MS)
    assert peaks == [3, 1, 0] and peak == 3


def test_erlang_b_matches_known_values():
    # Classic table values: 10 Erlangs on 15 lines blocks about 3.65%.
    assert erlang_b(15, 10.0) == pytest.approx(0.0365, abs=0.0005)
    assert erlang_b(1, 1.0) == pytest.approx(0.5)
    assert servers_for(10.0, 0.01) == 18
    assert servers_for(0.0, 0.01) == 1


def test_pool_health_api(app, admin):
    site = make_site(admin)
    pool = make_pool(admin, site, numbers=numbers(3), lease_seconds=300, cooldown_seconds=60)
    with app.app_context():
        # Hour 0: three overlapping 10-minute leases and two visitors shown the fallback.
        for i in range(3):
            start = T0 + i * 60_000
            db.session.add(Lease(pool_id=pool["id"], number=numbers(3)[i], session_id=f"s{i}",
                                 started_at_ms=start, last_renewed_at_ms=start,
                                 expires_at_ms=start + 600_000, ended_at_ms=start + 600_000,
                                 end_reason="expired"))
        for i in range(2):
            db.session.add(PoolExhaustion(pool_id=pool["id"], session_id=f"x{i}",
                                          at_ms=T0 + 200_000 + i))
        db.session.commit()
    response = admin.get(f"/v1/pools/{pool['id']}/health", query_string={
        "start": "2026-05-04T00:00:00+00:00", "end": "2026-05-04T03:00:00+00:00"})
    assert response.status_code == 200, response.json
    body = response.json
    assert body["numbers"] == 3 and body["peak_concurrent_leases"] == 3
    assert [h["peak_leases"] for h in body["utilisation"]] == [3, 0, 0]
    assert body["utilisation"][0]["share"] == 1.0
    assert (body["leases"], body["exhaustion_events"], body["fallback_sessions"]) == (3, 2, 2)
    assert body["exhaustion_rate"] == 0.4
    rec = body["recommendation"]
    # 5 arrivals in the busiest hour, held 600 s + 60 s: 5 * 660 / 3600 = 0.92 Erlangs.
    assert rec["busiest_hour_arrivals"] == 5 and rec["mean_holding_seconds"] == 660.0
    assert rec["offered_load_erlangs"] == 0.92
    assert rec["recommended_numbers"] == servers_for(5 * 660 / 3600, 0.01) == 5
    assert "Erlang B" in rec["reasoning"] and "the pool has 3" in rec["reasoning"]
    bad = admin.get(f"/v1/pools/{pool['id']}/health", query_string={"start": "yesterday"})
    assert bad.status_code == 422


def test_pool_health_api_speaks_the_sites_time_zone(app, admin):
    site = make_site(admin, timezone="America/New_York")
    pool = make_pool(admin, site, numbers=numbers(2))
    with app.app_context():  # one lease at 14:05 UTC = 10:05 in New York (EDT, -04:00)
        start = T0 + 14 * HOUR_MS + 300_000
        db.session.add(Lease(pool_id=pool["id"], number=numbers(2)[0], session_id="s1",
                             started_at_ms=start, last_renewed_at_ms=start,
                             expires_at_ms=start + 600_000, ended_at_ms=start + 600_000,
                             end_reason="expired"))
        db.session.commit()
    # Times without an offset are New York's: 09:00 to 12:00 there is 13:00 to 16:00 UTC.
    body = admin.get(f"/v1/pools/{pool['id']}/health", query_string={
        "start": "2026-05-04T09:00:00", "end": "2026-05-04T12:00:00"}).json
    assert body["timezone"] == "America/New_York"
    assert (body["start"], body["end"]) == ("2026-05-04T09:00:00-04:00",
                                            "2026-05-04T12:00:00-04:00")
    assert [h["hour"] for h in body["utilisation"]] == [
        "2026-05-04T09:00:00-04:00", "2026-05-04T10:00:00-04:00", "2026-05-04T11:00:00-04:00"]
    assert [h["peak_leases"] for h in body["utilisation"]] == [0, 1, 0]
    assert body["recommendation"]["busiest_hour"] == "2026-05-04T10:00:00-04:00"
