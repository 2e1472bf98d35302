"""Talk time per side, silence and one-sided calls, on generated dual-channel calls."""

from __future__ import annotations

import pytest

from attribution.insight import talk
from attribution.insight.audio import read_wav


def _summary(call):
    recording = read_wav(call.wav)
    sides = recording.sides()
    activities = {side: talk.voice_activity(samples, recording.rate) for side, samples in sides.items()}
    return activities, talk.summarise(activities, recording.seconds)


def test_talk_time_per_side_within_15_percent(appointment_call):
    _, summary = _summary(appointment_call)
    for side in ("caller", "agent"):
        truth = appointment_call.talk(side)
        assert summary["talk_seconds"][side] == pytest.approx(truth, rel=0.15), side
    assert summary["first_speaker"] == "agent"
    assert summary["one_sided"] is False


def test_each_stretch_of_talk_starts_where_it_was_placed(appointment_call):
    activities, _ = _summary(appointment_call)
    for placed in appointment_call.placed:
        starts = [start for start, _ in activities[placed.side].segments]
        assert min(abs(start - placed.at) for start in starts) < 0.15, placed.text


def test_silence_share_and_longest_silence(appointment_call):
    _, summary = _summary(appointment_call)
    spans = sorted((p.at, p.at + p.seconds) for p in appointment_call.placed)
    gaps, cursor = [], 0.0
    for start, end in spans:
        gaps.append(max(0.0, start - cursor))
        cursor = max(cursor, end)
    gaps.append(appointment_call.seconds - cursor)
    truth_share = sum(gaps) / appointment_call.seconds
    assert summary["silence_share"] == pytest.approx(truth_share, abs=0.05)
    assert summary["longest_silence"] == pytest.approx(max(gaps), abs=0.3)


def test_one_sided_call_is_flagged(one_sided_call):
    _, summary = _summary(one_sided_call)
    assert summary["one_sided"] is True
    assert summary["talk_seconds"]["agent"] < 0.5  # line noise is not talk
    assert summary["talk_seconds"]["caller"] == pytest.approx(one_sided_call.talk("caller"), rel=0.15)
    assert summary["first_speaker"] == "caller"


def test_one_sided_rule():
    assert talk.is_one_sided({"caller": 40.0, "agent": 0.4})
    assert talk.is_one_sided({"caller": 0.0, "agent": 12.0})
    assert not talk.is_one_sided({"caller": 40.0, "agent": 6.0})
    assert not talk.is_one_sided({"caller": 1.0, "agent": 0.0})  # too short to judge


def test_a_long_monologue_stays_talk(studio):
    lines = ["I am calling about the advertisement I saw online",
             "I would like to know the price of the larger model",
             "and whether you deliver to the north side of town",
             "because my brother lives there and he needs one too",
             "and we would both like to pay by card if that is fine"]
    at, script = 0.5, []
    for line in lines:
        script.append(("caller", at, line))
        at += _seconds(studio, line) + 0.25  # barely a breath between sentences
    call = studio.call("monologue", script, total=round(at + 1.0, 2))
    _, summary = _summary(call)
    assert call.talk("caller") > 12
    assert summary["talk_seconds"]["caller"] == pytest.approx(call.talk("caller"), rel=0.15)
    assert summary["one_sided"] is True


def test_line_noise_that_changes_level_is_hardly_talk():
    import random
    from array import array

    rng = random.Random(5)
    quiet = [int(rng.gauss(0, 10)) for _ in range(8000 * 10)]
    loud = [int(rng.gauss(0, 150)) for _ in range(8000 * 10)]  # 23 dB more hiss, nobody talking
    # Known limit: the louder noise next to the change passes for talk, for no longer than
    # the floor's window reaches across it; the rest of it does not.
    reach = talk.FLOOR_REACH_FRAMES * talk.FRAME_SECONDS
    for noise in (quiet + loud, loud + quiet):
        assert talk.voice_activity(array("h", noise), 8000).seconds <= reach + 0.1


def _seconds(studio, line):
    from insight.studio import soxi_seconds

    return soxi_seconds(studio.say(line))
