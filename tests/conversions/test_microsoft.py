"""Microsoft Advertising ApplyOfflineConversions (SOAP) against the strict local receiver."""

import datetime as dt
import json
from decimal import Decimal

import pytest

from attribution.conversions.http import deliver
from attribution.conversions.registry import build_destination
from conversions.receivers import STATIC_TOKEN, MicrosoftReceiver
from conversions.samples import NOW, conversion, many

DEV_TOKEN = MicrosoftReceiver.DEVELOPER_TOKEN


def microsoft(receiver, **overrides):
    return build_destination("microsoft", receiver.config(**overrides))


def test_conversion_envelope_is_exactly_as_specified(microsoft_receiver, session):
    outcomes, log = deliver(microsoft(microsoft_receiver), [conversion()], NOW, session)
    assert outcomes[0].status == "sent" and microsoft_receiver.errors == []
    (body,) = microsoft_receiver.received
    assert body["operation"] == "ApplyOfflineConversions"
    assert body["header"] == {"Action": "ApplyOfflineConversions", "AuthenticationToken": STATIC_TOKEN,
                              "CustomerAccountId": "333444", "CustomerId": "111222",
                              "DeveloperToken": DEV_TOKEN}
    assert body["items"] == [{"ConversionCurrencyCode": "USD", "ConversionName": "Qualified call",
                              "ConversionTime": "2026-03-01T18:45:00Z", "ConversionValue": "120",
                              "MicrosoftClickId": "f894f652ea334e739002f7167ab8f8e3"}]
    assert microsoft_receiver.requests[0]["headers"]["Soapaction"] == "ApplyOfflineConversions"
    text = json.dumps(log)
    assert STATIC_TOKEN not in text and DEV_TOKEN not in text and "<DeveloperToken>****" in text


def test_goal_name_must_match_exactly(microsoft_receiver, session):
    convs = [conversion(key="a"), conversion(key="b", name="qualified call")]
    outcomes, _ = deliver(microsoft(microsoft_receiver), convs, NOW, session)
    assert outcomes[0].status == "sent"
    assert outcomes[1].status == "failed" and "OfflineConversionNameInvalid" in outcomes[1].detail


def test_retraction_and_restatement_are_adjustments(microsoft_receiver, session):
    dest = microsoft(microsoft_receiver)
    assert dest.supports_retraction is True
    convs = [conversion(key="c"), conversion(key="r", kind="retraction"),
             conversion(key="s", kind="restatement", value=Decimal("80.5"))]
    outcomes, log = deliver(dest, convs, NOW, session)
    assert [o.status for o in outcomes] == ["sent", "sent", "sent"]
    assert len(log["requests"]) == 2 and microsoft_receiver.errors == []
    adjust = [e for e in microsoft_receiver.events() if e["operation"] == "ApplyOfflineConversionAdjustments"]
    assert adjust == [
        {"operation": "ApplyOfflineConversionAdjustments", "AdjustmentTime": "2026-03-02T12:00:00Z",
         "AdjustmentType": "Retract", "ConversionName": "Qualified call",
         "ConversionTime": "2026-03-01T18:45:00Z", "MicrosoftClickId": "f894f652ea334e739002f7167ab8f8e3"},
        {"operation": "ApplyOfflineConversionAdjustments", "AdjustmentCurrencyCode": "USD",
         "AdjustmentTime": "2026-03-02T12:00:00Z", "AdjustmentType": "Restate", "AdjustmentValue": "80.5",
         "ConversionName": "Qualified call", "ConversionTime": "2026-03-01T18:45:00Z",
         "MicrosoftClickId": "f894f652ea334e739002f7167ab8f8e3"}]


def test_rate_limit_fault_is_retried_after_60_seconds(microsoft_receiver, session):
    microsoft_receiver.fault_next(1)
    outcomes, log = deliver(microsoft(microsoft_receiver), many(2), NOW, session)
    assert {o.status for o in outcomes} == {"retry"} and outcomes[0].retry_after == 60.0
    assert "CallRateExceeded" in outcomes[0].detail and log["status"] == 500
    microsoft_receiver.fail_next(1, 500)  # InternalError: temporary
    outcomes, _ = deliver(microsoft(microsoft_receiver), many(2), NOW, session)
    assert {o.status for o in outcomes} == {"retry"}
    outcomes, _ = deliver(microsoft(microsoft_receiver), many(2), NOW, session)
    assert {o.status for o in outcomes} == {"sent"} and len(microsoft_receiver.events()) == 2


def test_bad_credentials_fail_with_the_fault_message(microsoft_receiver, session):
    outcomes, log = deliver(microsoft(microsoft_receiver, developer_token="wrong-developer-token"),
                            [conversion()], NOW, session)
    assert outcomes[0].status == "failed" and "InvalidCredentials (105)" in outcomes[0].detail
    assert "wrong-developer-token" not in json.dumps(log)


def test_limits_and_consent(microsoft_receiver, session):
    dest = microsoft(microsoft_receiver)
    old = conversion(key="old", occurred_at=NOW - dt.timedelta(days=91))
    convs = [old, conversion(key="nc", consent=False), conversion(key="nm", msclkid=None)]
    outcomes, _ = deliver(dest, convs, NOW, session)
    assert [o.status for o in outcomes] == ["failed", "skipped", "skipped"]
    assert "90 days" in outcomes[0].detail and microsoft_receiver.requests == []


def test_oauth_refresh_supplies_the_authentication_token(microsoft_receiver, session):
    config = microsoft_receiver.config(access_token=None, client_id="client-id-42",
                                       client_secret="client-secret-0123456789",
                                       refresh_token="refresh-token-0123456789",
                                       token_url=microsoft_receiver.url + "/token")
    dest = build_destination("microsoft", config)
    outcomes, _ = deliver(dest, [conversion()], NOW, session)
    assert outcomes[0].status == "sent" and microsoft_receiver.token_requests == 1
    assert microsoft_receiver.errors == []


@pytest.mark.parametrize("config,key", [
    ({"account_id": "1", "developer_token": "d", "access_token": "t"}, "customer_id"),
    ({"customer_id": "1", "developer_token": "d", "access_token": "t"}, "account_id"),
    ({"customer_id": "1", "account_id": "1", "access_token": "t"}, "developer_token"),
    ({"customer_id": "1", "account_id": "x", "developer_token": "d", "access_token": "t"}, "account_id"),
])
def test_config_errors_name_the_key(config, key):
    with pytest.raises(ValueError, match=key):
        build_destination("microsoft", config)
