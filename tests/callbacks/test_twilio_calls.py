"""A web callback placed through Twilio: Calls.create against a local fake of Twilio's REST
API, then the legs' webhooks signed as Twilio signs them, to the attributed call."""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET

import pytest

from attribution.callbacks.models import Callback
from attribution.models import Call
from callbacks.fakes import FakeTwilio
from callbacks.helpers import post_callback, site_with_session
from dni_server.callback_worker import CallbackStep
from dni_server.extensions import db
from factories import TWILIO_TOKEN, record, twilio_post
from pools.models import Lease

ACCOUNT = "AC" + "1" * 32
OPEN = dt.datetime(2026, 12, 7, 17, 0, tzinfo=dt.UTC)  # 09:00 in California
VISITOR = "+16505550177"
DESTINATION = "+12125550199"
CLOCK = [OPEN]  # what the webhooks take for now


@pytest.fixture
def twilio_api():
    fake = FakeTwilio(ACCOUNT, TWILIO_TOKEN)
    yield fake
    fake.close()


@pytest.fixture
def setup(make_app, twilio_api, monkeypatch):
    app = make_app(DNI_PUBLIC_URL="http://localhost", DNI_TWILIO_AUTH_TOKEN=TWILIO_TOKEN,
                   DNI_TWILIO_ACCOUNT_SID=ACCOUNT, DNI_TWILIO_API_URL=twilio_api.url,
                   DNI_CALLBACK_RETRY_SECONDS="600", DNI_CALLBACK_MAX_ATTEMPTS="2")
    monkeypatch.setattr("dni_server.api.callbacks.utcnow", lambda: OPEN)
    monkeypatch.setattr("dni_server.api.callback_legs.utcnow", lambda: CLOCK[0])
    CLOCK[0] = OPEN
    from factories import ADMIN_TOKEN, AdminClient

    client = app.test_client()
    admin = AdminClient(app.test_client(), ADMIN_TOKEN)
    site, session = site_with_session(admin, client, destination=DESTINATION)
    record(app)  # the lease reaches SQL: the tracking number the visitor saw
    answer = post_callback(client, site["key"], session, VISITOR)
    assert answer.status_code == 202, answer.get_json()
    with app.app_context():
        tracking = db.session.scalar(db.select(Lease.number).where(Lease.session_id == session))
    return app, client, answer.get_json()["id"], session, tracking


def callback_row(app, callback_id) -> Callback:
    with app.app_context():
        row = db.session.get(Callback, callback_id)
        db.session.expunge(row)
        return row


def place(app, now=OPEN) -> int:
    CLOCK[0] = now
    return CallbackStep(app).run_once(now)


def xml(response) -> ET.Element:
    assert response.status_code == 200, response.data
    assert response.mimetype == "text/xml"
    return ET.fromstring(response.data)


def business_answers(client, callback_id, sid, digits="1"):
    prompt = xml(twilio_post(client, f"/webhooks/callbacks/twilio/business?cb={callback_id}",
                             {"CallSid": sid, "AccountSid": ACCOUNT, "CallStatus": "in-progress"}))
    accepted = xml(twilio_post(client, f"/webhooks/callbacks/twilio/accept?cb={callback_id}",
                               {"CallSid": sid, "AccountSid": ACCOUNT, "Digits": digits}))
    return prompt, accepted


