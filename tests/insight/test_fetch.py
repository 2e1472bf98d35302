"""Fetching recordings from a local stand-in for the carriers: their authentication, a
slow server and a failing one."""

from __future__ import annotations

import base64
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from attribution.insight.fetch import Credentials, FetchError, backoff, fetch_recording, twilio_wav_url

SID, TOKEN, API_KEY = "AC0123456789abcdef0123456789abcdef", "twilio-secret-token", "KEYtelnyx-secret"
WAV = b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(40)


class Carrier(BaseHTTPRequestHandler):
    """Twilio's recordings need basic auth; Telnyx's signed links need nothing."""

    requests_seen: list = []

    def log_message(self, *args):  # keep the test output clean
        pass

    def do_GET(self):  # noqa: N802 (the name http.server calls)
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        Carrier.requests_seen.append((parts.path, query, self.headers.get("Authorization")))
        if parts.path.startswith("/2010-04-01/Accounts/"):
            expected = "Basic " + base64.b64encode(f"{SID}:{TOKEN}".encode()).decode()
            if self.headers.get("Authorization") != expected:
                return self._send(401, b'{"code": 20003}')
            if not parts.path.endswith(".wav"):
                return self._send(200, b"<xml>metadata</xml>")
            return self._send(200, WAV)
        if parts.path == "/signed/rec.wav":
            if "X-Amz-Signature" not in query or self.headers.get("Authorization"):
                return self._send(400, b"signature only")
            return self._send(200, WAV)
        if parts.path == "/v2/recordings/rec.wav":
            if self.headers.get("Authorization") != f"Bearer {API_KEY}":
                return self._send(401, b"")
            return self._send(200, WAV)
        if parts.path == "/slow.wav":
            time.sleep(1.5)
            return self._send(200, WAV)
        if parts.path == "/trickle.wav":
            self.send_response(200)
            self.send_header("Content-Length", str(len(WAV) * 20))
            self.end_headers()
            for _ in range(20):
                self.wfile.write(WAV)
                self.wfile.flush()
                time.sleep(0.1)
            return None
        if parts.path == "/failing.wav":
            return self._send(503, b"try later")
        if parts.path == "/html.wav":
            return self._send(200, b"<html>login</html>")
        return self._send(404, b"")

    def _send(self, status: int, body: bytes):
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def carrier():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Carrier)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


TWILIO = Credentials(twilio_account_sid=SID, twilio_auth_token=TOKEN)


def test_twilio_recording_with_basic_auth_as_wav_both_legs(carrier):
    Carrier.requests_seen.clear()
    url = f"{carrier}/2010-04-01/Accounts/{SID}/Recordings/RE123"
    assert fetch_recording(url, "twilio", TWILIO) == WAV
    path, query, _ = Carrier.requests_seen[-1]
    assert path.endswith("/RE123.wav") and query["RequestedChannels"] == ["2"]


def test_twilio_wrong_token_is_not_retried(carrier):
    url = f"{carrier}/2010-04-01/Accounts/{SID}/Recordings/RE123"
    with pytest.raises(FetchError) as caught:
        fetch_recording(url, "twilio", Credentials(twilio_account_sid=SID, twilio_auth_token="wrong"))
    assert caught.value.status == 401 and caught.value.retry is False
    with pytest.raises(FetchError) as caught:
        fetch_recording(url, "twilio", Credentials())
    assert caught.value.retry is False


def test_telnyx_signed_link_gets_no_credentials(carrier):
    url = f"{carrier}/signed/rec.wav?X-Amz-Signature=abc&X-Amz-Expires=600"
    assert fetch_recording(url, "telnyx", Credentials(telnyx_api_key=API_KEY)) == WAV


def test_telnyx_api_link_gets_the_bearer_key(carrier):
    url = f"{carrier}/v2/recordings/rec.wav"
    assert fetch_recording(url, "telnyx", Credentials(telnyx_api_key=API_KEY)) == WAV
    with pytest.raises(FetchError) as caught:
        fetch_recording(url, "telnyx", Credentials())
    assert caught.value.status == 401


def test_slow_carrier_times_out_for_a_retry(carrier):
    # The server answers after 1.5 s: an error (not the file) means the read timed out.
    with pytest.raises(FetchError) as caught:
        fetch_recording(f"{carrier}/slow.wav", "telnyx", Credentials(), timeout=(1.0, 0.5))
    assert caught.value.retry is True and "slow" in str(caught.value)
    # Given time, the same server delivers.
    assert fetch_recording(f"{carrier}/slow.wav", "telnyx", Credentials(), timeout=(1.0, 3.0)) == WAV


def test_a_trickle_is_cut_off_by_the_total_deadline(carrier):
    with pytest.raises(FetchError) as caught:
        fetch_recording(f"{carrier}/trickle.wav", "telnyx", Credentials(), timeout=(1.0, 1.0),
                        total_timeout=0.5)
    assert caught.value.retry is True and "took over" in str(caught.value)


@pytest.mark.parametrize("path, status, retry", [
    ("/failing.wav", 503, True),
    ("/missing.wav", 404, True),  # the carrier may not have finished writing it
    ("/html.wav", None, True),
])
def test_failures_say_whether_to_retry(carrier, path, status, retry):
    with pytest.raises(FetchError) as caught:
        fetch_recording(f"{carrier}{path}", "telnyx", Credentials())
    assert caught.value.status == status and caught.value.retry is retry


def test_nobody_listening_is_retried():
    with pytest.raises(FetchError) as caught:
        fetch_recording("http://127.0.0.1:9/none.wav", "telnyx", Credentials(), timeout=(0.5, 0.5))
    assert caught.value.retry is True


def test_refusals_before_any_request():
    with pytest.raises(FetchError):
        fetch_recording("ftp://example.invalid/x.wav", "telnyx", Credentials())
    with pytest.raises(FetchError):
        fetch_recording("http://127.0.0.1:9/x.wav", "vonage", Credentials())


def test_twilio_url_forms():
    base = "https://api.twilio.com/2010-04-01/Accounts/AC1/Recordings/RE1"
    assert twilio_wav_url(base) == base + ".wav?RequestedChannels=2"
    assert twilio_wav_url(base + ".wav", dual=False) == base + ".wav"


def test_backoff_doubles_with_jitter_and_a_cap():
    import random

    rng = random.Random(7)
    delays = [backoff(n, jitter=rng) for n in range(1, 12)]
    assert 30 <= delays[0] <= 60 and 60 <= delays[1] <= 120
    assert all(d <= 6 * 3600 for d in delays) and delays[-1] >= 3 * 3600
