"""Google Data Manager events:ingest against the strict local receiver."""

import datetime as dt
import json
import socket

import pytest

from attribution.conversions import hashing
from attribution.conversions.http import deliver
from attribution.conversions.registry import build_destination
from conversions.receivers import CLIENT_SECRET, REFRESH_TOKEN, STATIC_TOKEN
from conversions.samples import NOW, conversion, many


def google(receiver, **overrides):
    return build_destination("google", receiver.config(**overrides))


def test_one_conversion_is_sent_exactly_as_specified(google_receiver, session):
    dest = google(google_receiver)
    outcomes, log = deliver(dest, [conversion()], NOW, session)
    assert [o.status for o in outcomes] == ["sent"]
    assert google_receiver.errors == []
    (body,) = google_receiver.received
    assert body["destinations"] == [{
        "operatingAccount": {"accountType": "GOOGLE_ADS", "accountId": "1234567890"},
        "productDestinationId": "555000111"}]
    assert body["encoding"] == "HEX"
    assert body["consent"] == {"adUserData": "CONSENT_GRANTED", "adPersonalization": "CONSENT_DENIED"}
    assert "validateOnly" not in body
    assert body["events"] == [{
        "transactionId": "call-4711-qualified", "eventTimestamp": "2026-03-01T18:45:00Z",
        "eventSource": "PHONE", "adIdentifiers": {"gclid": "EAIaIQobChMI-example"},
        "userData": {"userIdentifiers": [{"phoneNumber": hashing.google_phone_hash("+16505550123")}]},
        "conversionValue": 120, "currency": "USD"}]
    assert google_receiver.requests[0]["headers"]["Authorization"] == f"Bearer {STATIC_TOKEN}"
    assert log["status"] == 200 and log["url"].endswith("/v1/events:ingest")
    assert STATIC_TOKEN not in json.dumps(log)


def test_login_account_and_numeric_rule_name_choose_the_destination(google_receiver, session):
    dest = google(google_receiver, login_account_id="987-654-3210")
    deliver(dest, [conversion(name="777000111", key="a"), conversion(name="Qualified call", key="b")],
            NOW, session)
    actions = sorted(b["destinations"][0]["productDestinationId"] for b in google_receiver.received)
    assert actions == ["555000111", "777000111"]  # one request per conversion action
    assert google_receiver.received[0]["destinations"][0]["loginAccount"] == {
        "accountType": "GOOGLE_ADS", "accountId": "9876543210"}
    assert google_receiver.errors == []


@pytest.mark.parametrize("ids,expected", [
    ({"gclid": "G", "gbraid": "B", "wbraid": "W"}, {"gclid": "G"}),
    ({"gclid": None, "gbraid": "B", "wbraid": "W"}, {"gbraid": "B"}),
    ({"gclid": None, "gbraid": None, "wbraid": "W"}, {"wbraid": "W"}),
])
def test_exactly_one_click_id_and_no_phone_beside_braids(google_receiver, session, ids, expected):
    outcomes, _ = deliver(google(google_receiver), [conversion(**ids)], NOW, session)
    assert outcomes[0].status == "sent"
    (event,) = google_receiver.events()
    assert event["adIdentifiers"] == expected
    assert ("userData" in event) == ("gclid" in expected)
    assert google_receiver.errors == []


def test_phone_alone_is_an_enhanced_conversion_for_leads(google_receiver, session):
    outcomes, _ = deliver(google(google_receiver, encoding="BASE64"), [conversion(gclid=None)], NOW, session)
    assert outcomes[0].status == "sent"
    (event,) = google_receiver.events()
    assert "adIdentifiers" not in event
    assert event["userData"]["userIdentifiers"] == [
        {"phoneNumber": hashing.google_phone_hash("+16505550123", encoding="BASE64")}]
    assert google_receiver.received[0]["encoding"] == "BASE64"
    assert google_receiver.errors == []