def test_the_business_is_called_then_the_visitor_and_the_call_is_attributed(setup, twilio_api):
    app, client, callback_id, session, tracking = setup
    assert place(app) == 1
    [created] = twilio_api.requests
    base = "http://localhost/webhooks/callbacks/twilio"
    assert created["form"] == {
        "To": DESTINATION, "From": tracking, "Url": f"{base}/business?cb={callback_id}",
        "Method": "POST", "Timeout": "25",
        "StatusCallback": f"{base}/status?cb={callback_id}&leg=business",
        "StatusCallbackEvent": "completed", "StatusCallbackMethod": "POST"}
    assert twilio_api.refusals == []
    row = callback_row(app, callback_id)
    assert row.status == "calling" and row.attempts == 1 and row.business_call_id == created["sid"]

    prompt, accepted = business_answers(client, callback_id, created["sid"])
    gather = prompt.find("Gather")
    assert gather.get("numDigits") == "1"
    assert gather.get("action") == f"{base}/accept?cb={callback_id}"
    assert gather.find("Say").text.startswith("Web callback request from google, page /pricing")
    dial = accepted.find("Dial")
    assert dial.get("callerId") == tracking and dial.get("action") == f"{base}/dialed?cb={callback_id}"
    number = dial.find("Number")
    assert number.text == VISITOR and number.get("machineDetection") == "Enable"
    assert number.get("url") == f"{base}/screen?cb={callback_id}"

    # The visitor answers in person: connected, and the call is created for the visit.
    screen = xml(twilio_post(client, f"/webhooks/callbacks/twilio/screen?cb={callback_id}",
                             {"CallSid": "CAvisitor1", "AccountSid": ACCOUNT,
                              "AnsweredBy": "human", "CallStatus": "in-progress"}))
    assert screen.find("Hangup") is None
    ended = xml(twilio_post(client, f"/webhooks/callbacks/twilio/dialed?cb={callback_id}",
                            {"CallSid": created["sid"], "AccountSid": ACCOUNT,
                             "DialCallStatus": "completed", "DialCallSid": "CAvisitor1",
                             "DialCallDuration": "95"}))
    assert ended.find("Hangup") is not None
    row = callback_row(app, callback_id)
    assert row.status == "completed" and row.last_outcome == "connected"
    assert [a["outcome"] for a in row.attempt_log] == ["connected"]
    with app.app_context():
        call = db.session.get(Call, row.call_id)
        assert call.method == "callback" and call.confidence == 1.0
        assert call.session_id == session and call.source == "google"
        assert call.from_number == VISITOR and call.to_number == tracking
        assert call.status == "completed" and call.duration == 95
        assert call.destination == DESTINATION and call.answered_at is not None
    status = client.get(f"/v1/callbacks/{callback_id}?session_id={session}").get_json()
    assert status["status"] == "completed" and status["attempts"] == 1


def test_a_machine_is_hung_up_on_and_retried_then_failed(setup, twilio_api):
    app, client, callback_id, session, tracking = setup
    for attempt, now in enumerate((OPEN, OPEN + dt.timedelta(minutes=10)), 1):
        assert place(app, now) == 1
        sid = twilio_api.requests[-1]["sid"]
        business_answers(client, callback_id, sid)
        screen = xml(twilio_post(client, f"/webhooks/callbacks/twilio/screen?cb={callback_id}",
                                 {"CallSid": f"CAv{attempt}", "AccountSid": ACCOUNT,
                                  "AnsweredBy": "machine_start"}))
        assert screen.find("Hangup") is not None
        twilio_post(client, f"/webhooks/callbacks/twilio/dialed?cb={callback_id}",
                    {"CallSid": sid, "AccountSid": ACCOUNT, "DialCallStatus": "completed",
                     "DialCallSid": f"CAv{attempt}", "DialCallDuration": "0"})
        row = callback_row(app, callback_id)
        assert row.attempts == attempt and row.last_outcome == "machine"
        if attempt == 1:
            assert row.status == "scheduled"
            assert row.next_attempt_at == OPEN + dt.timedelta(minutes=10)
            assert place(app, OPEN + dt.timedelta(minutes=9)) == 0  # not due yet
    assert row.status == "failed" and row.call_id is None
    assert [a["outcome"] for a in row.attempt_log] == ["machine", "machine"]
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count()).select_from(Call)) == 0


@pytest.mark.parametrize(("status", "outcome"), [("busy", "busy"), ("no-answer", "no-answer")])
def test_busy_or_no_answer_on_the_visitors_side_is_retried(setup, twilio_api, status, outcome):
    app, client, callback_id, _, _ = setup
    place(app)
    sid = twilio_api.requests[-1]["sid"]
    business_answers(client, callback_id, sid)
    said = xml(twilio_post(client, f"/webhooks/callbacks/twilio/dialed?cb={callback_id}",
                           {"CallSid": sid, "AccountSid": ACCOUNT, "DialCallStatus": status}))
    assert "try again later" in said.find("Say").text
    row = callback_row(app, callback_id)
    assert row.status == "scheduled" and row.last_outcome == outcome


def test_the_business_declining_or_not_answering_ends_the_attempt(setup, twilio_api):
    app, client, callback_id, _, _ = setup
    place(app)
    sid = twilio_api.requests[-1]["sid"]
    _, declined = business_answers(client, callback_id, sid, digits="2")
    assert declined.find("Dial") is None and declined.find("Hangup") is not None
    assert callback_row(app, callback_id).last_outcome == "declined"
    place(app, OPEN + dt.timedelta(minutes=10))
    sid = twilio_api.requests[-1]["sid"]
    twilio_post(client, f"/webhooks/callbacks/twilio/status?cb={callback_id}&leg=business",
                {"CallSid": sid, "AccountSid": ACCOUNT, "CallStatus": "no-answer"})
    row = callback_row(app, callback_id)
    assert row.status == "failed" and row.last_outcome == "business_unanswered"


