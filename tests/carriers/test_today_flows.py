"""Today's call flow through the carrier simulators, over real HTTP: a visitor leases a pool
number, calls it, is forwarded to the destination, recorded, and matched to the visit; on
Twilio and on Telnyx, and on Telnyx with every webhook delivered twice and out of order."""

from __future__ import annotations

import random

import pytest
from sqlalchemy import func, select

from attribution.models import Call
from carriers.scripts import Caller, Line
from carriers.telnyx_sim import seconds_between
from dni_server.extensions import db
from factories import post_session

DESTINATION = "+12125550199"
LANDING = "https://plumbing.example/?utm_source=google&utm_medium=cpc&utm_campaign=pipes&gclid=G1"


def leased_number(carriers, pool) -> tuple[str, str]:
    """A visit from an ad leases a number: (number, session id)."""
    session = post_session(carriers.app.test_client(), pool["site_key"], LANDING).get_json()
    return session["numbers"][0]["number"], session["session_id"]


def stored_calls(carriers) -> int:
    with carriers.app.app_context():
        return db.session.scalar(select(func.count()).select_from(Call))


def assert_matched(detail: dict, session_id: str) -> None:
    a = detail["attribution"]
    assert (a["method"], a["session_id"]) == ("session", session_id)
    assert (a["source"], a["medium"], a["campaign"], a["gclid"]) == ("google", "cpc", "pipes", "G1")


# -- Twilio ----------------------------------------------------------------------------------


def test_twilio_call_is_forwarded_recorded_and_matched(carriers):
    pool = carriers.make_pool(record_calls=True)
    number, session_id = leased_number(carriers, pool)

    call = carriers.twilio.call(number, Caller(talk=75),
                                lines={DESTINATION: Line.answers(after=4)})

    assert call.errors == []
    [dial] = [v for v in call.verbs() if v["verb"] == "Dial"]
    assert dial["numbers"] == [DESTINATION] and dial["callerId"] == Caller().number
    assert dial["answerOnBridge"] is True and dial["record"] == "record-from-answer-dual"
    assert call.bridged.target == DESTINATION and call.duration == 75
    # Twilio's requests, in its order: the call, the forwarded leg's progress, the Dial
    # action, the recording, and the caller's leg completing.
    paths = [r["url"].rsplit("/", 1)[1] for r in call.requests()]
    assert paths == ["voice", "status", "status", "status", "status", "dial", "recording",
                     "status"]
    action = call.requests("/dial")[0]["params"]
    assert (action["DialCallStatus"], action["DialCallDuration"]) == ("completed", "75")
    assert all(r["status"] in (200, 204) for r in call.requests())

    detail = carriers.call_detail(call.sid)
    assert (detail["status"], detail["dial_status"], detail["duration"]) == ("completed",
                                                                            "completed", 75)
    assert detail["recording_url"] == call.recordings[0]["RecordingUrl"]
    assert detail["destination"] == DESTINATION
    assert_matched(detail, session_id)


def test_twilio_busy_destination_ends_the_call_without_talk_time(carriers):
    pool = carriers.make_pool(record_calls=True)
    number, _ = leased_number(carriers, pool)

    call = carriers.twilio.call(number, lines={DESTINATION: Line.busy()})

    assert call.errors == [] and call.bridged is None and call.recordings == []
    assert call.requests("/dial")[0]["params"]["DialCallStatus"] == "busy"
    assert call.verbs()[-1]["verb"] == "Hangup"  # the Dial action's answer
    detail = carriers.call_detail(call.sid)
    assert detail["dial_status"] == "busy" and not detail["duration"]


def test_twilio_callbacks_twice_and_shuffled_give_the_same_call(carriers):
    pool = carriers.make_pool(record_calls=True)
    number, session_id = leased_number(carriers, pool)
    carriers.twilio.redeliver, carriers.twilio.repeat_twiml = True, True
    carriers.twilio.shuffle = random.Random(7)

    call = carriers.twilio.call(number, Caller(talk=75), lines={DESTINATION: Line.answers(4)})

    assert call.errors == [] and call.differing_answers == []
    assert stored_calls(carriers) == 1
    detail = carriers.call_detail(call.sid)
    assert (detail["status"], detail["dial_status"], detail["duration"]) == ("completed",
                                                                            "completed", 75)
    assert detail["recording_url"] == call.recordings[0]["RecordingUrl"]
    assert_matched(detail, session_id)


