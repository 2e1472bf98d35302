"""Issue 11: malformed input is a 4xx, never a 500 (F9); carrier events that cannot be fully
read are kept and their calls stored (F9); Telnyx replays send one transfer, to an encoded
path, through a bounded queue (F10); CSV imports report every bad row and stream (F17); a
chunked body over the limit is a 413 (F18)."""

from __future__ import annotations

import datetime as dt
import http.client
import json
import os
import re
import stat
import threading
import time
import xml.etree.ElementTree as ET
from urllib.parse import urlsplit

import pytest
import redis as redis_lib
from sqlalchemy import func, select
from test_webhooks import (
    TELNYX_PUBLIC,
    TransferReceiver,
    calls_in,
    telnyx_event,
    telnyx_post,
    wait_until,
)

from attribution import carriers
from attribution.calls import CallEventIn
from attribution.carriers import CommandSender
from attribution.inbox import CallInbox
from attribution.models import Call, CallEvent
from dni_server import metrics
from dni_server.config import ConfigError, load_settings
from dni_server.extensions import db
from factories import (
    ADMIN_TOKEN,
    TWILIO_TOKEN,
    AdminClient,
    make_pool,
    make_site,
    numbers,
    twilio_call,
    twilio_post,
)
from pools.models import PoolNumber


def log_in(client):
    page = client.get("/dashboard/login")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    response = client.post("/dashboard/login", data={"token": ADMIN_TOKEN, "csrf_token": csrf})
    assert response.status_code == 302, response.text
    return client


@pytest.fixture
def pool(admin):
    return make_pool(admin, make_site(admin, timezone="Pacific/Kiritimati"))


# -- F9: every listed 500 is a 4xx in the one error shape ---------------------------------


@pytest.mark.parametrize("path", [
    "/v1/conversions/deliveries?destination=%C2%B2",
    "/v1/conversions/deliveries?call=%C2%B2",
    "/v1/conversions/deliveries?call=99999999999999999999999",
    "/v1/reports/attribution?end=0001-01-05",
    "/v1/reports/attribution?start=9999-12-31",
    "/v1/pools/{pool}/health?start=0001-01-01T00:00:00%2B14:00",
    "/v1/pools/{pool}/health?start=9999-12-30T00:00:00-12:00&end=9999-12-31T00:00:00-12:00",
    "/v1/pools/{pool}/health?end=0001-01-01T00:00:00",
    "/v1/calls?limit=" + "9" * 5000,
])
def test_malformed_query_values_are_a_4xx_in_the_error_shape(admin, pool, path):
    response = admin.get(path.format(pool=pool["id"]))
    assert 400 <= response.status_code < 500, response.get_data(as_text=True)
    assert response.get_json()["error"]["code"] in ("invalid", "bad_request", "not_found")


@pytest.mark.parametrize("path", [
    "/dashboard/conversions?delivery=%C2%B2",
    "/dashboard/conversions?delivery=99999999999999999999999",
    "/dashboard/pools/{pool}?end=9999-12-31",
    "/dashboard/pools/{pool}?start=0001-01-01",
    "/dashboard/calls?start=0001-01-01",
    "/dashboard/?end=0001-01-05",
])
def test_malformed_dashboard_query_values_are_a_4xx_page(client, pool, path):
    response = log_in(client).get(path.format(pool=pool["id"]))
    assert 400 <= response.status_code < 500, response.get_data(as_text=True)[:500]
    assert response.mimetype == "text/html"


def test_dashboard_links_keep_odd_query_parameters_as_parameters(client, admin, pool):
    """``_method``, ``_external`` and the like were handed to url_for as its own options."""
    log_in(client)
    report = client.get("/dashboard/?_method=DELETE&_external=1&_anchor=x")
    assert report.status_code == 200
    link = re.search(r'id="csv-link" href="([^"]+)"', report.text).group(1)
    assert link.startswith("/dashboard/report.csv?") and "_method=DELETE" in link
    calls = client.get("/dashboard/calls?_method=DELETE&_scheme=ftp&page=1")
    assert calls.status_code == 200


def test_a_huge_telnyx_timestamp_is_refused_before_the_signature_check(make_app):
    app = make_app(DNI_TELNYX_PUBLIC_KEY=TELNYX_PUBLIC)
    response = app.test_client().post("/webhooks/telnyx", data=b"{}", headers={
        "Content-Type": "application/json", "telnyx-timestamp": "9" * 4000,
        "telnyx-signature-ed25519": "AAAA"})
    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == "forbidden"


