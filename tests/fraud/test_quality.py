"""The publisher quality report: a farm at the threshold and a publisher whose calls fail
attestation stand out against the network, with how sure; an honest publisher does not;
a publisher sees its own row only."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from attribution.fraud.quality import p_value_above_half, p_value_higher, quality_report
from attribution.models import Call
from dni_server.extensions import db
from factories import ADMIN_TOKEN, AdminClient

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


def signals(duration: int, level: str, verified: bool) -> dict:
    past = duration - 60
    hug = {"name": "threshold_hugging", "fired": 0 <= past <= 5,
           "value": {"duration": duration, "thresholds": [60]}}
    return {"signals": [{"name": "stir_shaken", "fired": not verified,
                         "value": {"level": level, "verified": verified}}, hug]}


@pytest.fixture
def calls(app):
    rng = random.Random(3)
    rows = []
    for publisher, n in (("Honest1", 300), ("Honest2", 300), ("Farm", 200), ("Robo", 200)):
        for i in range(n):
            duration = 60 + rng.randint(0, 4) if publisher == "Farm" and i % 2 else int(
                rng.expovariate(1 / 150))
            verified = not (publisher == "Robo" and i % 3 == 0)
            rows.append(Call(provider="api", provider_call_id=f"{publisher}-{i}",
                             from_number=f"+1310555{i:04d}", to_number="+16505550101",
                             started_at=NOW - dt.timedelta(hours=1), publisher=publisher,
                             duration=duration,
                             review_state="pending" if not verified else None,
                             fraud_signals=signals(duration, "A", verified)))
    with app.app_context():
        db.session.add_all(rows)
        db.session.commit()
    return app


def test_the_tests_themselves():
    assert p_value_higher(50, 100, 10, 100) < 1e-6
    assert p_value_higher(10, 100, 10, 100) == pytest.approx(0.5)
    assert p_value_above_half(30, 40) < 0.01 and p_value_above_half(20, 40) == 0.5


def test_bad_publishers_stand_out_honest_ones_do_not(calls):
    with calls.app_context():
        report = quality_report(db.session, NOW - dt.timedelta(days=1), NOW + dt.timedelta(1))
    rows = {r["publisher"]: r for r in report["publishers"]}
    assert report["calls"] == 1000
    assert rows["Farm"]["threshold_hugging"]["significant"]
    assert "threshold_hugging_excess" in rows["Farm"]["flag"]
    assert rows["Farm"]["threshold_hugging"]["ratio"] > 5
    robo = rows["Robo"]["rates"]
    assert robo["stir_shaken"]["significant"] and robo["attestation_a"]["significant"]
    assert robo["flagged"]["sure"] > 0.99
    for honest in ("Honest1", "Honest2"):
        assert rows[honest]["flag"] == [], rows[honest]


def test_the_api_and_a_publishers_view(calls):
    admin = AdminClient(calls.test_client(), ADMIN_TOKEN)
    whole = admin.get("/v1/reports/quality")
    assert whole.status_code == 200, whole.get_json()
    assert {r["publisher"] for r in whole.get_json()["publishers"]} == {
        "Honest1", "Honest2", "Farm", "Robo"}
    token = admin.post("/v1/tokens", json={"name": "p", "scope": "publisher",
                                           "publisher": "Farm"}).get_json()["token"]
    mine = AdminClient(calls.test_client(), token).get("/v1/reports/quality").get_json()
    assert [r["publisher"] for r in mine["publishers"]] == ["Farm"]
    assert admin.get("/v1/reports/quality?start=2026-13-01").status_code == 422
    assert admin.get("/v1/reports/quality?start=2026-12-06&end=2026-12-01").status_code == 422
