"""Per-buyer fraud policy: a buyer with ``fraud.max_risk`` is not offered calls riskier
than that (skipped with reason ``risk`` in the routing log), and ``threshold_hugging``
weighs a routed call's talk time against its buyer's conversion threshold."""

from __future__ import annotations

import datetime as dt

from carriers.conftest import carriers, telnyx_options  # noqa: F401  (fixtures)
from carriers.scripts import Caller
from carriers.test_routing_twilio import BUYER_1, BUYER_2, buyer, routed_number

from attribution.fraud import signals as sig
from routing.eligibility import CallFacts, static_refusal

NOW = dt.datetime(2026, 3, 2, 15, 0, tzinfo=dt.UTC)
CONTRACT = {"timezone": "America/New_York", "targets": [{"number": BUYER_1}]}


def test_a_buyer_refuses_calls_above_its_risk():
    picky = CONTRACT | {"fraud": {"max_risk": 40}}
    assert static_refusal(picky, CallFacts(risk_score=41), NOW) == "risk"
    assert static_refusal(picky, CallFacts(risk_score=40), NOW) is None
    assert static_refusal(picky, CallFacts(risk_score=None), NOW) is None  # unknown: passes
    assert static_refusal(CONTRACT, CallFacts(risk_score=100), NOW) is None  # no policy


def test_the_buyer_field_is_checked(carriers):  # noqa: F811
    base = {"name": "B", "timezone": "America/New_York", "revenue": "10.00",
            "targets": [{"number": BUYER_1}], "conversion": {"min_duration": 60}}
    for bad in ({"max_risk": 101}, {"max_risk": "40"}, {"max": 40}, {}, [40]):
        response = carriers.admin.post("/v1/buyers", json=base | {"fraud": bad})
        assert response.status_code == 422, (bad, response.get_json())
        assert "fraud" in response.get_json()["error"]["fields"]
    made = carriers.admin.post("/v1/buyers", json=base | {"fraud": {"max_risk": 60}})
    assert made.status_code == 201, made.get_json()
    assert made.get_json()["fraud"] == {"max_risk": 60}


def test_threshold_hugging_weighs_the_buyers_talk_time():
    fired = sig.threshold_hugging(200, [], 5, buyer=(63, 60))
    assert fired.fired and fired.value["seconds_past"] == 3
    assert fired.value["buyer"] == {"talk_seconds": 63, "min_duration": 60}
    assert not sig.threshold_hugging(200, [], 5, buyer=(90, 60)).fired
    assert not sig.threshold_hugging(200, [30], 5).fired
    assert sig.threshold_hugging(33, [30], 5).fired


def test_a_risky_call_skips_the_picky_buyer_on_the_twilio_simulator(carriers):  # noqa: F811
    picky = buyer(carriers, BUYER_1, fraud={"max_risk": 30})
    relaxed = buyer(carriers, BUYER_2)
    number = routed_number(carriers, [{"buyers": [picky], "mode": "weighted"},
                                      {"buyers": [relaxed], "mode": "weighted"}])
    site_key = carriers.admin.get("/v1/sites").get_json()["sites"][-1]["key"]
    # Callers from outside the US score 40 here (caller_id_invalid): held by nobody.
    policy = carriers.admin.put(f"/v1/sites/{site_key}/fraud-policy",
                                json={"settings": {"expected_countries": ["US"]}})
    assert policy.status_code == 200, policy.get_json()

    foreign = carriers.twilio.call(number, Caller(number="+442079460018", talk=63))
    assert foreign.errors == []
    detail = carriers.call_detail(foreign.sid)
    assert detail["routing"]["skipped"] == [{"buyer": picky, "reason": "risk"}]
    assert detail["routing"]["buyer"] == relaxed
    fraud = carriers.admin.get(f"/v1/calls/{foreign.sid}/fraud").get_json()
    assert fraud["risk_score"] >= 40
    hugging = next(s for s in fraud["signals"] if s["name"] == "threshold_hugging")
    assert hugging["fired"] and hugging["value"]["buyer"]["min_duration"] == 60, hugging

    local = carriers.twilio.call(number, Caller(number="+14158675301", talk=120))
    assert local.errors == []
    routing = carriers.call_detail(local.sid)["routing"]
    assert (routing["skipped"], routing["buyer"]) == ([], picky)
    fraud = carriers.admin.get(f"/v1/calls/{local.sid}/fraud").get_json()
    hugging = next(s for s in fraud["signals"] if s["name"] == "threshold_hugging")
    assert not hugging["fired"], hugging