# -- F9: signed carrier events with odd fields are stored, not lost -----------------------


@pytest.fixture
def telnyx_app(make_app):
    app = make_app(DNI_TELNYX_PUBLIC_KEY=TELNYX_PUBLIC)
    admin = AdminClient(app.test_client(), ADMIN_TOKEN)
    make_pool(admin, make_site(admin), numbers=numbers(1))
    return app


def stored_events(app) -> list[CallEvent]:
    with app.app_context():
        return list(db.session.scalars(select(CallEvent)))


@pytest.mark.parametrize("odd", [
    {"occurred_at": "0001-01-01T00:00:00+14:00"},
    {"occurred_at": "9999-12-31T23:59:59-14:00"},
    {"occurred_at": ["2026-05-01"]},
    {"from": ["+1", "+2"]},
    {"to": 12125550105},
    {"to": {"number": "+1"}, "from": None},
    {"call_session_id": ["s"], "hangup_cause": ["x"]},
    {"event_type": ["call.initiated"]},
    {"from": "+1415\u0000867"},
])
def test_a_signed_telnyx_event_with_odd_fields_is_stored(telnyx_app, odd):
    body = telnyx_event("call.hangup", "odd-1", "2026-05-01T10:00:50Z")
    for name, value in odd.items():
        target = body["data"] if name in ("occurred_at", "event_type") else body["data"]["payload"]
        target[name] = value
    response = telnyx_post(telnyx_app.test_client(), body)
    assert response.status_code == 204
    if odd.get("event_type"):  # not a call event: acknowledged and kept as received
        assert telnyx_app.extensions["dni"].inbox.unparsed() == [] and calls_in(telnyx_app) == []
        return
    [call] = calls_in(telnyx_app)
    [event] = stored_events(telnyx_app)
    assert event.call_id == call.id and event.payload["data"]["id"] == "odd-1"
    assert call.started_at.year in (2026, time.gmtime().tm_year)


@pytest.mark.parametrize("odd", [
    {"SequenceNumber": "9" * 4000},
    {"CallDuration": "9" * 4000, "CallStatus": "completed"},
    {"CallDuration": "\u00b2", "CallStatus": "completed", "SequenceNumber": "\u00b2"},
    {"Timestamp": "Fri, 31 Dec 9999 23:59:59 -1400"},
    {"FromCountry": "USA" * 50, "FromState": "x" * 500, "FromCity": "y" * 500},
    {"From": "+1415\u00008675309"},
])
def test_a_signed_twilio_event_with_odd_fields_is_stored(make_app, odd):
    app = make_app(DNI_TWILIO_AUTH_TOKEN=TWILIO_TOKEN)
    admin = AdminClient(app.test_client(), ADMIN_TOKEN)
    make_pool(admin, make_site(admin), numbers=numbers(1))
    client = app.test_client()
    voice = twilio_post(client, "/webhooks/twilio/voice",
                        twilio_call("CA" + "7" * 32, numbers(1)[0], **odd))
    assert voice.status_code == 200
    assert ET.fromstring(voice.data).find("Dial/Number").text == "+12125550199"
    status = twilio_post(client, "/webhooks/twilio/status",
                         twilio_call("CA" + "7" * 32, numbers(1)[0], **odd))
    assert status.status_code == 204
    [call] = calls_in(app)
    assert call.duration is None or call.duration < 2**31
    assert len(stored_events(app)) >= 1


def test_an_event_the_reader_fails_on_is_kept_and_the_caller_still_forwarded(make_app,
                                                                           monkeypatch):
    app = make_app(DNI_TWILIO_AUTH_TOKEN=TWILIO_TOKEN, DNI_TELNYX_PUBLIC_KEY=TELNYX_PUBLIC)
    admin = AdminClient(app.test_client(), ADMIN_TOKEN)
    make_pool(admin, make_site(admin), numbers=numbers(1))

    def broken(*_args):
        raise KeyError("a field this code did not expect")

    monkeypatch.setattr(carriers, "twilio_event", broken)
    monkeypatch.setattr(carriers, "telnyx_event", broken)
    client = app.test_client()
    voice = twilio_post(client, "/webhooks/twilio/voice", twilio_call("CA" + "8" * 32,
                                                                      numbers(1)[0]))
    assert voice.status_code == 200
    assert ET.fromstring(voice.data).find("Dial/Number").text == "+12125550199"
    assert telnyx_post(client, telnyx_event("call.initiated", "kept-1", "2026-05-01T10:00:50Z")
                       ).status_code == 204
    kept = app.extensions["dni"].inbox.unparsed()
    assert [k["provider"] for k in kept] == ["twilio", "telnyx"]
    assert json.loads(kept[0]["raw"])["CallSid"] == ["CA" + "8" * 32]
    assert json.loads(kept[1]["raw"])["data"]["id"] == "kept-1"


