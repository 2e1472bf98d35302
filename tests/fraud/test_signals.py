"""Fraud signals, the score and the policy: pure functions, checked value by value."""

from __future__ import annotations

import datetime as dt

import pytest

from attribution.fraud import signals as sig
from attribution.fraud.lists import match, parse_value
from attribution.fraud.policy import action_for, effective, validate_policy
from attribution.fraud.score import score

NOW = dt.datetime(2026, 12, 6, 15, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(("verstat", "level", "verified", "fired"), [
    ("TN-Validation-Passed-A", "A", True, False),
    ("TN-Validation-Passed-B", "B", True, False),
    ("TN-Validation-Passed-C", "C", True, True),
    ("TN-Validation-Failed-A", "A", False, True),
    ("TN-Validation-Failed-B", "B", False, True),
    ("TN-Validation-Failed-C", "C", False, True),
    ("No-TN-Validation", None, None, True),
])
def test_every_twilio_attestation_value(verstat, level, verified, fired):
    found = sig.attestation_of("twilio", {"StirVerstat": verstat})
    assert (found["level"], found["verified"], found["raw"]) == (level, verified, verstat)
    assert sig.stir_shaken(found).fired is fired


def test_no_attestation_is_no_evidence():
    assert sig.attestation_of("twilio", {"From": "+14155550100"}) is None
    assert sig.attestation_of("twilio", {"StirVerstat": "  "}) is None
    assert sig.stir_shaken(None) == sig.Signal("stir_shaken", None, False)


@pytest.mark.parametrize(("level", "validated", "fired"), [
    ("A", True, False), ("B", True, False), ("C", True, True), ("A", False, True),
    ("C", None, True),
])
def test_telnyx_attestation(level, validated, fired):
    body = {"data": {"payload": {"shaken_stir_attestation": level,
                                 "shaken_stir_validated": validated}}}
    found = sig.attestation_of("telnyx", body)
    assert (found["level"], found["verified"]) == (level, validated)
    assert sig.stir_shaken(found).fired is fired
    assert sig.attestation_of("telnyx", {"data": {"payload": {}}}) is None


@pytest.mark.parametrize(("raw", "value"), [
    ("anonymous", "anonymous"), ("Restricted", "anonymous"), ("", "anonymous"),
    ("+1234", "not_e164"), ("client:alice", "not_e164"),
    ("+19005550123", "premium_rate"), ("+14155550100", None),
])
def test_caller_id(raw, value):
    found = sig.caller_id_invalid(raw)
    assert (found.value, found.fired) == (value, value is not None)


def test_caller_from_an_unexpected_country():
    assert sig.caller_id_invalid("+442079460000", ["US", "CA"]).value == "country:GB"
    assert not sig.caller_id_invalid("+442079460000").fired
    assert not sig.caller_id_invalid("+14155550100", ["us"]).fired


def test_block_list_matches_the_most_specific_live_entry():
    def entry(value, site_id=None, expires=None):
        return {"id": value, "value": value, "kind": "prefix", "reason": "r",
                "site_id": site_id, "expires_at": expires}

    blocks = {"+1900": [entry("+1900")], "+1415555": [entry("+1415555", site_id=7)],
              "+14155550100": [entry("+14155550100", expires=(NOW - dt.timedelta(1)).isoformat())]}
    assert match("+19005550123", blocks, None, NOW)["value"] == "+1900"
    assert match("+14155550100", blocks, 7, NOW)["value"] == "+1415555"  # the expired skipped
    assert match("+14155550100", blocks, 8, NOW) is None  # another site's entry
    assert match("anonymous", blocks, 7, NOW) is None


@pytest.mark.parametrize(("raw", "out"), [
    ("+14155550100", ("+14155550100", "number")), ("+1 (415) 555-0100", ("+14155550100", "number")),
    ("+1", ("+1", "prefix")), ("+1900", ("+1900", "prefix")), ("+1415555", ("+1415555", "prefix")),
])
def test_block_values(raw, out):
    assert parse_value(raw) == out


@pytest.mark.parametrize("raw", ["", "1415", "+0123", "+" + "1" * 16, 14155550100, "+1a"])
def test_bad_block_values(raw):
    with pytest.raises(ValueError):
        parse_value(raw)


def test_repeat_cross_instant_geo_hugging_and_shared_lease():
    assert sig.repeat_burst(4, 4, 10).fired and not sig.repeat_burst(3, 4, 10).fired
    assert sig.cross_publisher(1, 7).fired and not sig.cross_publisher(0, 7).fired
    assert sig.cross_publisher(1, 7).value == {"other_publishers": 1, "days": 7}
    # One other publisher is shopping around: alone, below the default flag (50).
    assert score([sig.cross_publisher(1, 7)])[0] == 30
    assert score([sig.cross_publisher(2, 7)])[0] == 60
    assert sig.instant_call(2.0, 5).fired and not sig.instant_call(40.0, 5).fired
    assert not sig.instant_call(None, 5).fired
    assert sig.geo_mismatch("US", "CA", "US", "NY").fired
    assert sig.geo_mismatch("US", "CA", "GB", None).value["level"] == "country"
    assert not sig.geo_mismatch("US", "CA", "US", "CA").fired
    assert not sig.geo_mismatch(None, None, "US", "NY").fired
    assert sig.threshold_hugging(63, [60], 5).value == {"duration": 63, "thresholds": [60],
                                                        "seconds_past": 3}
    assert not sig.threshold_hugging(59, [60], 5).fired
    assert not sig.threshold_hugging(90, [60], 5).fired
    assert not sig.threshold_hugging(63, [0], 5).fired  # no threshold: nothing to hug
    assert score([sig.threshold_hugging(63, [60], 5)])[0] == 30
    assert score([sig.threshold_hugging(63, [60], 5, hugged_before=1)])[0] == 50
    assert sig.threshold_hugging(63, [60], 5, hugged_before=2).value["hugged_before"] == 2
    assert sig.shared_lease(3).fired and not sig.shared_lease(2).fired
    assert sig.scraped_number(True, "unattributed", None).fired
    assert not sig.scraped_number(True, "session", "s1").fired
    assert not sig.scraped_number(True, "fallback", None).fired
    assert not sig.scraped_number(False, "static", None).fired


def test_the_score_names_every_contribution_and_is_capped():
    found = [sig.listed({"value": "+1900", "reason": "x", "site_id": None}),
             sig.stir_shaken({"level": "A", "verified": False, "raw": "TN-Validation-Failed-A"}),
             sig.caller_id_invalid("+14155550100")]
    points, parts = score(found)
    assert points == 100
    assert parts == [{"signal": "listed", "points": 100}, {"signal": "stir_shaken", "points": 50}]
    assert score([sig.caller_id_invalid("+14155550100")]) == (0, [])
    assert score([sig.repeat_burst(6, 4, 10)])[0] == 70


def test_the_policy_decides_by_threshold_and_only_before_ringing_blocks():
    policy = effective({})  # a site with a policy enforces it
    assert policy["enforce"] is True
    assert [action_for(s, policy, pre_ring=True) for s in (0, 49, 50, 70, 90, 100)] == [
        "none", "none", "flag", "challenge", "block", "block"]
    assert action_for(100, policy, pre_ring=False) == "flag"


def test_without_a_policy_scores_are_only_recorded():
    assert effective(None)["enforce"] is False
    assert action_for(100, effective(None), pre_ring=True) == "none"
    assert action_for(100, effective({"enforce": False}), pre_ring=True) == "none"


@pytest.mark.parametrize("bad", [
    {"flag": 70, "challenge": 60}, {"block": 102}, {"flag": True}, {"nope": 1},
    {"burst_calls": 1}, {"expected_countries": ["USA"]}, {"challenge_text": ""}, [],
    {"enforce": "yes"},
])
def test_bad_policies(bad):
    with pytest.raises(ValueError):
        validate_policy(bad)


def test_a_policy_keeps_only_its_own_settings():
    assert validate_policy({"flag": 30, "expected_countries": ["US"]}) == {
        "flag": 30, "expected_countries": ["US"]}


# Each weak signal firing alone, at its strongest value: evidence that also fires on honest
# calls by chance must not hold a call by itself at the default flag.
WEAK_ALONE = [
    sig.cross_publisher(1, 7), sig.threshold_hugging(61, [60], 5),
    sig.threshold_hugging(200, [], 5, buyer=(61, 60)), sig.geo_mismatch("US", "CA", "GB", None),
    sig.instant_call(0.0, 5), sig.scraped_number(True, "unattributed", None),
    sig.caller_id_invalid("anonymous"), sig.caller_id_invalid("12"),
    sig.caller_id_invalid("+442079460018", ["US"]),
    sig.stir_shaken({"level": "C", "verified": True, "raw": "TN-Validation-Passed-C"}),
    sig.stir_shaken({"level": None, "verified": None, "raw": "No-TN-Validation"}),
]


@pytest.mark.parametrize("weak", WEAK_ALONE, ids=lambda s: f"{s.name}:{s.value}")
def test_a_single_weak_signal_never_reaches_the_default_flag(weak):
    assert weak.fired
    assert score([weak])[0] < effective({})["flag"]


def test_strong_signals_hold_a_call_alone():
    strong = [sig.cross_publisher(2, 7), sig.threshold_hugging(61, [60], 5, hugged_before=1),
              sig.stir_shaken({"level": "A", "verified": False, "raw": "TN-Validation-Failed-A"}),
              sig.repeat_burst(5, 4, 10)]
    assert all(score([s])[0] >= effective({})["flag"] for s in strong)


def test_the_recordings_analysis_adds_its_signals_once_known():
    assert sig.from_recording(None) == []
    assert sig.from_recording({"status": "queued"}) == []  # not analysed: unknown, not "no"
    quiet = sig.from_recording({"status": "ok", "one_sided": False, "voicemail": False,
                                "fraud_signals": []})
    assert [(s.name, s.fired) for s in quiet] == [
        ("one_sided", False), ("voicemail", False), ("fraud_keyword", False)]
    heard = {s.name: s for s in sig.from_recording({
        "status": "ok", "one_sided": True, "voicemail": False,
        "fraud_signals": ["one_sided", "robocall"]})}
    assert heard["one_sided"].fired and not heard["voicemail"].fired
    assert heard["fraud_keyword"].fired and heard["fraud_keyword"].value == ["robocall"]
    # One side alone only adds up; with a keyword the site listed as fraud, the call is held.
    assert score([heard["one_sided"]])[0] < effective({})["flag"]
    assert score(list(heard.values()))[0] >= effective({})["flag"]


def test_insight_arriving_after_the_call_is_weighed_with_its_other_signals():
    """The worker writes the analysis, then qualifies the call again: ``after_call`` adds
    the recording's signals to those stored before ringing, and holds the call."""
    from types import SimpleNamespace

    from attribution.fraud import assess

    call = SimpleNamespace(
        id=1, site_id=None, publisher=None, session_id=None, repeat_caller=False,
        duration=95, ended_at=dt.datetime(2026, 5, 1, 10, 2, tzinfo=dt.UTC),
        started_at=dt.datetime(2026, 5, 1, 10, 0, tzinfo=dt.UTC), from_valid=True,
        review_state=None, risk_score=0, fraud_action=None,
        fraud_signals={"signals": [sig.geo_mismatch("US", "CA", "US", "NY").as_dict()],
                       "policy": {"enforce": True}},
        insight={"status": "ok", "one_sided": True, "voicemail": False,
                 "fraud_signals": ["one_sided"]})
    assess.after_call(None, call, [60])
    names = {s["name"]: s["fired"] for s in call.fraud_signals["signals"]}
    assert names["one_sided"] and not names["voicemail"] and not names["fraud_keyword"]
    assert names["geo_mismatch"]  # what was known before ringing is kept
    assert {p["signal"] for p in call.fraud_signals["contributions"]} == {
        "geo_mismatch", "one_sided"}
    assert call.risk_score == 50 and call.review_state == "pending"  # 40 + 10: two signals
    call.review_state = "approved"  # a person looked: a later analysis does not undo it
    call.insight = {"status": "ok", "one_sided": True, "voicemail": False,
                    "fraud_signals": ["one_sided", "robocall"]}  # analysed again
    assess.after_call(None, call, [60])
    assert call.risk_score == 100 and call.review_state == "approved"
    assert {p["signal"] for p in call.fraud_signals["contributions"]} == {
        "geo_mismatch", "one_sided", "fraud_keyword"}
