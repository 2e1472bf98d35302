"""GA4 Measurement Protocol against the strict local receiver."""

import datetime as dt
import json

import pytest

from attribution.conversions.http import deliver
from attribution.conversions.registry import build_destination
from conversions.receivers import GA4Receiver
from conversions.samples import CALL_AT, NOW, conversion, many

SECRET = GA4Receiver.API_SECRET


def ga4(receiver, **overrides):
    return build_destination("ga4", receiver.config(**overrides))


def test_event_is_sent_exactly_as_specified(ga4_receiver, session):
    outcomes, log = deliver(ga4(ga4_receiver), [conversion()], NOW, session)
    assert outcomes[0].status == "sent" and ga4_receiver.errors == []
    assert ga4_receiver.received == [{"client_id": "1234567890.1699999999", "events": [{
        "name": "phone_call_qualified", "timestamp_micros": int(CALL_AT.timestamp()) * 1_000_000,
        "params": {"engagement_time_msec": 100, "call_id": "4711", "transaction_id": "call-4711-qualified",
                   "session_id": "1772390000", "value": 120, "currency": "USD"}}]}]
    request = ga4_receiver.requests[0]
    assert request["path"] == "/mp/collect"
    assert request["query"] == {"measurement_id": "G-TEST1234", "api_secret": SECRET}
    assert SECRET not in json.dumps(log) and log["status"] == 204


def test_ga_cookie_form_and_rule_event_name(ga4_receiver, session):
    conv = conversion(ga_client_id="GA1.1.1234567890.1699999999", name="qualified_call", ga_session_id=None)
    outcomes, _ = deliver(ga4(ga4_receiver), [conv], NOW, session)
    assert outcomes[0].status == "sent"
    (event,) = ga4_receiver.events()
    assert event["client_id"] == "1234567890.1699999999" and event["name"] == "qualified_call"
    assert "session_id" not in event["params"]
    assert ga4_receiver.errors == []


def test_older_than_72_hours_is_never_sent(ga4_receiver, session):
    old = conversion(key="old", occurred_at=NOW - dt.timedelta(hours=72, seconds=1))
    outcomes, _ = deliver(ga4(ga4_receiver), [old, conversion()], NOW, session)
    assert outcomes[0].status == "failed" and "72 hours" in outcomes[0].detail
    assert outcomes[1].status == "sent" and len(ga4_receiver.events()) == 1


def test_at_most_25_events_per_request_and_one_client_per_request(ga4_receiver, session):
    convs = many(30) + [conversion(key="other", ga_client_id="42.43")]
    outcomes, log = deliver(ga4(ga4_receiver), convs, NOW, session)
    assert {o.status for o in outcomes} == {"sent"}
    assert sorted(len(b["events"]) for b in ga4_receiver.received) == [1, 5, 25]
    assert len(log["requests"]) == 3 and ga4_receiver.errors == []


def test_consent_and_missing_client_id_send_nothing(ga4_receiver, session):
    outcomes, _ = deliver(ga4(ga4_receiver), [conversion(consent=False, key="a"),
                                              conversion(ga_client_id=None, key="b")], NOW, session)
    assert [o.status for o in outcomes] == ["skipped", "skipped"]
    assert "consent" in outcomes[0].detail and "client id" in outcomes[1].detail
    assert ga4_receiver.requests == []


def test_validate_mode_uses_the_debug_endpoint_and_reports_messages(ga4_receiver, session):
    convs = [conversion(key="good"), conversion(key="bad", ga_session_id="9" * 101)]
    outcomes, _ = deliver(ga4(ga4_receiver, validate="true"), convs, NOW, session)
    assert ga4_receiver.requests[0]["path"] == "/debug/mp/collect"
    assert outcomes[0].status == "skipped"
    assert outcomes[1].status == "failed" and "VALUE_INVALID" in outcomes[1].detail
    assert ga4_receiver.received == [] and len(ga4_receiver.validated) == 1


def test_server_errors_are_retried(ga4_receiver, session):
    ga4_receiver.fail_next(1, 503, {"Retry-After": "3"})
    outcomes, _ = deliver(ga4(ga4_receiver), [conversion()], NOW, session)
    assert outcomes[0].status == "retry" and outcomes[0].retry_after == 3.0


def test_the_receiver_catches_what_collect_would_silently_drop(ga4_receiver, session):
    dest = ga4(ga4_receiver, api_secret="wrong-secret-0123456789")
    outcomes, _ = deliver(dest, [conversion()], NOW, session)
    assert outcomes[0].status == "sent"  # /mp/collect answers 2xx whatever happens...
    assert ga4_receiver.received == [] and "api_secret" in ga4_receiver.errors[0]  # ...but nothing counted


@pytest.mark.parametrize("config,key", [
    ({"api_secret": "s"}, "measurement_id"),
    ({"measurement_id": "UA-1", "api_secret": "s"}, "measurement_id"),
    ({"measurement_id": "G-1"}, "api_secret"),
    ({"measurement_id": "G-1", "api_secret": "s", "event_name": "ga_call"}, "event_name"),
    ({"measurement_id": "G-1", "api_secret": "s", "validate": "perhaps"}, "validate"),
])
def test_config_errors_name_the_key(config, key):
    with pytest.raises(ValueError, match=key):
        build_destination("ga4", config)