def test_an_inbox_event_that_cannot_be_stored_is_set_aside_not_blocking(app):
    inbox = app.extensions["dni"].inbox
    good = CallEventIn(provider="twilio", provider_call_id="CA-inbox", event_key="k1",
                       kind="voice", occurred_at=dt.datetime.now(dt.UTC),
                       from_raw="+14158675309", to_raw=numbers(1)[0])
    inbox.redis.xadd(inbox.stream, {"event": '{"provider": "twilio", "not": "an event"}'})
    inbox.push(good)
    with app.app_context():
        assert inbox.replay(db.session) == 2
        assert db.session.scalar(select(func.count()).select_from(Call)) == 1
    assert inbox.waiting() == 0
    assert [k["provider"] for k in inbox.unparsed()] == ["inbox"]


def test_unparsed_events_go_to_a_private_file_when_redis_is_down(tmp_path):
    away = redis_lib.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
    inbox = CallInbox(away, "dni", str(tmp_path / "call-spool.jsonl"))
    assert inbox.keep_unparsed("telnyx", '{"data": ', "JSONDecodeError") == "spool"
    assert [k["raw"] for k in inbox.unparsed()] == ['{"data": ']
    assert stat.S_IMODE(os.stat(tmp_path / "call-unparsed.jsonl").st_mode) == 0o600


def test_a_signed_telnyx_body_that_is_not_json_is_kept_and_acknowledged(telnyx_app):
    from test_fuzz_routes import signed_telnyx

    response = signed_telnyx(telnyx_app.test_client(), b'{"data": {"id": "cut short"')
    assert response.status_code == 204
    [kept] = telnyx_app.extensions["dni"].inbox.unparsed()
    assert kept["provider"] == "telnyx" and kept["raw"] == '{"data": {"id": "cut short"'


# -- F10: Telnyx replays, the control id in the path, the bounded queue -------------------


@pytest.mark.parametrize("raw", ["0", "-1", "lots", "100001"])
def test_the_carrier_queue_setting_is_checked_at_boot(raw):
    with pytest.raises(ConfigError):
        load_settings({"DNI_CARRIER_QUEUE": raw})
    assert load_settings({"DNI_CARRIER_QUEUE": "50"}).carrier_queue == 50
    assert load_settings({}).carrier_queue == 200


@pytest.fixture
def receiver():
    found = TransferReceiver()
    yield found
    found.server.shutdown()


def telnyx_transfer_app(make_app, receiver, **extra):
    app = make_app(DNI_TELNYX_PUBLIC_KEY=TELNYX_PUBLIC, DNI_TELNYX_API_KEY="KEY_test",
                   DNI_TELNYX_API_URL=receiver.url, **extra)
    admin = AdminClient(app.test_client(), ADMIN_TOKEN)
    make_pool(admin, make_site(admin), numbers=numbers(1))
    return app


def idle(commands: CommandSender) -> bool:
    return commands.pending == 0


def dropped_total() -> float:
    return metrics.REGISTRY.get_sample_value("dni_carrier_commands_dropped_total") or 0.0


def test_120_replays_of_one_call_initiated_send_one_transfer(make_app, receiver):
    app = telnyx_transfer_app(make_app, receiver)
    client = app.test_client()
    initiated = telnyx_event("call.initiated", "replayed", "2026-05-01T10:00:50Z")
    for _ in range(120):
        assert telnyx_post(client, initiated).status_code == 204
    wait_until(lambda: idle(app.extensions["dni"].commands))
    assert len(receiver.received) == 1
    assert receiver.received[0][2]["command_id"] == "replayed"


