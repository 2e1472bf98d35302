"""Meta Conversions API against the strict local receiver."""

import datetime as dt
import json

import pytest
import requests

from attribution.conversions import hashing
from attribution.conversions.http import deliver
from attribution.conversions.registry import build_destination
from conversions.receivers import MetaReceiver
from conversions.samples import CALL_AT, CLICK_AT, NOW, conversion, many

TOKEN = MetaReceiver.ACCESS_TOKEN


def meta(receiver, **overrides):
    return build_destination("meta", receiver.config(**overrides))


def test_event_is_sent_exactly_as_specified(meta_receiver, session):
    dest = meta(meta_receiver, test_event_code="TEST123")
    outcomes, log = deliver(dest, [conversion(name="Lead")], NOW, session)
    assert outcomes[0].status == "sent" and outcomes[0].extra["fbtrace_id"]
    assert meta_receiver.errors == []
    (body,) = meta_receiver.received
    assert body == {"test_event_code": "TEST123", "data": [{
        "event_name": "Lead", "event_time": int(CALL_AT.timestamp()), "action_source": "phone_call",
        "event_id": "call-4711-qualified",
        "user_data": {"ph": [hashing.meta_phone_hash("+16505550123")],
                      "fbc": f"fb.1.{int(CLICK_AT.timestamp() * 1000)}.IwAR-example"},
        "custom_data": {"value": 120, "currency": "USD"}}]}
    assert body["data"][0]["event_time"] == 1772390700
    assert body["data"][0]["user_data"]["ph"] == [
        "26cb4f0c031f8e3956a484b9af6e06210874c4f08470f03f4f8a4d411da745ec"]
    assert meta_receiver.requests[0]["path"] == "/v23.0/1122334455/events"
    assert meta_receiver.requests[0]["query"]["access_token"] == TOKEN
    assert TOKEN not in json.dumps(log) and "access_token=****" in log["url"]


def test_fbp_only_when_captured(meta_receiver, session):
    deliver(meta(meta_receiver), [conversion(key="a", fbp="fb.1.1772380000000.1234567890"),
                                  conversion(key="b")], NOW, session)
    first, second = meta_receiver.events()
    assert first["user_data"]["fbp"] == "fb.1.1772380000000.1234567890"
    assert "fbp" not in second["user_data"]
    assert meta_receiver.errors == []


def test_old_event_is_never_sent_and_does_not_sink_the_batch(meta_receiver, session):
    old = conversion(key="old", occurred_at=NOW - dt.timedelta(days=7, minutes=1))
    outcomes, _ = deliver(meta(meta_receiver), [old, *many(2)], NOW, session)
    assert outcomes[0].status == "failed" and "7 days" in outcomes[0].detail
    assert [o.status for o in outcomes[1:]] == ["sent", "sent"]
    assert [e["event_id"] for e in meta_receiver.events()] == ["call-1-qualified", "call-2-qualified"]
    assert meta_receiver.errors == []


def test_receiver_rejects_the_whole_request_for_an_old_event_like_meta(meta_receiver, session):
    dest = meta(meta_receiver)
    old = dest.event(conversion(occurred_at=NOW - dt.timedelta(days=8)))
    response = requests.post(f"{meta_receiver.url}/v23.0/1122334455/events", params={"access_token": TOKEN},
                             json={"data": [dest.event(conversion(key="ok")), old]}, timeout=5)
    assert response.status_code == 400 and response.json()["error"]["error_subcode"] == 2804003
    outcomes = dest.read(response.status_code, response.headers, response.content, [conversion(key="x")])
    assert outcomes[0].status == "failed" and "Event Timestamp Too Old" in outcomes[0].detail
    assert meta_receiver.received == []


def test_without_consent_nothing_identifying_is_sent(meta_receiver, session):
    conv = conversion(consent=False, fbp="fb.1.1772380000000.1")
    outcomes, _ = deliver(meta(meta_receiver), [conv], NOW, session)
    assert outcomes[0].status == "skipped" and "consent" in outcomes[0].detail
    assert meta_receiver.requests == []


def test_phone_alone_is_enough(meta_receiver, session):
    outcomes, _ = deliver(meta(meta_receiver), [conversion(fbclid=None)], NOW, session)
    assert outcomes[0].status == "sent"
    assert set(meta_receiver.events()[0]["user_data"]) == {"ph"}


@pytest.mark.parametrize("status,body", [
    (500, None),
    (400, json.dumps({"error": {"message": "User request limit reached", "type": "OAuthException",
                                "code": 17, "fbtrace_id": "A"}})),
])
def test_transient_errors_are_retried(meta_receiver, session, status, body):
    meta_receiver.fail_next(1, status, body=body)
    outcomes, _ = deliver(meta(meta_receiver), [conversion()], NOW, session)
    assert outcomes[0].status == "retry"
    outcomes, _ = deliver(meta(meta_receiver), [conversion()], NOW, session)
    assert outcomes[0].status == "sent" and len(meta_receiver.events()) == 1


def test_bad_token_fails_with_metas_message_and_no_bisecting(meta_receiver, session):
    outcomes, log = deliver(meta(meta_receiver, access_token="bad-token-0123456789"), many(4), NOW, session)
    assert {o.status for o in outcomes} == {"failed"}
    assert "Invalid OAuth access token" in outcomes[0].detail and "(code 190)" in outcomes[0].detail
    assert len(log["requests"]) == 1 and "bad-token-0123456789" not in json.dumps(log)


def test_an_invalid_event_is_isolated(meta_receiver, session):
    convs = many(4)
    convs[1] = conversion(key="call-2-qualified", currency="US")  # not ISO 4217: Meta refuses the request
    dest = meta(meta_receiver)
    dest._common_checks = lambda conv: None  # let it through to the platform
    outcomes, log = deliver(dest, convs, NOW, session)
    assert [o.status for o in outcomes] == ["sent", "failed", "sent", "sent"]
    assert "custom_data" in outcomes[1].detail and len(log["requests"]) == 5


@pytest.mark.parametrize("config,key", [
    ({"access_token": "t"}, "pixel_id"),
    ({"pixel_id": "abc", "access_token": "t"}, "pixel_id"),
    ({"pixel_id": "1"}, "access_token"),
    ({"pixel_id": "1", "access_token": "t", "api_version": "23"}, "api_version"),
])
def test_config_errors_name_the_key(config, key):
    with pytest.raises(ValueError, match=key):
        build_destination("meta", config)
