"""The worker's recording step end to end: a local stand-in for Twilio serves a generated
dual-channel call with basic auth, one pass fetches, keeps and analyses it, and the API
shows it to those who may see the call."""

from __future__ import annotations

import base64
import datetime as dt
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from sqlalchemy import select

from attribution.insight.jobs import InsightJobs, apply_retention, twilio_account_of
from attribution.models import Call
from dni_server.extensions import db
from factories import TWILIO_TOKEN, AdminClient, twilio_call, twilio_post
from pools.models import Site

SID, TOKEN = "AC" + "1" * 32, TWILIO_TOKEN  # the token that signs the test webhooks
RECORDING = f"/2010-04-01/Accounts/{SID}/Recordings/RE0001"
FAILING = f"/2010-04-01/Accounts/{SID}/Recordings/REfailing"
KEYWORDS = [{"word": "appointment", "side": "caller", "means": "disposition:appointment"},
            {"word": "wrong number", "side": "either", "means": "disposition:wrong_number"}]


class Twilio(BaseHTTPRequestHandler):
    """Recordings behind the account's basic auth; one path that always fails."""

    wav = b""
    seen: list = []

    def log_message(self, *args):
        pass

    def do_GET(self):  # noqa: N802 (the name http.server calls)
        path = self.path.split("?")[0]
        Twilio.seen.append((self.path, self.headers.get("Authorization")))
        if path == FAILING + ".wav":
            return self._send(503, b"try later")
        expected = "Basic " + base64.b64encode(f"{SID}:{TOKEN}".encode()).decode()
        if self.headers.get("Authorization") != expected:
            return self._send(401, b'{"code": 20003}')
        if path == RECORDING + ".wav" and "RequestedChannels=2" in self.path:
            return self._send(200, Twilio.wav)
        return self._send(404, b"")

    def _send(self, status: int, body: bytes):
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def twilio(appointment_call):
    Twilio.wav = appointment_call.wav
    server = ThreadingHTTPServer(("127.0.0.1", 0), Twilio)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def insight_app(make_app, tmp_path):
    return make_app(DNI_TWILIO_AUTH_TOKEN=TOKEN, DNI_RECORDINGS_DIR=str(tmp_path / "recordings"))


def jobs_of(app) -> InsightJobs:
    services = app.extensions["dni"]
    return InsightJobs.from_settings(services.session_factory, services.settings, app.instance_path)


def add_call(app, url: str, *, site_id: int | None, publisher: str | None = None,
             sid: str = "CA1") -> int:
    with app.app_context():
        call = Call(provider="twilio", provider_call_id=sid, from_number="+14158675309",
                    to_number="+16505550101", started_at=dt.datetime.now(dt.UTC),
                    status="completed", duration=17, site_id=site_id, publisher=publisher,
                    recording_url=url)
        db.session.add(call)
        db.session.commit()
        assert call.recording_status == "pending"  # announcing a link queues it
        return call.id


def read_call(app, call_id: int) -> Call:
    with app.app_context():
        call = db.session.get(Call, call_id)
        db.session.expunge(call)
        return call


def test_twilio_account_is_read_from_the_link():
    assert twilio_account_of(f"https://api.twilio.com{RECORDING}") == SID
    assert twilio_account_of("https://example.com/rec.wav") is None