def test_replays_while_sql_is_down_send_one_transfer(make_app, receiver, monkeypatch):
    from sqlalchemy.exc import OperationalError

    import dni_server.api.webhooks as webhooks

    app = telnyx_transfer_app(make_app, receiver)
    app.extensions["dni"].routes.routes()  # routes known before the outage

    def sql_down(*_args, **_kwargs):
        raise OperationalError("SELECT 1", {}, Exception("connection refused"))

    monkeypatch.setattr(webhooks, "ingest", sql_down)
    client = app.test_client()
    initiated = telnyx_event("call.initiated", "outage", "2026-05-01T10:00:50Z")
    for _ in range(5):
        assert telnyx_post(client, initiated).status_code == 204
    wait_until(lambda: idle(app.extensions["dni"].commands))
    assert len(receiver.received) == 1
    assert app.extensions["dni"].inbox.waiting() == 5  # every copy kept; stored once later


def test_the_call_control_id_is_one_encoded_path_segment(make_app, receiver):
    app = telnyx_transfer_app(make_app, receiver)
    dots = telnyx_event("call.initiated", "dots", "2026-05-01T10:00:50Z", call_control_id="..")
    sneaky = telnyx_event("call.initiated", "sneaky", "2026-05-01T10:00:51Z",
                          call_control_id="../../../internal/admin?x=")
    for body in (dots, sneaky):
        assert telnyx_post(app.test_client(), body).status_code == 204
    wait_until(lambda: idle(app.extensions["dni"].commands))
    assert [path for path, _, _ in receiver.received] == [
        "/v2/calls/..%2F..%2F..%2Finternal%2Fadmin%3Fx%3D/actions/transfer"]


def test_the_command_queue_is_bounded_and_counts_what_it_drops(make_app):
    app = make_app(DNI_CARRIER_QUEUE="2")
    commands = app.extensions["dni"].commands
    assert commands.max_queue == 2
    release = threading.Event()

    def slow_transfer():
        release.wait(10)
        return "ok"

    before = dropped_total()
    try:
        assert commands.submit(slow_transfer) is not None
        assert commands.submit(slow_transfer) is not None
        assert commands.submit(slow_transfer) is None  # full: dropped, counted
    finally:
        release.set()
    wait_until(lambda: idle(commands))
    assert commands.dropped == 1
    assert dropped_total() == before + 1
    assert commands.submit(lambda: "ok").result(5) == "ok"  # room again once drained


# -- F17: CSV imports -----------------------------------------------------------------------


def run(app, *args):
    return app.test_cli_runner().invoke(args=["dni", *args])


def test_import_calls_rejects_odd_durations_and_times_and_goes_on(app, tmp_path):
    csv_file = tmp_path / "calls.csv"
    csv_file.write_text(
        "call_id,from,to,started_at,duration\n"
        "c1,+14158675309,+18005550102,2026-05-04T14:00:00Z,75\n"
        "c2,+14158675309,+18005550102,2026-05-04T14:01:00Z,\u00b2\n"
        f"c3,+14158675309,+18005550102,2026-05-04T14:02:00Z,{'9' * 5000}\n"
        "c4,+14158675309,+18005550102,0001-01-01T00:00:00+14:00,5\n"
        "c5,+14158675309,+18005550102,2026-05-04T14:04:00Z,5\n", encoding="utf-8")
    result = run(app, "import-calls", str(csv_file))
    assert result.exit_code == 0, result.output
    assert "0 attributed, 2 unattributed, 0 repeated, 3 rejected" in result.output
    assert "line 3: rejected: duration" in result.output
    assert "line 4: rejected: duration" in result.output
    assert "line 5: rejected: started_at" in result.output
    assert "line 6: c5" in result.output
    assert "no site" in run(app, "create-pool", "--site", "\u00b2", "--name", "x", "--target",
                            "+18005550100", "--destination", "+12125550199").output


def test_imports_report_a_file_that_is_not_text_and_still_summarise(app, admin, tmp_path):
    pool = make_pool(admin, make_site(admin), numbers=[])
    calls = tmp_path / "calls.csv"
    url = "https://rec.example/" + "r" * 1000  # past the first block the file is read in
    calls.write_bytes(b"call_id,from,to,started_at,recording_url\n" + b"".join(
        f"c{i},+14158675309,+18005550102,2026-05-04T14:0{i}:00Z,{url}\n".encode()
        for i in range(9)) + b"c9,+14158675309,+18005550102,\xff\xfe\n")
    result = run(app, "import-calls", str(calls))
    assert result.exit_code == 0, result.output
    # The rows before the block the bad bytes are in are imported; reading stops there.
    imported = int(re.search(r"(\d+) unattributed, 0 repeated, 1 rejected", result.output)[1])
    assert 1 <= imported < 10
    assert f"line {imported + 2}: rejected: not readable CSV" in result.output
    calls.write_bytes(b"\xff\xfe")
    assert "not a UTF-8 CSV file" in run(app, "import-calls", str(calls)).output
    listed = tmp_path / "numbers.csv"
    listed.write_bytes(b"number\n+16505550101\n\xff\xfe\n")
    result = run(app, "import-numbers", str(pool["id"]), str(listed))
    assert result.exit_code == 0, result.output
    assert "rejected" in result.output and "not readable CSV" in result.output


