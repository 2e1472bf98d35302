"""The fraud challenge on Telnyx Call Control, against the Telnyx simulator: the caller is
answered and asked to press 1 (``gather_using_speak``) before being connected; a caller
who does not is asked once more, then hung up; the outcome is stored on the call; a
redelivered event sends no command twice."""

from __future__ import annotations

import pytest
from carriers.conftest import carriers  # noqa: F401  (fixture)
from carriers.scripts import SILENCE, Caller, Keys
from sqlalchemy import select

from attribution.models import Call
from dni_server.extensions import db
from factories import numbers

DESTINATION = "+12125550199"  # Carriers.make_pool's


@pytest.fixture(params=[False, True], ids=["once", "redelivered"])
def telnyx_options(request):
    return {"redeliver": request.param}


def challenging(carriers) -> str:  # noqa: F811
    """A pool whose site challenges callers from outside GB (caller_id_invalid, 40); its
    site's key is kept as ``carriers.site_key``."""
    pool = carriers.make_pool()
    response = carriers.admin.put(
        f"/v1/sites/{pool['site_key']}/fraud-policy",
        json={"settings": {"flag": 5, "challenge": 10, "block": 90,
                           "expected_countries": ["GB"]}})
    assert response.status_code == 200, response.get_json()
    carriers.site_key = pool["site_key"]
    return numbers(3)[0]  # the pool's first number


def outcome(carriers, session_id: str) -> str | None:  # noqa: F811
    with carriers.app.app_context():
        return db.session.scalar(select(Call.fraud_action).where(
            Call.provider == "telnyx", Call.provider_call_id == session_id))


def test_a_caller_who_presses_1_is_connected(carriers):  # noqa: F811
    number = challenging(carriers)
    call = carriers.telnyx.call(number, Caller(number="+14158675309", keys=(Keys("1"),)))
    assert carriers.telnyx.errors == []
    assert [c["name"] for c in call.acted()] == ["answer", "gather_using_speak", "transfer"]
    asked = call.acted("gather_using_speak")[0]["body"]
    assert asked["payload"] == "To be connected, please press 1."
    assert (asked["minimum_digits"], asked["maximum_digits"]) == (1, 1)
    assert call.acted("transfer")[0]["body"]["to"] == DESTINATION
    assert outcome(carriers, call.session_id) == "challenge_passed"
    # Each command went out once, whatever the deliveries: ids are one per step.
    ids = [c["body"]["command_id"] for c in call.commands]
    assert len(set(ids)) == len(call.acted())


def test_a_caller_who_does_not_press_1_is_asked_again_then_hung_up(carriers):  # noqa: F811
    number = challenging(carriers)
    call = carriers.telnyx.call(number, Caller(number="+14158675310",
                                               keys=(Keys("7"), SILENCE)))
    assert carriers.telnyx.errors == []
    assert [c["name"] for c in call.acted()] == [
        "answer", "gather_using_speak", "gather_using_speak", "hangup"]
    assert call.acted("transfer") == []
    assert outcome(carriers, call.session_id) == "challenge_failed"


def test_an_unchallenged_caller_is_transferred_at_once(carriers):  # noqa: F811
    number = challenging(carriers)
    relaxed = carriers.admin.put(f"/v1/sites/{carriers.site_key}/fraud-policy",
                                 json={"settings": {"expected_countries": ["US"]}})
    assert relaxed.status_code == 200, relaxed.get_json()
    call = carriers.telnyx.call(number, Caller(number="+14158675311"))
    assert carriers.telnyx.errors == []
    assert [c["name"] for c in call.acted()] == ["transfer"]
    assert outcome(carriers, call.session_id) == "none"


def test_a_routed_caller_who_presses_1_goes_on_to_the_plan(carriers):  # noqa: F811
    from carriers.test_routing_twilio import BUYER_1, BUYER_2, FALLBACK, buyer

    picky = buyer(carriers, BUYER_2, fraud={"max_risk": 30})  # the caller scores 40
    first = buyer(carriers, BUYER_1)
    plan = carriers.admin.post("/v1/routing-plans", json={
        "name": "Plan", "tiers": [{"buyers": [picky], "mode": "weighted"},
                                  {"buyers": [first], "mode": "weighted"}],
        "fallback": {"number": FALLBACK}})
    assert plan.status_code == 201, plan.get_json()
    pool = carriers.make_pool(routing_plan=plan.get_json()["id"])
    carriers.admin.put(f"/v1/sites/{pool['site_key']}/fraud-policy",
                       json={"settings": {"flag": 5, "challenge": 10,
                                          "expected_countries": ["GB"]}})
    call = carriers.telnyx.call(numbers(1)[0], Caller(number="+14158675312", keys=(Keys("1"),),
                                                      talk=120))
    assert carriers.telnyx.errors == []
    names = [c["name"] for c in call.acted()]
    assert names[:2] == ["answer", "gather_using_speak"]
    assert names.count("answer") == 1  # the plan's turn starts on the answered call
    assert [c["body"]["to"] for c in call.acted("dial")] == [BUYER_1]
    assert "bridge" in names
    assert outcome(carriers, call.session_id) == "challenge_passed"
    routing = carriers.call_detail(call.session_id)["routing"]
    assert routing["buyer"] == first
    assert routing["skipped"] == [{"buyer": picky, "reason": "risk"}]


def test_a_caller_who_leaves_during_the_question_is_not_asked_again(carriers):  # noqa: F811
    number = challenging(carriers)
    call = carriers.telnyx.call(number, Caller(number="+14158675313", hangup_at=2.0))
    assert carriers.telnyx.errors == []
    assert [c["name"] for c in call.acted()] == ["answer", "gather_using_speak"]
    assert outcome(carriers, call.session_id) == "challenge_failed"
