"""Buying numbers into a pool through the Twilio and Telnyx fakes: each number reported,
idempotent retries, and the worker finishing what a crash or a time-out left half done."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from fakes import (
    FOR_SALE,
    PUBLIC_URL,
    TELNYX_CONNECTION,
    TELNYX_KEY,
    TWILIO_SID,
    TWILIO_TOKEN,
    TelnyxFake,
)
from sqlalchemy import select

from attribution.numbers import accounts, provisioning
from attribution.numbers.carriers import SearchQuery, TelnyxNumbers, TwilioNumbers, Webhooks
from attribution.numbers.models import CarrierAccount, ProvisionedNumber
from dni_server.extensions import db
from dni_server.timefmt import now_ms
from pools.models import Pool

HOOKS = Webhooks(f"{PUBLIC_URL}/webhooks/twilio/voice", f"{PUBLIC_URL}/webhooks/twilio/status")
TWILIO = {"name": "Main Twilio", "carrier": "twilio",
          "credentials": {"account_sid": TWILIO_SID, "auth_token": TWILIO_TOKEN}}
TELNYX = {"name": "Main Telnyx", "carrier": "telnyx",
          "credentials": {"api_key": TELNYX_KEY, "connection_id": TELNYX_CONNECTION}}


def account(admin, body=TWILIO) -> dict:
    response = admin.post("/v1/carrier-accounts", json=body)
    assert response.status_code == 201, response.json
    return response.json


def provision(admin, pool, body, key: str | None = "order-key-0001"):
    headers = {"Idempotency-Key": key} if key else {}
    return admin.post(f"/v1/pools/{pool['id']}/provision", json=body, headers=headers)


def pool_numbers(admin, pool) -> list[str]:
    return [n["number"] for n in admin.get(f"/v1/pools/{pool['id']}/numbers").json["numbers"]
            if n["status"] == "active"]


@pytest.mark.parametrize("body", [TWILIO, TELNYX], ids=["twilio", "telnyx"])
def test_buying_adds_each_confirmed_number_to_the_pool(admin, pool, twilio_fake, telnyx_fake,
                                                       body):
    acct = account(admin, body)
    response = provision(admin, pool, {"account": acct["id"], "count": 2, "area_code": "415"})
    assert response.status_code == 201, response.json
    report = response.json
    assert (report["replayed"], report["requested"], report["shortfall"]) == (False, 2, 0)
    bought = [n["number"] for n in report["numbers"]]
    assert [n["state"] for n in report["numbers"]] == ["added", "added"]
    assert all(n.startswith("+1415") for n in bought)
    assert set(bought) <= set(pool_numbers(admin, pool))
    fake = twilio_fake if body is TWILIO else telnyx_fake
    assert set(fake.owned) == set(bought)
    assert fake.violations == []
    if body is TWILIO:  # the fake checks VoiceUrl and StatusCallback point at this service
        assert {r["voice_url"] for r in fake.owned.values()} == {HOOKS.voice_url}
    # The pool leases them at once.
    listed = admin.get("/v1/provisioned-numbers", query_string={"pool": pool["id"]}).json
    assert {n["number"] for n in listed["numbers"]} == set(bought)


def test_a_retried_request_buys_nothing_more(admin, pool, twilio_fake):
    acct = account(admin)
    first = provision(admin, pool, {"account": acct["id"], "count": 2, "area_code": "415"})
    again = provision(admin, pool, {"account": acct["id"], "count": 2, "area_code": "415"})
    assert first.status_code == 201 and again.status_code == 200
    assert again.json["replayed"] is True
    assert [n["number"] for n in again.json["numbers"]] == \
        [n["number"] for n in first.json["numbers"]]
    assert twilio_fake.count("buy") == 2 and len(twilio_fake.owned) == 2
    other = provision(admin, pool, {"account": acct["id"], "count": 1, "area_code": "415"},
                      key="order-key-0002")
    assert other.status_code == 201 and len(twilio_fake.owned) == 3


def test_a_key_is_required_and_bad_requests_are_4xx(admin, pool):
    acct = account(admin)
    assert provision(admin, pool, {"account": acct["id"], "count": 1}, key=None) \
        .status_code == 422
    for body in ({"account": acct["id"], "count": 0}, {"account": acct["id"], "count": 51},
                 {"account": acct["id"], "count": "2"}, {"count": 1},
                 {"account": acct["id"], "count": 1, "area_code": "x"}):
        assert provision(admin, pool, body).status_code == 422, body
    assert provision(admin, pool, {"account": 999, "count": 1}).status_code == 404
    assert admin.post("/v1/pools/999/provision", json={"account": acct["id"], "count": 1},
                      headers={"Idempotency-Key": "order-key-0003"}).status_code == 404


def test_a_refused_number_is_reported_and_the_next_one_bought(admin, pool, twilio_fake):
    acct = account(admin)
    twilio_fake.fail_next("buy", 1, status=400)
    report = provision(admin, pool, {"account": acct["id"], "count": 2, "area_code": "415"}).json
    states = [(n["state"], n["error"] is not None) for n in report["numbers"]]
    assert states == [("failed", True), ("added", False), ("added", False)]
    assert report["shortfall"] == 0 and len(twilio_fake.owned) == 2


def test_too_few_numbers_for_sale_is_a_shortfall(admin, pool, twilio_fake):
    acct = account(admin)
    report = provision(admin, pool, {"account": acct["id"], "count": 5, "area_code": "212"}).json
    assert report["shortfall"] == 2 and len(report["numbers"]) == 3


def test_a_slow_telnyx_order_is_waited_for(admin, pool, telnyx_fake):
    telnyx_fake.pending_polls = 2
    acct = account(admin, TELNYX)
    report = provision(admin, pool, {"account": acct["id"], "count": 1, "area_code": "415"}).json
    assert [n["state"] for n in report["numbers"]] == ["added"]
    assert telnyx_fake.count("order") == 2 and telnyx_fake.violations == []


# -- crashes and time-outs, reconciled by the worker -----------------------------------------


def service_call(app, fn):
    with app.app_context():
        services = app.extensions["dni"]
        return fn(db.session, services)


def twilio_api(fake, timeout: float = 10) -> TwilioNumbers:
    return TwilioNumbers(TWILIO_SID, TWILIO_TOKEN, fake.url, timeout=timeout)


def buy(app, pool, api, key: str):
    def run(session, services):
        acct = session.scalar(select(CarrierAccount))
        report = provisioning.provision(
            session, services.pools, session.get(Pool, pool["id"]), acct, api, count=1,
            query=SearchQuery(area_code="415"), request_key=key, hooks=HOOKS, now_ms=now_ms())
        return [(row.number, row.state) for row in report.numbers]
    return service_call(app, run)


def reconcile(app, api, *, later: dt.timedelta = dt.timedelta(0)):
    def run(session, services):
        return provisioning.reconcile(session, services.pools, lambda _account: api, now_ms(),
                                      now=dt.datetime.now(dt.UTC) + later)
    return service_call(app, run)


def states(app) -> list[tuple[str, str]]:
    return service_call(app, lambda session, _: [
        (r.number, r.state) for r in session.scalars(
            select(ProvisionedNumber).order_by(ProvisionedNumber.id))])


def test_a_crash_between_buying_and_adding_is_reconciled(carrier_app, admin, pool,
                                                         twilio_fake, monkeypatch):
    account(admin)
    api = twilio_api(twilio_fake)

    def crash(*_args, **_kwargs):
        raise SystemExit("the process died here")

    monkeypatch.setattr(provisioning, "add_to_pool", crash)
    with pytest.raises(SystemExit):
        buy(carrier_app, pool, api, "crash-key-0001")
    [(number, state)] = states(carrier_app)
    assert state == "bought" and number in twilio_fake.owned
    assert number not in pool_numbers(admin, pool)
    monkeypatch.undo()

    # The worker's pass (as `dni worker` runs it), reaching the fake through the settings.
    from dni_server.worker import Worker

    assert Worker(carrier_app).numbers.run_once(now_ms(), force=True) == {
        "added": 1, "bought": 0, "failed": 0, "released": 0, "waiting": 0}
    assert states(carrier_app) == [(number, "added")]
    assert number in pool_numbers(admin, pool)
    assert twilio_fake.count("buy") == 1  # reconciling never buys


def test_a_timed_out_buy_is_looked_up_at_the_carrier(carrier_app, admin, pool, twilio_fake):
    account(admin)
    twilio_fake.hang_next("buy", 1, seconds=1.5)  # Twilio buys it; the client gave up
    [(number, state)] = buy(carrier_app, pool, twilio_api(twilio_fake, timeout=0.5),
                            "timeout-key-01")
    assert state == "buying"
    api = twilio_api(twilio_fake)
    wait_for(lambda: number in twilio_fake.owned)  # the carrier finishes after the time-out
    # Not yet: the request that left it may still be running.
    assert reconcile(carrier_app, api) == {"added": 0, "bought": 0, "failed": 0}
    assert reconcile(carrier_app, api, later=dt.timedelta(minutes=5)) == \
        {"added": 1, "bought": 1, "failed": 0}
    assert states(carrier_app) == [(number, "added")]
    assert number in pool_numbers(admin, pool)
    assert twilio_fake.violations == []


def wait_for(condition, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the fake never got there"
        time.sleep(0.05)


def test_a_timed_out_buy_the_carrier_never_made_is_marked_failed(carrier_app, admin, pool,
                                                                 twilio_fake):
    account(admin)
    twilio_fake.hang_next("buy", 1, seconds=1.5, status=503)
    [(number, state)] = buy(carrier_app, pool, twilio_api(twilio_fake, timeout=0.5),
                            "timeout-key-02")
    assert state == "buying"
    assert reconcile(carrier_app, twilio_api(twilio_fake), later=dt.timedelta(minutes=5)) == \
        {"added": 0, "bought": 0, "failed": 1}
    assert states(carrier_app) == [(number, "failed")]
    assert number not in pool_numbers(admin, pool)


def test_a_telnyx_order_confirmed_late_is_reconciled_once_it_is(carrier_app, admin, pool):
    with TelnyxFake(FOR_SALE, pending_polls=100) as fake:
        account(admin, TELNYX)
        slow = TelnyxNumbers(TELNYX_KEY, TELNYX_CONNECTION, fake.url, confirm_seconds=0.2,
                             poll_seconds=0.1, sleep=lambda _s: None)
        [(number, state)] = buy(carrier_app, pool, slow, "telnyx-key-001")
        assert state == "buying"
        api = TelnyxNumbers(TELNYX_KEY, TELNYX_CONNECTION, fake.url)
        later = dt.timedelta(minutes=5)
        # Still pending at the carrier: neither bought nor given up.
        assert reconcile(carrier_app, api, later=later) == {"added": 0, "bought": 0,
                                                            "failed": 0}
        assert states(carrier_app) == [(number, "buying")]
        fake.confirm_all()
        assert reconcile(carrier_app, api, later=later) == {"added": 1, "bought": 1,
                                                            "failed": 0}
        assert number in pool_numbers(admin, pool)
        assert fake.violations == []


def test_accounts_with_bought_numbers_cannot_be_deleted(admin, pool, twilio_fake):
    acct = account(admin)
    provision(admin, pool, {"account": acct["id"], "count": 1, "area_code": "415"})
    response = admin.delete(f"/v1/carrier-accounts/{acct['id']}")
    assert response.status_code == 409 and response.json["error"]["code"] == "account_in_use"


def test_api_for_opens_the_credentials(carrier_app, admin):
    account(admin)

    def run(session, services):
        box = provisioning_box(services)
        acct = session.scalar(select(CarrierAccount))
        return accounts.api_for(acct, box, accounts.CarrierUrls())
    api = service_call(carrier_app, run)
    assert isinstance(api, TwilioNumbers) and api.auth_token == TWILIO_TOKEN


def provisioning_box(services):
    from attribution.conversions.credentials import CredentialBox

    return CredentialBox(services.settings.credentials_keys)


def test_the_same_request_sent_twice_at_once_buys_once(carrier_app, admin, pool, twilio_fake):
    import threading

    acct = account(admin)
    twilio_fake.hang_next("search", 2, seconds=0.5)  # both requests are in flight together
    answers = []

    def send():
        from factories import ADMIN_TOKEN, AdminClient

        client = AdminClient(carrier_app.test_client(), ADMIN_TOKEN)
        answers.append(provision(client, pool, {"account": acct["id"], "count": 2,
                                                "area_code": "415"}, key="same-key-0001"))

    threads = [threading.Thread(target=send) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(a.status_code for a in answers) == [200, 201]
    assert len({a.json["order_id"] for a in answers}) == 1
    assert twilio_fake.count("buy") == 2 and len(twilio_fake.owned) == 2
