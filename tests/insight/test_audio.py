"""Reading recordings: the carriers' encodings, channel order, resampling."""

from __future__ import annotations

import math
import subprocess
from array import array

import pytest

from attribution.insight.audio import AudioError, read_wav, resample, write_wav
from attribution.insight.voicemail import goertzel_share


def _sox(*args) -> None:
    subprocess.run(["sox", *map(str, args)], check=True, capture_output=True)


def _level(samples) -> float:
    return math.sqrt(sum(v * v for v in samples) / len(samples))


@pytest.fixture(scope="module")
def two_tones(studio, tmp_path_factory):
    """A dual-channel 8 kHz WAV: 500 Hz on the first channel, 1500 Hz on the second."""
    folder = tmp_path_factory.mktemp("tones")
    left, right, both = folder / "l.wav", folder / "r.wav", folder / "both.wav"
    _sox("-n", "-r", 8000, "-b", 16, "-c", 1, left, "synth", 1, "sine", 500, "vol", 0.5)
    _sox("-n", "-r", 8000, "-b", 16, "-c", 1, right, "synth", 1, "sine", 1500, "vol", 0.25)
    _sox("-M", left, right, both)
    return both


def test_dual_channel_pcm16_splits_caller_first(two_tones):
    recording = read_wav(two_tones.read_bytes())
    assert recording.rate == 8000 and len(recording.channels) == 2
    assert recording.seconds == pytest.approx(1.0, abs=0.01)
    sides = recording.sides()
    assert goertzel_share(sides["caller"][:400], 8000, 500, sum(v * v for v in sides["caller"][:400])) > 0.9
    assert goertzel_share(sides["agent"][:400], 8000, 1500, sum(v * v for v in sides["agent"][:400])) > 0.9
    swapped = recording.sides(caller_channel=1)
    assert swapped["caller"] is recording.channels[1] and swapped["agent"] is recording.channels[0]


@pytest.mark.parametrize("encoding", ["u-law", "a-law"])
def test_g711_wavs_decode_to_the_same_signal(two_tones, tmp_path, encoding):
    coded = tmp_path / f"{encoding}.wav"
    _sox(two_tones, "-e", encoding, "-b", 8, coded)
    pcm = read_wav(two_tones.read_bytes())
    g711 = read_wav(coded.read_bytes())
    assert g711.rate == 8000 and len(g711.channels) == 2
    for clean, coded_channel in zip(pcm.channels, g711.channels, strict=True):
        error = _level([a - b for a, b in zip(clean, coded_channel, strict=True)])
        assert error < 0.05 * _level(clean)  # G.711 keeps about 38 dB of signal to noise


def test_eight_bit_and_mono(tmp_path):
    path = tmp_path / "u8.wav"
    _sox("-n", "-r", 11025, "-b", 8, "-e", "unsigned-integer", "-c", 1, path, "synth", 0.5, "sine", 700)
    recording = read_wav(path.read_bytes())
    assert recording.rate == 11025 and list(recording.sides()) == ["mixed"]
    assert _level(recording.channels[0]) > 15000


def test_not_a_wav_is_refused():
    with pytest.raises(AudioError):
        read_wav(b"ID3 this is an mp3")
    with pytest.raises(AudioError):
        read_wav(b"RIFF\x00\x00\x00\x00WAVEjunk")


def test_resampling_keeps_the_tone_and_drops_what_cannot_be_kept():
    tone = array("h", (int(8000 * math.sin(2 * math.pi * 1000 * n / 8000)) for n in range(8000)))
    up = resample(tone, 8000, 16000)
    assert len(up) == 16000
    window = up[4000:4800]
    assert goertzel_share(window, 16000, 1000, sum(v * v for v in window)) > 0.95
    assert _level(window) == pytest.approx(_level(tone), rel=0.03)
    # 7 kHz cannot exist at 8 kHz: it must be filtered away, not folded to 1 kHz.
    high = array("h", (int(8000 * math.sin(2 * math.pi * 7000 * n / 22050)) for n in range(22050)))
    assert _level(resample(high, 22050, 8000)[200:-200]) < 0.03 * _level(high)


def test_write_wav_round_trip():
    samples = array("h", range(-500, 500))
    recording = read_wav(write_wav(samples, 8000))
    assert recording.channels[0] == samples and recording.rate == 8000