def test_without_consent_nothing_is_sent(google_receiver, session):
    outcomes, log = deliver(google(google_receiver), [conversion(consent=False)], NOW, session)
    assert outcomes[0].status == "skipped" and "consent" in outcomes[0].detail
    assert google_receiver.requests == [] and log["requests"] == []


def test_no_identifier_at_all_is_skipped_and_junk_caller_ignored(google_receiver, session):
    dest = google(google_receiver)
    assert "no gclid" in dest.check(conversion(gclid=None, caller_e164=None), NOW)
    assert dest.check(conversion(gclid=None, caller_e164="anonymous"), NOW).status == "skipped"
    outcomes, _ = deliver(dest, [conversion(caller_e164="anonymous")], NOW, session)
    assert outcomes[0].status == "sent"
    assert "userData" not in google_receiver.events()[0] and "encoding" not in google_receiver.received[0]


def test_retractions_are_marked_not_sent(google_receiver, session):
    dest = google(google_receiver)
    assert dest.supports_retraction is False
    outcomes, _ = deliver(dest, [conversion(kind="retraction")], NOW, session)
    assert outcomes[0].status == "skipped" and google_receiver.requests == []


def test_batches_hold_at_most_2000_events(google_receiver, session):
    convs = many(2001)
    outcomes, log = deliver(google(google_receiver), convs, NOW, session)
    assert {o.status for o in outcomes} == {"sent"}
    assert [len(b["events"]) for b in google_receiver.received] == [2000, 1]
    assert len(log["requests"]) == 2 and google_receiver.errors == []


def test_unavailable_then_up_is_retried_with_retry_after(google_receiver, session):
    google_receiver.fail_next(1, 503, {"Retry-After": "7"})
    dest = google(google_receiver)
    outcomes, log = deliver(dest, [conversion()], NOW, session)
    assert outcomes[0].status == "retry" and outcomes[0].retry_after == 7.0
    assert log["status"] == 503
    google_receiver.fail_next(1, 429, {"Retry-After": "Mon, 02 Mar 2026 12:00:30 GMT"})
    outcomes, _ = deliver(dest, [conversion()], NOW, session)
    assert outcomes[0].status == "retry" and outcomes[0].retry_after is not None
    outcomes, _ = deliver(dest, [conversion()], NOW, session)
    assert outcomes[0].status == "sent" and len(google_receiver.events()) == 1


def test_network_error_is_a_retry(session):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once we leave: nothing listens there
    dest = build_destination("google", {"base_url": f"http://127.0.0.1:{port}",
                                        "operating_account_id": "1234567890",
                                        "conversion_action_id": "1", "access_token": STATIC_TOKEN})
    outcomes, log = deliver(dest, [conversion()], NOW, session, timeout=2)
    assert outcomes[0].status == "retry" and "network error" in outcomes[0].detail
    assert log["status"] is None and "ConnectionError" in log["error"]


@pytest.mark.parametrize("name_events", [True, False])
def test_a_bad_event_is_isolated_and_the_good_ones_sent(google_receiver, session, name_events):
    convs = many(8)
    google_receiver.reject({"call-3-qualified", "call-6-qualified"}, name_events=name_events)
    outcomes, log = deliver(google(google_receiver), convs, NOW, session)
    status = {o.key: o.status for o in outcomes}
    assert [k for k, s in status.items() if s == "failed"] == ["call-3-qualified", "call-6-qualified"]
    assert sorted(e["transactionId"] for e in google_receiver.events()) == sorted(
        c.key for c in convs if c.key not in ("call-3-qualified", "call-6-qualified"))
    assert "INVALID_ARGUMENT" in outcomes[2].detail
    # named events: one rejected request and one resend; unnamed: a bisection
    assert len(log["requests"]) == (2 if name_events else 11)
    assert google_receiver.errors == []


