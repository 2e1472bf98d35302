"""The whole analysis on generated calls: keywords on the right side near where spoken,
the disposition a keyword carries, voicemail, the labelled rough transcript."""

from __future__ import annotations

import datetime as dt
import textwrap

import pytest

from attribution.insight import KeywordError, analyse, parse_keywords
from attribution.insight.transcriber import TranscriberError, Transcript, Word, load_transcriber

KEYWORDS = [
    {"word": "appointment", "side": "caller", "sensitivity": 0.5, "means": "disposition:appointment"},
    {"word": "wrong number", "side": "either", "sensitivity": 0.5, "means": "disposition:wrong_number"},
    {"word": "schedule", "side": "agent", "sensitivity": 0.5, "means": "tag:booking"},
    {"word": "thank you", "side": "agent", "sensitivity": 0.5},  # said by the caller only
    {"word": "refund", "side": "either", "sensitivity": 0.5, "means": "fraud:refund_talk"},  # never said
]
NOW = dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def appointment(appointment_call):
    return analyse(appointment_call.wav, KEYWORDS, now=NOW)


@pytest.fixture(scope="module")
def wrong_number_call(studio):
    return studio.call("wrong-number", [
        ("agent", 0.4, "Good morning, Smith dental clinic"),
        ("caller", 3.0, "Oh sorry, I think I have the wrong number"),
        ("agent", 6.5, "No problem, have a nice day"),
    ], total=9.5)


@pytest.mark.slow
def test_insight_shape(appointment):
    assert appointment["status"] == "ok"
    assert set(appointment) >= {"status", "talk_seconds", "silence_share", "one_sided", "voicemail",
                                "keywords", "transcript", "engine", "analysed_at"}
    assert appointment["engine"].startswith("pocketsphinx ")
    assert appointment["analysed_at"] == "2026-12-06T12:00:00+00:00"
    for hit in appointment["keywords"]:
        assert set(hit) >= {"word", "side", "at_seconds", "score"} and 0 < hit["score"] <= 1


@pytest.mark.slow
def test_keywords_on_the_right_side_near_where_spoken(studio, appointment_call, appointment):
    hits = {(h["word"], h["side"]): h for h in appointment["keywords"]}
    caller_line = "Hello, I would like to book an appointment for next week"
    agent_line = "Sure, we can schedule you for Tuesday morning"
    said = appointment_call.spoken_at(studio, "caller", caller_line, "appointment")
    assert hits[("appointment", "caller")]["at_seconds"] == pytest.approx(said, abs=1.0)
    said = appointment_call.spoken_at(studio, "agent", agent_line, "schedule")
    assert hits[("schedule", "agent")]["at_seconds"] == pytest.approx(said, abs=1.0)
    words = [h["word"] for h in appointment["keywords"]]
    assert "thank you" not in words  # only the caller thanked: the keyword listens to the agent
    assert "refund" not in words and "wrong number" not in words
    assert appointment["disposition"] == "appointment"
    assert appointment["tags"] == ["booking"]
    assert appointment["voicemail"] is False and appointment["one_sided"] is False
    assert appointment["talk_seconds"]["caller"] == pytest.approx(appointment_call.talk("caller"), rel=0.15)
    assert appointment["talk_seconds"]["agent"] == pytest.approx(appointment_call.talk("agent"), rel=0.15)


@pytest.mark.slow
def test_a_wrong_number_keyword_sets_its_disposition(wrong_number_call):
    insight = analyse(wrong_number_call.wav, KEYWORDS, now=NOW)
    hit = next(h for h in insight["keywords"] if h["word"] == "wrong number")
    assert hit["side"] == "caller" and hit["means"] == "disposition:wrong_number"
    assert insight["disposition"] == "wrong_number"


@pytest.mark.slow
def test_voicemail_greeting_and_beep(voicemail_call):
    insight = analyse(voicemail_call.wav, KEYWORDS, now=NOW)
    assert insight["voicemail"] is True
    evidence = insight["voicemail_evidence"]
    assert [b["at_seconds"] for b in evidence["beeps"]] == [pytest.approx(voicemail_call.tone_at, abs=0.05)]
    assert {"leave a message", "after the beep"} <= {c["phrase"] for c in evidence["cues"]}
    assert "voicemail" in insight["fraud_signals"]
    # The beep is not talk: the agent's talk is the greeting alone.
    assert insight["talk_seconds"]["agent"] == pytest.approx(voicemail_call.talk("agent"), rel=0.15)


