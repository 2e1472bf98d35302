"""The call page's recording and conversation insight, and the calls list by keyword.

Through Flask's test client (what is served to whom), and in real Chromium (the player
loads the recording through the dashboard, the keyword markers sit where the keywords
were heard). The analysis is written as the worker writes it; the recording is a small
generated WAV (the audio analysis has its own tests in tests/insight/).
"""

from __future__ import annotations

import io
import math
import re
import struct
import wave
from pathlib import Path

import pytest
from dashboard_data import log_in, make_token, seed, with_dashboard

from attribution.insight.jobs import recording_key, recording_store
from attribution.models import Call
from dni_server.extensions import db
from factories import ADMIN_TOKEN, AdminClient

DURATION = 12.0
KEYWORDS = [
    {"word": "appointment", "side": "caller", "at_seconds": 4.5, "score": 0.82,
     "means": "disposition:appointment"},
    {"word": "tuesday", "side": "agent", "at_seconds": 9.0, "score": 0.64, "means": "tag:booking"},
]
INSIGHT = {
    "status": "ok", "duration": DURATION, "channels": 2,
    "talk_seconds": {"caller": 4.2, "agent": 5.1}, "silence_share": 0.24,
    "longest_silence": 1.3, "first_speaker": "agent", "one_sided": False,
    "timeline": {"caller": [[3.0, 6.0], [10.0, 11.2]], "agent": [[0.5, 2.8], [7.5, 10.3]]},
    "voicemail": False, "voicemail_evidence": {"beeps": [], "cues": []},
    "keywords": KEYWORDS, "disposition": "appointment", "disposition_applied": True,
    "tags": ["booking"], "fraud_signals": [], "engine": "pocketsphinx 5.0.4",
    "analysed_at": "2026-05-04T14:10:00+00:00",
    "transcript": {"label": "rough automatic transcript: wording may be wrong", "rough": True,
                   "turns": [{"side": "caller", "at_seconds": 3.1,
                              "text": "i would like an appointment <b>"}]},
}


def stereo_wav(seconds: float = DURATION, rate: int = 8000) -> bytes:
    """A dual-channel 8 kHz PCM16 recording: a tone on each leg."""
    frames = bytearray()
    for n in range(int(seconds * rate)):
        left = int(8000 * math.sin(2 * math.pi * 440 * n / rate))
        right = int(8000 * math.sin(2 * math.pi * 660 * n / rate))
        frames += struct.pack("<hh", left, right)
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(2)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(bytes(frames))
    return out.getvalue()


def analysed(app, call_id: int, wav: bytes | None) -> None:
    """Give the call its kept recording (when ``wav``) and its analysis."""
    with app.app_context():
        call = db.session.get(Call, call_id)
        call.insight = INSIGHT
        call.recording_status = "fetched"
        if wav is not None:
            key = recording_key(call)
            services = app.extensions["dni"]
            recording_store(services.settings, app.instance_path).put(key, wav)
            call.recording_path = key
        db.session.commit()


@pytest.fixture
def acme_call(dash_app, data) -> tuple[int, bytes]:
    wav = stereo_wav()
    call_id = data["calls"]["c1"]  # Acme's
    analysed(dash_app, call_id, wav)
    return call_id, wav


def test_the_call_page_shows_the_player_timeline_and_keywords(dash_app, acme_call):
    call_id, wav = acme_call
    client = log_in(dash_app.test_client())
    page = client.get(f"/dashboard/calls/{call_id}")
    assert page.status_code == 200
    assert "media-src 'self'" in page.headers["Content-Security-Policy"]
    html = page.text
    src = f"/dashboard/calls/{call_id}/recording"
    assert f'<audio id="recording-player" controls preload="metadata" src="{src}"' in html
    markers = re.findall(r'<rect class="keyword-marker" x="([\d.]+)" y="(\d+)"[^>]*'
                         r'data-word="([^"]+)" data-side="(\w+)"', html)
    # x in thousandths of the call, less half the marker's width; the agent's lane is second.
    assert markers == [("373.0", "0", "appointment", "caller"), ("748.0", "30", "tuesday", "agent")]
    talk = re.findall(r'<rect class="talk" x="([\d.]+)" y="(\d+)" width="([\d.]+)"', html)
    assert talk == [("250.0", "4", "250.0"), ("833.3", "4", "100.0"),
                    ("41.7", "34", "191.6"), ("625.0", "34", "233.3")]
    assert "disposition:appointment" in html and '<span class="tag">booking</span>' in html
    assert "rough automatic transcript" in html
    assert "appointment &lt;b&gt;" in html  # the transcript is text, never markup

    played = client.get(src)
    assert played.status_code == 200 and played.mimetype == "audio/wav"
    assert played.data == wav and "no-store" in played.headers["Cache-Control"]
    part = client.get(src, headers={"Range": "bytes=0-99"})  # the player seeks by ranges
    assert part.status_code == 206 and part.data == wav[:100]


def test_only_those_who_may_see_the_call_hear_it(dash_app, admin, acme_call):
    call_id, wav = acme_call
    src = f"/dashboard/calls/{call_id}/recording"
    assert dash_app.test_client().get(src).status_code == 302  # signed out: to the login
    acme = log_in(dash_app.test_client(), make_token(admin, "publisher", "Acme"))
    assert acme.get(src).data == wav
    beta = log_in(dash_app.test_client(), make_token(admin, "publisher", "Beta"))
    assert beta.get(src).status_code == 404
    assert beta.get(f"/dashboard/calls/{call_id}").status_code == 404


