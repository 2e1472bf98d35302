"""Autoscale end to end on a virtual clock: simulated traffic through the real lease scripts,
recorder and matcher into a pool, the worker's autoscale step deciding from the pool's own
recorded window, and numbers bought from and released at the Twilio fake.

Every twelve virtual hours a ten-minute burst of traffic at the ramp's rate is played into
the pool (``attribution.simulation``'s runner, on the pool itself), then the worker decides
from that burst (a 15-minute window): the pool grows to its target while the ramp lasts,
never past ``max`` nor the daily limit, and is trimmed before the billing day after it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections import Counter

import pytest
from fakes import PUBLIC_URL, TWILIO_SID, TWILIO_TOKEN, TwilioFake
from markupsafe import escape
from sqlalchemy import func, select

from attribution.numbers import release
from attribution.numbers.autoscale_models import AutoscaleDecision
from attribution.numbers.autoscale_step import Autoscaler, bought_today
from attribution.numbers.models import ProvisionedNumber
from attribution.simulation import PoolSettings, TrafficModel, plan
from attribution.simulation.runner import PoolRun, SizeResult
from dni_server.extensions import db
from dni_server.worker import Worker
from factories import ADMIN_TOKEN, make_pool, make_site, numbers
from pools.models import Pool, PoolNumber, Site

FAST = PoolSettings(lease_seconds=30, cooldown_seconds=5, attribution_window_seconds=300,
                    max_lease_seconds=3600)
# A local business (every visitor in one state): the caller's area says nothing, so what
# autoscale sees depends on the pool's size and the traffic alone.
MODEL = TrafficModel(arrivals_per_hour=600, hourly_weights=(1.0,) * 24,
                     visit_median_seconds=40, visit_sigma=0.5, pages_mean=1.5,
                     returning_share=0.0, call_share=0.5, right_after_mean_seconds=20,
                     later_median_seconds=60, later_sigma=0.3, later_max_seconds=120,
                     home_state="CA", home_share=1.0)
START = dt.datetime(2026, 12, 18, tzinfo=dt.UTC)
FOR_SALE = numbers(99, start=100, area="628")
WINDOW = dt.timedelta(hours=24)  # two bursts
TRIM_WINDOW = dt.timedelta(days=2)
POLICY = {"enabled": True, "mode": "apply", "account": "Scaling", "min": 10, "max": 48,
          "accuracy_target": 0.9, "step": 10, "cooldown_minutes": 60, "trim_day": 28,
          "daily_limit": 15, "area_code": "628"}


def visits_per_hour(at: dt.datetime) -> float:
    """600 an hour, 1800 from the 20th to the 22nd (the ramp), 600 again from the 23rd."""
    return 1800.0 if 20 <= at.day <= 22 else 600.0


@pytest.fixture
def twilio_fake():  # replaces the folder's: more numbers for sale, in one area
    fake = TwilioFake(FOR_SALE, voice_url=f"{PUBLIC_URL}/webhooks/twilio/voice",
                      status_url=f"{PUBLIC_URL}/webhooks/twilio/status").start()
    yield fake
    fake.stop()


class LivePool(PoolRun):
    """The runner on an existing pool and the app's pool service: the numbers autoscale
    adds and retires are the ones the simulated visitors lease."""

    def __init__(self, pools, session, pool: Pool):
        self.db, self.pools, self.pool = session, pools, pool
        self.site, self.fallback = session.get(Site, pool.site_id), pool.fallback
        self.visits = 0

    def play(self, end: dt.datetime, per_hour: float, seed: int) -> SizeResult:
        """Ten minutes of traffic at ``per_hour``, over (calls included) before ``end``."""
        start_ms = int((end - dt.timedelta(minutes=17)).timestamp() * 1000)
        self.schedule = plan(dataclasses.replace(MODEL, arrivals_per_hour=per_hour), FAST,
                             days=10 / 1440, seed=seed, start_ms=start_ms)
        for visit in self.schedule.visits:  # session and call ids stay unique across bursts
            visit.index += self.visits
            visit.visitor += self.visits
        self.visits += len(self.schedule.visits)
        self.result = SizeResult(0, visits=len(self.schedule.visits))
        self.states, self.visit_of, self.touched, self.since_recorded = {}, {}, {}, 0
        return self.run()


def active(pool_id: int) -> int:
    return db.session.scalar(select(func.count()).select_from(PoolNumber).where(
        PoolNumber.pool_id == pool_id, PoolNumber.status == "active"))


def scaled_pool(admin, policy: dict) -> dict:
    admin.post("/v1/carrier-accounts", json={
        "name": "Scaling", "carrier": "twilio",
        "credentials": {"account_sid": TWILIO_SID, "auth_token": TWILIO_TOKEN}})
    site = make_site(admin)
    return make_pool(admin, site, numbers=numbers(10, start=101), autoscale=policy,
                     lease_seconds=FAST.lease_seconds, cooldown_seconds=FAST.cooldown_seconds,
                     attribution_window_seconds=FAST.attribution_window_seconds,
                     max_lease_seconds=FAST.max_lease_seconds)


def autoscaler(app) -> Autoscaler:
    """The worker's own step (its account lookup, its webhooks), on the test's window."""
    return dataclasses.replace(Worker(app).autoscale, window=WINDOW, trim_window=TRIM_WINDOW)


def run(app, pool_id: int, until: dt.datetime) -> list[tuple[dt.datetime, int, object]]:
    """Burst, decide, every 12 virtual hours from START; (time, size after, decision)."""
    services = app.extensions["dni"]
    step, log = autoscaler(app), []
    live = LivePool(services.pools, db.session, db.session.get(Pool, pool_id))
    now, seed = START, 0
    while now <= until:
        live.play(now, visits_per_hour(now), seed)
        decided = step.run_once(now)
        assert len(decided) == 1  # due every round: the cooldown is shorter than 12 h
        db.session.expire_all()
        log.append((now, active(pool_id), decided[0]))
        now, seed = now + dt.timedelta(hours=12), seed + 1
    return log


@pytest.mark.slow
def test_a_ramp_grows_the_pool_and_it_is_trimmed_before_billing(carrier_app, admin,
                                                               twilio_fake):
    pool = scaled_pool(admin, POLICY)
    with carrier_app.app_context():
        log = run(carrier_app, pool["id"], START + dt.timedelta(days=9, hours=12))
        for now, size, d in log:
            print(f"{now:%d %H}h size {size:3d} {d.action} {d.numbers} [{d.result}] {d.reason}")
        sizes = {now: size for now, size, _ in log}
        grows = [(now, d) for now, _, d in log if d.action == "grow"]
        trims = [(now, d) for now, _, d in log if d.action == "trim"]
        ramp_peak = max(size for now, size in sizes.items() if now.day <= 23)

        # Grown while the traffic asked for it, never past max, never past the daily limit.
        assert grows and all(now.day <= 23 for now, _ in grows)
        assert max(sizes.values()) <= POLICY["max"]
        bought_on = Counter()
        for now, d in grows:
            assert d.applied and d.done <= d.numbers <= POLICY["step"]
            bought_on[now.date()] += d.done
        assert max(bought_on.values()) <= POLICY["daily_limit"]
        assert sum(bought_on.values()) == twilio_fake.count("buy") == len(provisioned(pool["id"]))
        assert any("under the target 90.0%" in d.reason or "got the fallback" in d.reason
                   for _, d in grows)
        assert sizes[START + dt.timedelta(days=3)] > sizes[START]  # the ramp asked for more
        assert any("today's budget" in d.reason or "daily limit" in d.reason
                   for _, _, d in log)

        # Trimmed after the ramp, in the three days before the 28th, as the model allows.
        assert trims and all(now.day in (25, 26, 27) for now, _ in trims)
        assert all("days before billing" in d.reason and d.done == d.numbers
                   for _, d in trims)
        final = log[-1][1]
        assert final < ramp_peak and final >= POLICY["min"]
        assert trims[-1][1].expected >= POLICY["accuracy_target"]

        # Trimmed numbers are quarantined, then released at the carrier before the bill.
        retired = [r for r in provisioned(pool["id"]) if r.state == "quarantined"]
        assert len(retired) == sum(d.done for _, d in trims)
        assert all(r.release_after < dt.datetime(2026, 12, 28, tzinfo=dt.UTC) for r in retired)
        upkeep = Worker(carrier_app).numbers
        counts = release.release_due(db.session, upkeep.api,
                                     now=dt.datetime(2026, 12, 27, 23, tzinfo=dt.UTC))
        assert counts["released"] == len(retired)
        assert not {r.number for r in retired} & set(twilio_fake.owned)
        assert twilio_fake.violations == []


def provisioned(pool_id: int) -> list[ProvisionedNumber]:
    db.session.expire_all()
    return list(db.session.scalars(select(ProvisionedNumber).where(
        ProvisionedNumber.pool_id == pool_id)))


def test_propose_mode_logs_growth_and_buys_nothing(carrier_app, admin, twilio_fake):
    pool = scaled_pool(admin, POLICY | {"mode": "propose"})
    with carrier_app.app_context():
        log = run(carrier_app, pool["id"], START + dt.timedelta(days=1))
    assert {size for _, size, _ in log} == {10}
    assert any(d.action == "grow" and d.mode == "propose" and not d.applied for _, _, d in log)
    assert twilio_fake.count("buy") == 0 and twilio_fake.owned == {}
    shown = admin.get(f"/v1/pools/{pool['id']}/autoscale/decisions").json["decisions"]
    assert [d["action"] for d in shown] == [d.action for _, _, d in reversed(log)]
    assert all(d["reason"] and d["applied"] is False for d in shown)
    # The pool page shows the policy and the latest decisions with their reasons.
    browser = carrier_app.test_client()
    login = browser.get("/dashboard/login").text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', login).group(1)
    browser.post("/dashboard/login", data={"token": ADMIN_TOKEN, "csrf_token": csrf})
    page = browser.get(f"/dashboard/pools/{pool['id']}")
    assert page.status_code == 200
    assert "only proposes (buys nothing)" in page.text and "10 to 48 numbers" in page.text
    assert str(escape(shown[0]["reason"])) in page.text
    assert page.text.count('<tr class="decision-') == len(shown)


def test_the_daily_limit_survives_a_restart(carrier_app, admin, twilio_fake):
    pool = scaled_pool(admin, POLICY | {"daily_limit": 4, "cooldown_minutes": 0})
    with carrier_app.app_context():
        live = LivePool(carrier_app.extensions["dni"].pools, db.session,
                        db.session.get(Pool, pool["id"]))
        live.play(START + dt.timedelta(hours=9), 1800, seed=1)
        first = autoscaler(carrier_app).run_once(START + dt.timedelta(hours=9))[0]
        assert (first.action, first.done) == ("grow", 4)
        assert "today's budget 4" in first.reason
        # A new worker (a restart) the same day: the log says four were bought.
        later = START + dt.timedelta(hours=9, minutes=10)
        live.play(later, 1800, seed=2)
        again = autoscaler(carrier_app).run_once(later)[0]
        assert again.action == "hold" and "daily limit 4" in again.reason
        assert bought_today(db.session, pool["id"], later) == 4
        # The next day the budget is whole again.
        tomorrow = START + dt.timedelta(days=1, hours=9)
        live.play(tomorrow, 1800, seed=3)
        assert autoscaler(carrier_app).run_once(tomorrow)[0].action == "grow"
    assert len(twilio_fake.owned) == 8
    rows = db_rows(carrier_app, pool["id"])
    assert [r.action for r in rows] == ["grow", "hold", "grow"]


def db_rows(app, pool_id: int) -> list[AutoscaleDecision]:
    with app.app_context():
        return list(db.session.scalars(select(AutoscaleDecision).where(
            AutoscaleDecision.pool_id == pool_id).order_by(AutoscaleDecision.id)))