@pytest.mark.slow  # the recogniser hears a 17 s call
def test_one_pass_fetches_keeps_and_analyses_the_recording(insight_app, twilio, appointment_call):
    admin = AdminClient(insight_app.test_client(), "test-admin-token-0123456789abcdef")
    site = admin.post("/v1/sites", json={"name": "Clinic", "insight_keywords": KEYWORDS,
                                         "recording_retention_days": 30}).get_json()
    assert site["insight_keywords"][0] == {"word": "appointment", "side": "caller",
                                           "sensitivity": 0.5, "means": "disposition:appointment"}
    call_id = add_call(insight_app, twilio + RECORDING, site_id=site["id"], publisher="Acme")

    assert jobs_of(insight_app).run_once() == 1
    call = read_call(insight_app, call_id)
    assert call.recording_status == "fetched", call.recording_error
    assert call.recording_error is None and call.recording_attempts == 1
    stored = Path(insight_app.extensions["dni"].settings.recordings_dir) / call.recording_path
    assert stored.read_bytes() == appointment_call.wav
    insight = call.insight
    assert insight["status"] == "ok" and not insight["one_sided"]
    spotted = [k for k in insight["keywords"] if k["word"] == "appointment"]
    assert spotted and spotted[0]["side"] == "caller"
    said = appointment_call.when("caller", "Hello, I would like to book an appointment for next week")
    assert said <= spotted[0]["at_seconds"] <= said + 5
    # The keyword's disposition applies (nobody had set one) and qualifies the call again.
    assert call.disposition == "appointment" and insight["disposition_applied"]
    # Nothing is due any more: a second pass claims nothing, and the carrier saw auth.
    assert jobs_of(insight_app).run_once() == 0
    assert all(auth for path, auth in Twilio.seen if RECORDING in path)

    shown = admin.get(f"/v1/calls/{call_id}").get_json()
    assert shown["insight"]["keywords"] == insight["keywords"]
    assert shown["recording"] == {"status": "fetched", "stored": True, "attempts": 1,
                                  "next_try_at": None, "error": None}
    wav = admin.get(f"/v1/calls/{call_id}/recording")
    assert wav.status_code == 200 and wav.mimetype == "audio/wav"
    assert wav.data == appointment_call.wav
    assert "no-store" in wav.headers["Cache-Control"]

    # A publisher sees its own call's recording, never another publisher's.
    def token(publisher):
        body = {"name": publisher, "scope": "publisher", "publisher": publisher}
        return AdminClient(insight_app.test_client(), admin.post("/v1/tokens", json=body).json["token"])

    assert token("Acme").get(f"/v1/calls/{call_id}/recording").status_code == 200
    other = token("Other")
    assert other.get(f"/v1/calls/{call_id}/recording").status_code == 404
    assert other.get(f"/v1/calls/{call_id}").status_code == 404
    assert other.delete(f"/v1/calls/{call_id}/recording").status_code == 403

    # Deleted on request: the file goes, the insight stays.
    gone = admin.delete(f"/v1/calls/{call_id}/recording").get_json()
    assert gone["recording"]["status"] == "deleted" and not gone["recording"]["stored"]
    assert gone["insight"]["keywords"] == insight["keywords"]
    assert not stored.exists()
    assert admin.get(f"/v1/calls/{call_id}/recording").status_code == 404


@pytest.mark.slow  # the recogniser hears a 17 s call
def test_twilio_s_recording_callback_queues_the_recording(insight_app, twilio, appointment_call):
    client = insight_app.test_client()
    sid = "CA" + "7" * 32
    twilio_post(client, "/webhooks/twilio/voice", twilio_call(sid, "+16505550101"))
    answered = twilio_post(client, "/webhooks/twilio/recording", {
        "CallSid": sid, "AccountSid": SID, "RecordingSid": "RE0001",
        "RecordingUrl": twilio + RECORDING, "RecordingStatus": "completed"})
    assert answered.status_code == 204
    with insight_app.app_context():
        call_id = db.session.scalar(select(Call.id).where(Call.provider_call_id == sid))
    assert read_call(insight_app, call_id).recording_status == "pending"
    assert jobs_of(insight_app).run_once() == 1
    call = read_call(insight_app, call_id)
    assert call.recording_status == "fetched" and call.insight["status"] == "ok"
    caller = appointment_call.talk("caller")
    assert abs(call.insight["talk_seconds"]["caller"] - caller) <= 0.15 * caller


@pytest.mark.slow  # the recogniser hears a 17 s call
def test_a_person_s_disposition_is_never_overwritten(insight_app, twilio):
    with insight_app.app_context():
        site = Site(key="k-disposition", name="S", insight_keywords=KEYWORDS)
        db.session.add(site)
        db.session.commit()
        site_id = site.id
    call_id = add_call(insight_app, twilio + RECORDING, site_id=site_id)
    with insight_app.app_context():
        db.session.get(Call, call_id).disposition = "sale"
        db.session.commit()
    assert jobs_of(insight_app).run_once() == 1
    call = read_call(insight_app, call_id)
    assert call.insight["disposition"] == "appointment"
    assert call.disposition == "sale" and not call.insight["disposition_applied"]