def test_forged_webhooks_are_refused(setup, twilio_api):
    app, client, callback_id, _, _ = setup
    place(app)
    forged = twilio_post(client, f"/webhooks/callbacks/twilio/accept?cb={callback_id}",
                         {"CallSid": "x", "Digits": "1"}, token="not-the-token")
    assert forged.status_code == 403
    assert callback_row(app, callback_id).status == "calling"


def test_outside_calling_hours_nothing_is_placed(setup, twilio_api):
    app, _, callback_id, _, _ = setup
    # Due, but the worker runs at 22:00 in California (it was down all evening).
    late = dt.datetime(2026, 12, 8, 6, 0, tzinfo=dt.UTC)
    assert place(app, late) == 1
    assert twilio_api.requests == []
    row = callback_row(app, callback_id)
    assert row.status == "scheduled" and row.attempts == 0
    assert row.next_attempt_at == dt.datetime(2026, 12, 8, 16, 0, tzinfo=dt.UTC)


def connect(app, client, twilio_api, callback_id, duration: int) -> None:
    place(app)
    sid = twilio_api.requests[-1]["sid"]
    business_answers(client, callback_id, sid)
    twilio_post(client, f"/webhooks/callbacks/twilio/screen?cb={callback_id}",
                {"CallSid": f"CAv-{callback_id}", "AccountSid": ACCOUNT, "AnsweredBy": "human"})
    twilio_post(client, f"/webhooks/callbacks/twilio/dialed?cb={callback_id}",
                {"CallSid": sid, "AccountSid": ACCOUNT, "DialCallStatus": "completed",
                 "DialCallSid": f"CAv-{callback_id}", "DialCallDuration": str(duration)})


def test_the_call_qualifies_earns_and_reports_by_method(setup, twilio_api):
    app, client, callback_id, session, _ = setup
    from factories import ADMIN_TOKEN, AdminClient

    admin = AdminClient(app.test_client(), ADMIN_TOKEN)
    with app.app_context():
        pool_id = db.session.get(Callback, callback_id).pool_id
    patched = admin.patch(f"/v1/pools/{pool_id}", json={
        "qualification": {"min_duration": 60}, "revenue": "30.00", "payout": "12.00"})
    assert patched.status_code == 200, patched.get_json()
    connect(app, client, twilio_api, callback_id, duration=75)
    with app.app_context():
        call = db.session.get(Call, db.session.get(Callback, callback_id).call_id)
        assert call.qualified and str(call.revenue) == "30.00" and str(call.payout) == "12.00"
        call_id = call.id
    shown = admin.get(f"/v1/calls/{call_id}").get_json()
    attribution = shown["attribution"]
    assert attribution["method"] == "callback" and attribution["confidence"] == 1.0
    assert attribution["source"] == "google" and attribution["session_id"] == session
    day = OPEN.date().isoformat()
    report = admin.get("/v1/reports/attribution", query_string={
        "start": day, "end": day, "group_by": "method"})
    assert report.status_code == 200, report.get_json()
    rows = {r["dimensions"]["method"]: r["metrics"] for r in report.get_json()["rows"]}
    assert rows["callback"]["calls"] == 1 and rows["callback"]["qualified_calls"] == 1
    assert rows["callback"]["revenue"] == "30.00"


def test_the_admin_api_lists_a_sites_callbacks(setup, twilio_api):
    app, client, callback_id, _, _ = setup
    from factories import ADMIN_TOKEN, AdminClient

    admin = AdminClient(app.test_client(), ADMIN_TOKEN)
    with app.app_context():
        site_key = db.session.scalar(db.select(db.text("key")).select_from(db.table("sites")))
    place(app)
    listed = admin.get(f"/v1/callbacks?site={site_key}")
    assert listed.status_code == 200, listed.get_json()
    [shown] = listed.get_json()["callbacks"]
    assert shown["id"] == callback_id and shown["status"] == "calling" and shown["attempts"] == 1
    assert shown["phone"] == VISITOR and shown["consent_text"]
    assert client.get(f"/v1/callbacks?site={site_key}").status_code == 401