def feed_through_a_pipe(path, head: str, tail: str, seen) -> threading.Thread:
    """Write ``head`` into a FIFO, wait until ``seen()`` (the importer acted on it), then
    ``tail``: an importer that reads the whole file first never acts before the end."""
    os.mkfifo(path)
    acted = []

    def write():
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(head)
            fh.flush()
            deadline = time.monotonic() + 15
            while not seen() and time.monotonic() < deadline:
                time.sleep(0.05)
            acted.append(seen())
            fh.write(tail)

    thread = threading.Thread(target=write, daemon=True)
    thread.acted = acted
    thread.start()
    return thread


def test_import_calls_streams_the_file(app, tmp_path):
    def first_call_stored() -> bool:
        with app.app_context():
            found = db.session.scalar(select(func.count()).select_from(Call))
            db.session.remove()
            return found == 1

    writer = feed_through_a_pipe(
        tmp_path / "calls.csv",
        "call_id,from,to,started_at\nc1,+14158675309,+18005550102,2026-05-04T14:00:00Z\n",
        "c2,+14158675309,+18005550102,2026-05-04T14:01:00Z\n", first_call_stored)
    result = run(app, "import-calls", str(tmp_path / "calls.csv"))
    writer.join(20)
    assert result.exit_code == 0, result.output
    assert writer.acted == [True], "the first row was only imported after the file ended"
    assert "0 attributed, 2 unattributed" in result.output


def test_import_numbers_streams_the_file(app, admin, tmp_path):
    pool = make_pool(admin, make_site(admin), numbers=[])
    first, rest = numbers(1000, start=1000), numbers(3, start=5000)

    def first_chunk_stored() -> bool:
        with app.app_context():
            found = db.session.scalar(select(func.count()).select_from(PoolNumber))
            db.session.remove()
            return found == 1000

    writer = feed_through_a_pipe(tmp_path / "numbers.csv", "number\n" + "\n".join(first) + "\n",
                                 "\n".join(rest) + "\n\u00b2\n", first_chunk_stored)
    result = run(app, "import-numbers", str(pool["id"]), str(tmp_path / "numbers.csv"))
    writer.join(20)
    assert result.exit_code == 0, result.output
    assert writer.acted == [True], "the first chunk was only imported after the file ended"
    assert "1003 accepted, 1 rejected" in result.output
    assert "line 1005: '\u00b2'" in result.output


# -- F18: a chunked body over the limit ----------------------------------------------------


def post_chunked(url: str, path: str, body: bytes, headers: dict) -> tuple[int, bytes]:
    """POST with Transfer-Encoding: chunked and no Content-Length, as http.client sends it."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.request("POST", path, body=(body[i:i + 1000] for i in range(0, len(body), 1000)),
                     headers=headers, encode_chunked=True)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_a_chunked_body_over_the_limit_is_413_not_cut_short(live_service):
    site = live_service.create_site(name="Chunked")
    limit = live_service.app.config["MAX_CONTENT_LENGTH"]
    big = json.dumps({"site": site["key"], "url": "https://x.example/?q=" + "a" * limit}).encode()
    status, body = post_chunked(live_service.url, "/v1/sessions", big,
                                {"Content-Type": "text/plain"})
    assert status == 413, body
    assert json.loads(body)["error"]["code"] == "too_large"
    small = json.dumps({"site": site["key"], "url": "https://x.example/"}).encode()
    status, body = post_chunked(live_service.url, "/v1/sessions", small,
                                {"Content-Type": "text/plain"})
    assert status in (200, 201), body
    # An admin's limit is larger (2 MB): the same body is read whole and judged on its fields.
    status, body = post_chunked(live_service.url, "/v1/sites",
                                json.dumps({"name": "n" * limit}).encode(),
                                {"Content-Type": "application/json",
                                 "Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert status == 422 and "name" in json.loads(body)["error"]["fields"], body