def test_a_request_level_error_fails_all_without_bisecting(google_receiver, session):
    body = {"error": {"code": 400, "status": "INVALID_ARGUMENT", "message": "Invalid conversion action",
                      "details": [{"reason": "INVALID_CONVERSION_ACTION_ID", "fieldViolations": [
                          {"field": "destinations[0].productDestinationId", "description": "unknown"}]}]}}
    google_receiver.fail_next(1, 400, {"Content-Type": "application/json"}, json.dumps(body))
    outcomes, log = deliver(google(google_receiver), many(4), NOW, session)
    assert {o.status for o in outcomes} == {"failed"}
    assert "INVALID_CONVERSION_ACTION_ID" in outcomes[0].detail and len(log["requests"]) == 1


def test_unauthenticated_fails_with_googles_message(google_receiver, session):
    dest = google(google_receiver, access_token="wrong-token-000000")
    outcomes, _ = deliver(dest, [conversion()], NOW, session)
    assert outcomes[0].status == "failed" and "UNAUTHENTICATED" in outcomes[0].detail


def test_refreshed_token_is_cached_and_never_logged(google_receiver, session):
    dest = build_destination("google", google_receiver.refresh_config())
    outcomes, log1 = deliver(dest, [conversion(key="a")], NOW, session)
    _, log2 = deliver(dest, [conversion(key="b")], NOW + dt.timedelta(minutes=30), session)
    assert outcomes[0].status == "sent" and google_receiver.token_requests == 1
    deliver(dest, [conversion(key="c")], NOW + dt.timedelta(hours=2), session)
    assert google_receiver.token_requests == 2  # expired: refreshed
    token = google_receiver.requests[-1]["headers"]["Authorization"][7:]
    redacted = dest.redact(f"x {token} {REFRESH_TOKEN} {CLIENT_SECRET}")
    for text in (json.dumps(log1), json.dumps(log2), redacted):
        assert token not in text and REFRESH_TOKEN not in text and CLIENT_SECRET not in text
    assert google_receiver.errors == []


def test_failed_refresh_is_a_retry(google_receiver, session):
    dest = build_destination("google", google_receiver.refresh_config(refresh_token="revoked-token-1234"))
    outcomes, log = deliver(dest, [conversion()], NOW, session)
    assert outcomes[0].status == "retry" and "invalid_grant" in outcomes[0].detail
    assert "revoked-token-1234" not in json.dumps(log)


def test_validate_only_ingests_nothing(google_receiver, session):
    outcomes, _ = deliver(google(google_receiver, validate_only="true"), [conversion()], NOW, session)
    assert outcomes[0].status == "skipped" and "validateOnly" in outcomes[0].detail
    assert google_receiver.received == [] and google_receiver.validated[0]["validateOnly"] is True


@pytest.mark.parametrize("config,key", [
    ({}, "operating_account_id"),
    ({"operating_account_id": "12345"}, "operating_account_id"),
    ({"operating_account_id": "1234567890", "encoding": "hex", "access_token": "t"}, "encoding"),
    ({"operating_account_id": "1234567890"}, "access_token"),
    ({"operating_account_id": "1234567890", "client_id": "c"}, "refresh_token"),
    ({"operating_account_id": "1234567890", "access_token": "t", "base_url": "ftp://x"}, "base_url"),
    ({"operating_account_id": "1234567890", "access_token": "t", "per_minute": "0"}, "per_minute"),
    ({"operating_account_id": "1234567890", "access_token": "t", "conversion_action_id": "abc"},
     "conversion_action_id"),
])
def test_config_errors_name_the_key(config, key):
    with pytest.raises(ValueError, match=key):
        build_destination("google", config)


def test_destination_attributes():
    dest = build_destination("google", {"operating_account_id": "1234567890", "access_token": "t",
                                        "conversion_action_id": "1"})
    assert (dest.kind, dest.max_batch, dest.per_minute) == ("google", 2000, 300)
    assert dest.check(conversion(value=None), NOW) is None
    assert dest.check(conversion(currency="usd"), NOW).status == "failed"
    with pytest.raises(ValueError, match="unknown destination"):
        build_destination("tiktok", {})