@pytest.mark.slow
def test_one_sided_call_feeds_the_fraud_signals(one_sided_call):
    insight = analyse(one_sided_call.wav, [], now=NOW, transcript=False)
    assert insight["one_sided"] is True and "one_sided" in insight["fraud_signals"]
    assert "transcript" not in insight


@pytest.mark.slow
def test_transcript_is_labelled_rough(appointment):
    transcript = appointment["transcript"]
    assert transcript["rough"] is True and "rough" in transcript["label"]
    caller_text = " ".join(t["text"] for t in transcript["turns"] if t["side"] == "caller")
    assert "appointment" in caller_text
    assert [t["side"] for t in transcript["turns"]][:2] == ["agent", "caller"]


def test_unreadable_recording(tmp_path):
    insight = analyse(b"not audio", [], now=NOW, transcriber=_plugged(tmp_path))
    assert insight["status"] == "unreadable" and insight["engine"] == "plugged-test-engine"


def test_keyword_lists_are_validated():
    assert parse_keywords([{"word": " Wrong  Number! "}])[0].word == "wrong number"
    for bad in ({"word": ""}, {"word": "x", "side": "buyer"}, {"word": "x", "sensitivity": 2},
                {"word": "x", "sensitivity": True}, {"word": "x", "means": "disposition:sold"},
                {"word": "x", "means": "tag:"}, {"word": "one two three four five six seven"}):
        with pytest.raises(KeywordError):
            parse_keywords([bad])


def _plugged(tmp_path):
    """A transcriber plugged from a module and a model folder, as an operator would."""
    package = tmp_path / "plugged_engine.py"
    package.write_text(textwrap.dedent('''
        from pathlib import Path
        from attribution.insight.transcriber import Transcript, Word

        class Engine:
            name = "plugged-test-engine"
            rough = False
            def __init__(self, folder):
                self.words = Path(folder, "words.txt").read_text().split()
            def transcribe(self, samples, rate):
                timed = [Word(w, i * 0.5, i * 0.5 + 0.4, 0.9) for i, w in enumerate(self.words)]
                return Transcript(text=" ".join(self.words), words=timed, rough=False)

        def make(folder):
            return Engine(folder)
    '''))
    model = tmp_path / "model"
    model.mkdir(exist_ok=True)
    (model / "words.txt").write_text("please book an appointment")
    import sys

    sys.path.insert(0, str(tmp_path))
    try:
        return load_transcriber("plugged_engine:make", str(model))
    finally:
        sys.path.remove(str(tmp_path))


@pytest.mark.slow
def test_a_plugged_transcriber_is_used(tmp_path, appointment_call):
    engine = _plugged(tmp_path)
    assert engine is load_transcriber("plugged_engine:make", str(tmp_path / "model"))  # loaded once
    insight = analyse(appointment_call.wav, KEYWORDS[:1], now=NOW, transcriber=engine)
    assert insight["engine"] == "plugged-test-engine"
    assert insight["transcript"]["rough"] is False
    # Its words feed keyword spotting: every caller turn "says" appointment at 1.5 s in.
    caller_hits = [h for h in insight["keywords"] if h["side"] == "caller"]
    assert caller_hits and all("transcript" in h["via"] for h in caller_hits)


def test_bad_transcriber_settings():
    with pytest.raises(TranscriberError):
        load_transcriber("no_such_module_here:make", "/nonexistent")
    with pytest.raises(TranscriberError):
        load_transcriber("just-a-name", None)


def test_transcript_types():
    words = [Word("hello", 0.0, 0.4, 0.8)]
    assert Transcript(text="hello", words=words).rough is True


@pytest.mark.slow
def test_a_mono_recording_is_analysed_without_sides(appointment_call, tmp_path):
    import subprocess

    mono = tmp_path / "mono.wav"
    subprocess.run(["sox", "-R", str(appointment_call.path), str(mono), "remix", "1,2"], check=True)
    insight = analyse(mono.read_bytes(), KEYWORDS, now=NOW)
    assert insight["channels"] == 1 and insight["one_sided"] is None
    assert insight["talk_seconds"]["caller"] is None and insight["talk_seconds"]["agent"] is None
    total = appointment_call.talk("caller") + appointment_call.talk("agent")
    assert insight["talk_seconds"]["mixed"] == pytest.approx(total, rel=0.15)
    assert {h["side"] for h in insight["keywords"]} == {"mixed"}
    assert "appointment" in [h["word"] for h in insight["keywords"]]