# -- Telnyx ----------------------------------------------------------------------------------


def test_telnyx_call_is_transferred_and_matched(carriers):
    pool = carriers.make_pool()
    number, session_id = leased_number(carriers, pool)

    call = carriers.telnyx.call(number, Caller(talk=75),
                                lines={DESTINATION: Line.answers(after=4)})

    assert carriers.telnyx.errors == []
    [transfer] = call.commands
    assert transfer["acted"] and transfer["name"] == "transfer"
    assert transfer["leg"] == call.a_leg.control_id
    assert transfer["body"] == {"to": DESTINATION, "from": Caller().number,
                                "command_id": call.events[0]["data"]["id"]}
    assert call.event_types() == [
        "call.initiated", "call.initiated", "call.answered", "call.bridged", "call.bridged",
        "call.hangup", "call.hangup"]
    assert all(status == 204 for _, status in call.deliveries)

    detail = carriers.call_detail(call.session_id)
    assert (detail["status"], detail["duration"]) == ("completed", 75)
    assert detail["destination"] == DESTINATION
    assert_matched(detail, session_id)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_telnyx_webhooks_twice_and_out_of_order_give_one_call(carriers, seed):
    pool = carriers.make_pool()
    number, session_id = leased_number(carriers, pool)
    carriers.telnyx.redeliver = True
    carriers.telnyx.shuffle = random.Random(seed)

    call = carriers.telnyx.call(number, Caller(talk=75), lines={DESTINATION: Line.answers(4)})
    carriers.telnyx.replay(call, seed=seed)  # and all of it once more, in another order

    assert carriers.telnyx.errors == []
    assert [c["name"] for c in call.commands] == ["transfer"]  # one command, sent once
    assert stored_calls(carriers) == 1
    detail = carriers.call_detail(call.session_id)
    assert (detail["status"], detail["dial_status"]) == ("completed", "completed")
    assert detail["destination"] == DESTINATION
    assert_matched(detail, session_id)


def test_telnyx_talk_time_survives_out_of_order_delivery(carriers):
    pool = carriers.make_pool()
    number, _ = leased_number(carriers, pool)
    carriers.telnyx.shuffle = random.Random(1)  # the forwarded leg's hang-up comes first

    call = carriers.telnyx.call(number, Caller(talk=75), lines={DESTINATION: Line.answers(4)})

    assert carriers.telnyx.errors == []
    assert carriers.call_detail(call.session_id)["duration"] == 75


def test_telnyx_busy_destination(carriers):
    pool = carriers.make_pool()
    number, _ = leased_number(carriers, pool)

    call = carriers.telnyx.call(number, Caller(hangup_at=20), lines={DESTINATION: Line.busy()})

    assert carriers.telnyx.errors == []
    b_leg = call.legs[1]
    assert b_leg.outcome == "busy"
    hangups = [e["data"] for e in call.events if e["data"]["event_type"] == "call.hangup"]
    assert [h["payload"]["hangup_cause"] for h in hangups] == ["user_busy", "originator_cancel"]
    assert seconds_between(call.events[0]["data"]["occurred_at"], hangups[-1]["occurred_at"]) == 20
    detail = carriers.call_detail(call.session_id)
    assert detail["dial_status"] == "busy" and not detail["duration"]


def test_telnyx_call_to_a_recording_pool_is_recorded(carriers):
    pool = carriers.make_pool(record_calls=True)
    number, _ = leased_number(carriers, pool)

    call = carriers.telnyx.call(number, Caller(talk=75), lines={DESTINATION: Line.answers(4)})

    assert carriers.telnyx.errors == []
    assert "record" in call.acted("transfer")[0]["body"]
    saved = [e for e in call.events if e["data"]["event_type"] == "call.recording.saved"]
    detail = carriers.call_detail(call.session_id)
    assert detail["recording_url"] == saved[0]["data"]["payload"]["recording_urls"]["mp3"]
