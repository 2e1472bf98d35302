"""The beep detector and the voicemail verdict."""

from __future__ import annotations

import subprocess

import pytest

from attribution.insight import voicemail
from attribution.insight.audio import read_wav


def test_the_beep_after_a_greeting_is_found(voicemail_call):
    sides = read_wav(voicemail_call.wav).sides()
    tones = voicemail.find_tones(sides["agent"], 8000)
    assert len(tones) == 1
    assert tones[0].at_seconds == pytest.approx(voicemail_call.tone_at, abs=0.05)
    assert tones[0].seconds == pytest.approx(0.8, abs=0.06)
    assert tones[0].hz == pytest.approx(1000, abs=15)
    assert voicemail.find_tones(sides["caller"], 8000) == []


def test_speech_is_not_a_beep(appointment_call):
    for samples in read_wav(appointment_call.wav).channels:
        assert voicemail.find_tones(samples, 8000) == []


@pytest.mark.parametrize("tones, seconds", [
    (["697", "1209"], 0.6),  # a DTMF key: two tones at once
    (["440", "480"], 1.0),  # US ring-back
    (["1000"], 3.0),  # too long for a beep (a fax or a test tone)
    (["1000"], 0.1),  # too short
])
def test_other_tones_are_not_beeps(tmp_path, tones, seconds):
    path = tmp_path / "t.wav"
    generators = [part for hz in tones for part in ("sine", hz)]
    subprocess.run(["sox", "-n", "-r", "8000", "-b", "16", "-c", "1", str(path), "synth", str(seconds),
                    *generators, "channels", "1", "vol", "0.4"], check=True, capture_output=True)
    samples = read_wav(path.read_bytes()).channels[0]
    assert max(samples) > 3000  # loud: refused for its shape, not for silence
    assert voicemail.find_tones(samples, 8000) == []


def test_verdict_needs_a_greeting_before_the_beep_or_a_cue_from_the_answering_side():
    beep = voicemail.Tone(at_seconds=6.0, seconds=0.8, hz=1000)
    greeting = {"agent": [(0.5, 5.0)], "caller": []}
    assert voicemail.verdict({"agent": [beep]}, greeting, [])["detected"] is True
    assert voicemail.verdict({"agent": [beep]}, {"agent": [], "caller": []}, [])["detected"] is False
    caller_cue = [{"word": "leave a message", "side": "caller", "at_seconds": 3.0}]
    assert voicemail.verdict({}, greeting, caller_cue)["detected"] is False
    agent_cue = [{"word": "after the beep", "side": "agent", "at_seconds": 3.0}]
    result = voicemail.verdict({}, greeting, agent_cue)
    assert result["detected"] is True and result["cues"][0]["phrase"] == "after the beep"