def test_a_call_without_a_kept_recording_says_why(dash_app, data):
    call_id = data["calls"]["c1"]
    analysed(dash_app, call_id, None)
    with dash_app.app_context():
        db.session.get(Call, call_id).recording_status = "deleted"
        db.session.commit()
    client = log_in(dash_app.test_client())
    html = client.get(f"/dashboard/calls/{call_id}").text
    assert "recording-player" not in html
    assert "The recording was deleted; its analysis is kept." in html
    assert 'data-word="appointment"' in html  # the insight stays
    assert client.get(f"/dashboard/calls/{call_id}/recording").status_code == 404


def test_the_calls_list_filters_by_heard_keyword_and_tag(dash_app, admin, acme_call):
    call_id, _ = acme_call
    client = log_in(dash_app.test_client())

    def listed(**params) -> set[int]:
        html = client.get("/dashboard/calls", query_string=params).text
        return {int(n) for n in re.findall(r'href="/dashboard/calls/(\d+)"', html)}

    assert len(listed()) == 3
    assert listed(keyword="appointment") == {call_id}
    assert listed(keyword="Appointment ", tag="booking") == {call_id}
    assert listed(keyword="tuesday", tag="pricing") == set()
    assert listed(keyword="x" * 65) == listed()  # too long for a keyword: no filter
    html = client.get("/dashboard/calls", query_string={"tag": "booking"}).text
    assert 'name="tag" value="booking"' in html
    beta = log_in(dash_app.test_client(), make_token(admin, "publisher", "Beta"))
    assert "No calls match." in beta.get("/dashboard/calls?keyword=appointment").text


# -- in Chromium -------------------------------------------------------------------------------

POSITIONS = """() => {
  const box = document.querySelector('#talk-timeline').getBoundingClientRect();
  return Array.from(document.querySelectorAll('.keyword-marker')).map(m => {
    const r = m.getBoundingClientRect();
    return {word: m.dataset.word, side: m.dataset.side, at: Number(m.dataset.atSeconds),
            share: (r.left + r.width / 2 - box.left) / box.width, top: r.top - box.top,
            height: r.height};
  });
}"""


@pytest.mark.browser
def test_the_player_and_markers_in_chromium(live_service):
    from playwright.sync_api import sync_playwright

    sys_path_support()
    from dni_support import launch

    app = with_dashboard(live_service.app)
    data = seed(app, AdminClient(app.test_client(), ADMIN_TOKEN))
    wav = stereo_wav()
    call_id = data["calls"]["c1"]
    analysed(app, call_id, wav)
    with sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(10000)
            problems = []
            page.on("console", lambda msg: msg.type == "error" and problems.append(msg.text))
            page.goto(f"{live_service.url}/dashboard/login")
            page.fill("input[name=token]", ADMIN_TOKEN)
            with page.expect_navigation():
                page.click("button[type=submit]")
            page.goto(f"{live_service.url}/dashboard/calls/{call_id}")

            player = page.locator("#recording-player")
            assert player.get_attribute("src") == f"/dashboard/calls/{call_id}/recording"
            # The browser fetched and decoded it (CSP allows it): its length is the call's.
            page.wait_for_function(
                "() => document.querySelector('#recording-player').readyState >= 1")
            duration = page.evaluate("() => document.querySelector('#recording-player').duration")
            assert abs(duration - DURATION) < 0.05

            markers = page.evaluate(POSITIONS)
            assert [(m["word"], m["side"]) for m in markers] == [("appointment", "caller"),
                                                                ("tuesday", "agent")]
            for marker in markers:  # where in the call each was heard, within a pixel or two
                assert abs(marker["share"] - marker["at"] / DURATION) < 0.004, marker
            caller, agent = markers
            assert caller["top"] < agent["top"]  # each on its own side's lane
            assert problems == []
            artifacts = Path(__file__).resolve().parents[2] / "test-artifacts"
            artifacts.mkdir(exist_ok=True)
            page.locator("#insight").screenshot(path=str(artifacts / "dashboard-call-insight.png"))
        finally:
            browser.close()


def sys_path_support() -> None:
    """``snippet/tests`` (the shared Chromium launcher) on the import path."""
    import sys

    path = str(Path(__file__).resolve().parents[2] / "snippet" / "tests")
    if path not in sys.path:
        sys.path.insert(0, path)


def test_the_report_page_groups_by_talk_share_and_filters_by_tag(dash_app, acme_call):
    client = log_in(dash_app.test_client())
    may = {"start": "2026-05-01", "end": "2026-05-31", "group_by": "talk_share"}
    everything = client.get("/dashboard/", query_string=may).text
    assert '<option value="talk_share" selected>talk share</option>' in everything
    assert "<td>40-60%</td>" in everything and "<td>(none)</td>" in everything  # 4.2 of 9.3 s
    tagged = client.get("/dashboard/", query_string=may | {"tag": "booking"}).text
    assert "<td>40-60%</td>" in tagged and "<td>(none)</td>" not in tagged
    assert 'name="tag" value="booking"' in tagged
    nothing = client.get("/dashboard/", query_string=may | {"heard": "wrong number"}).text
    assert "<td>40-60%</td>" not in nothing
