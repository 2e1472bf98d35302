"""Releasing bought numbers: quarantined, and never released at the carrier while a visitor
may still call the number (its lease, then its pool's attribution window)."""

from __future__ import annotations

import datetime as dt

from fakes import TWILIO_SID, TWILIO_TOKEN
from sqlalchemy import select

from attribution.numbers import release
from attribution.numbers.carriers import TwilioNumbers
from attribution.numbers.models import ProvisionedNumber
from dni_server.extensions import db
from dni_server.timefmt import now_ms
from factories import make_pool, make_site, numbers, post_session, record

TWILIO = {"name": "Main Twilio", "carrier": "twilio",
          "credentials": {"account_sid": TWILIO_SID, "auth_token": TWILIO_TOKEN}}
HOUR = dt.timedelta(hours=1)


def bought_number(admin, pool, key: str = "release-key-001") -> dict:
    account = admin.post("/v1/carrier-accounts", json=TWILIO).json
    report = admin.post(f"/v1/pools/{pool['id']}/provision", json={
        "account": account["id"], "count": 1, "area_code": "415"},
        headers={"Idempotency-Key": key}).json
    [row] = report["numbers"]
    assert row["state"] == "added"
    return row


def release_due(app, fake, later: dt.timedelta) -> dict:
    api = TwilioNumbers(TWILIO_SID, TWILIO_TOKEN, fake.url)
    with app.app_context():
        return release.release_due(db.session, lambda _account: api,
                                   now=dt.datetime.now(dt.UTC) + later)


def state_of(app, row_id: int) -> str:
    with app.app_context():
        return db.session.get(ProvisionedNumber, row_id).state


def test_a_leased_number_is_released_only_after_its_lease_and_attribution_window(
        carrier_app, admin, twilio_fake):
    site = make_site(admin)
    pool = make_pool(admin, site, numbers=numbers(1, start=101, area="650"),
                     attribution_window_seconds=7200)
    row = bought_number(admin, pool)
    client = carrier_app.test_client()
    sessions = [post_session(client, site["key"], ip=f"192.0.2.{i}").json for i in (1, 2)]
    holders = [s for s in sessions if s["numbers"][0]["number"] == row["number"]]
    # Two visitors, two numbers: one of them holds the bought one.
    assert len(holders) == 1, [s["numbers"] for s in sessions]
    [holder] = holders

    answer = admin.post(f"/v1/provisioned-numbers/{row['id']}/release",
                        json={"quarantine_hours": 0})
    assert answer.status_code == 200, answer.json
    assert answer.json["state"] == "quarantined"
    # Its visitor keeps it: retiring, not retired, and never released at the carrier.
    statuses = {n["number"]: n["status"] for n in
                admin.get(f"/v1/pools/{pool['id']}/numbers").json["numbers"]}
    assert statuses[row["number"]] == "retiring"
    assert release_due(carrier_app, twilio_fake, 10 * HOUR)["released"] == 0
    assert row["number"] in twilio_fake.owned

    # The lease ends; the worker records it (the number is retired)...
    services = carrier_app.extensions["dni"]
    services.pools.release(pool["id"], holder["session_id"], now_ms())
    record(carrier_app)
    statuses = {n["number"]: n["status"] for n in
                admin.get(f"/v1/pools/{pool['id']}/numbers").json["numbers"]}
    assert statuses[row["number"]] == "retired"
    # ... but a call within the attribution window may still be the visitor's.
    assert release_due(carrier_app, twilio_fake, HOUR) == {"released": 0, "waiting": 1,
                                                           "failed": 0}
    assert state_of(carrier_app, row["id"]) == "quarantined"
    assert release_due(carrier_app, twilio_fake, 3 * HOUR) == {"released": 1, "waiting": 0,
                                                               "failed": 0}
    assert state_of(carrier_app, row["id"]) == "released"
    assert row["number"] not in twilio_fake.owned
    assert twilio_fake.count("release") == 1 and twilio_fake.violations == []


def test_an_idle_number_waits_out_its_quarantine(carrier_app, admin, twilio_fake):
    site = make_site(admin)
    pool = make_pool(admin, site, numbers=numbers(1, start=101, area="650"),
                     attribution_window_seconds=600)
    row = bought_number(admin, pool)
    answer = admin.post(f"/v1/provisioned-numbers/{row['id']}/release",
                        json={"quarantine_hours": 24})
    assert answer.json["release_after"] is not None
    assert release_due(carrier_app, twilio_fake, 3 * HOUR)["released"] == 0
    assert release_due(carrier_app, twilio_fake, 25 * HOUR)["released"] == 1
    assert row["number"] not in twilio_fake.owned


def test_a_number_a_pool_took_again_is_not_released(carrier_app, admin, twilio_fake):
    site = make_site(admin)
    pool = make_pool(admin, site, numbers=numbers(1, start=101, area="650"))
    row = bought_number(admin, pool)
    admin.post(f"/v1/provisioned-numbers/{row['id']}/release", json={"quarantine_hours": 0})
    other = make_pool(admin, site, target="+18005550102", numbers=[row["number"]])
    assert other["id"] != pool["id"]
    assert release_due(carrier_app, twilio_fake, 30 * HOUR)["released"] == 0
    assert row["number"] in twilio_fake.owned


def test_a_carrier_failure_leaves_it_quarantined_for_the_next_pass(carrier_app, admin,
                                                                    twilio_fake):
    site = make_site(admin)
    pool = make_pool(admin, site, numbers=numbers(1, start=101, area="650"),
                     attribution_window_seconds=600)
    row = bought_number(admin, pool)
    admin.post(f"/v1/provisioned-numbers/{row['id']}/release", json={"quarantine_hours": 0})
    twilio_fake.fail_next("release", 1, status=503)
    assert release_due(carrier_app, twilio_fake, 2 * HOUR)["failed"] == 1
    assert state_of(carrier_app, row["id"]) == "quarantined"
    assert release_due(carrier_app, twilio_fake, 2 * HOUR)["released"] == 1


def test_bad_release_requests_are_4xx(carrier_app, admin, twilio_fake):
    site = make_site(admin)
    pool = make_pool(admin, site, numbers=numbers(1, start=101, area="650"))
    row = bought_number(admin, pool)
    path = f"/v1/provisioned-numbers/{row['id']}/release"
    assert admin.post(path, json={"quarantine_hours": -1}).status_code == 422
    assert admin.post(path, json={"quarantine_hours": "1"}).status_code == 422
    assert admin.post("/v1/provisioned-numbers/999/release", json={}).status_code == 404
    assert admin.post(path, json={}).status_code == 200
    again = admin.post(path, json={})
    assert again.status_code == 409 and again.json["error"]["code"] == "not_retirable"
    with carrier_app.app_context():
        assert db.session.scalar(select(ProvisionedNumber.state)) == "quarantined"