def test_a_failing_carrier_is_retried_later_with_the_error_kept(insight_app, twilio):
    call_id = add_call(insight_app, twilio + FAILING, site_id=None)
    jobs = jobs_of(insight_app)
    now = dt.datetime.now(dt.UTC)
    assert jobs.run_once(now) == 1
    call = read_call(insight_app, call_id)
    assert call.recording_status == "pending" and call.recording_attempts == 1
    assert call.recording_error == "carrier answered 503"
    assert call.recording_next_try_at > now + dt.timedelta(seconds=20)  # backed off
    assert call.insight is None and call.status == "completed"  # the call is untouched
    assert jobs.run_once(now) == 0  # not due yet
    later = now + dt.timedelta(hours=1)
    jobs.max_attempts = 2
    assert jobs.run_once(later) == 1
    call = read_call(insight_app, call_id)
    assert call.recording_status == "failed" and call.recording_attempts == 2
    assert call.recording_error == "gave up after 2 attempts: carrier answered 503"
    assert jobs.run_once(later + dt.timedelta(days=1)) == 0


def test_wrong_credentials_fail_without_retrying(make_app, tmp_path, twilio):
    app = make_app(DNI_TWILIO_AUTH_TOKEN="wrong", DNI_RECORDINGS_DIR=str(tmp_path / "r"))
    call_id = add_call(app, twilio + RECORDING, site_id=None)
    assert jobs_of(app).run_once() == 1
    call = read_call(app, call_id)
    assert call.recording_status == "failed" and call.recording_error == "carrier answered 401"


def test_a_dead_worker_s_claim_is_taken_over(insight_app, twilio):
    call_id = add_call(insight_app, twilio + FAILING, site_id=None)
    jobs = jobs_of(insight_app)
    now = dt.datetime.now(dt.UTC)
    token, claimed = jobs.claim(5, now)  # and then the worker dies
    assert claimed == [call_id]
    assert jobs.claim(5, now)[1] == []  # held
    assert jobs.claim(5, now + dt.timedelta(hours=1))[1] == [call_id]  # its lease ran out


def test_retention_deletes_old_recordings_only(insight_app, tmp_path):
    jobs = jobs_of(insight_app)
    now = dt.datetime.now(dt.UTC)
    with insight_app.app_context():
        site = Site(key="k-retention", name="S", recording_retention_days=7)
        db.session.add(site)
        db.session.flush()
        ids = []
        for n, age in enumerate((8, 2)):
            call = Call(provider="twilio", provider_call_id=f"CA-r{n}", from_number="+1",
                        to_number="+1", started_at=now, site_id=site.id,
                        recording_status="fetched", recording_path=f"site-{site.id}/call-{n}.wav",
                        recording_fetched_at=now - dt.timedelta(days=age))
            jobs.store.put(call.recording_path, b"RIFF")
            db.session.add(call)
            db.session.flush()
            ids.append(call.id)
        assert apply_retention(db.session, jobs.store, now) == 1
        db.session.commit()
        old, recent = (db.session.get(Call, i) for i in ids)
        assert old.recording_status == "deleted" and old.recording_path is None
        assert recent.recording_status == "fetched"
        assert jobs.store.path(recent.recording_path) is not None
        assert jobs.store.older_than(now.timestamp() + 1) == [recent.recording_path]


def test_links_given_to_the_generic_api_are_shown_not_fetched(insight_app):
    admin = AdminClient(insight_app.test_client(), "test-admin-token-0123456789abcdef")
    made = admin.post("/v1/calls", json={
        "call_id": "cdr-1", "from": "+14158675309", "to": "+16505550101",
        "started_at": "2026-05-01T10:00:00Z", "status": "completed", "duration": 30,
        "recording_url": "https://recordings.example/cdr-1.wav"}).get_json()
    assert made["recording_url"] == "https://recordings.example/cdr-1.wav"
    assert made["recording"]["status"] is None and made["insight"] is None
    assert jobs_of(insight_app).run_once() == 0
