"""Answering machines: a greeting, then a beep.

A beep is a steady single-frequency tone (400-2000 Hz, about 0.3-1.5 s). Each 25 ms frame
gets a frequency guess from its zero crossings, and the Goertzel filter at that frequency
says how much of the frame's energy sits there: a pure tone puts nearly all of it in
one place, speech and two-tone signals (DTMF, ring-back) do not. Runs of such frames at
one frequency are tones. Spoken cues ("leave a message", "after the beep") come from the
keyword spotter.
"""

from __future__ import annotations

import math
import operator
from array import array
from dataclasses import dataclass

from .keywords import Keyword

FRAME_SECONDS = 0.025
LOW_HZ, HIGH_HZ = 400.0, 2000.0
PURITY = 0.75  # share of the frame's energy at the tone's frequency
MIN_TONE, MAX_TONE = 0.3, 1.5  # seconds
MIN_LEVEL_DB = 40.0  # over one LSB: a tone is loud
STEADY = 0.04  # frames of one tone stay within 4% of its frequency
GREETING_SECONDS = 1.0  # speech on the same leg before the tone makes it a machine's beep

CUES = (
    "leave a message",
    "leave your message",
    "after the beep",
    "after the tone",
    "not available",
    "record your message",
    "voice mail",
)
MEANS = "voicemail"  # a site's own keyword with this meaning is a cue too
CUE_KEYWORDS = tuple(Keyword(word=cue, side="either", sensitivity=0.5, means=MEANS) for cue in CUES)


@dataclass
class Tone:
    at_seconds: float
    seconds: float
    hz: float


def goertzel_share(frame: array, rate: int, hz: float, energy: float) -> float:
    """Share of the frame's energy at ``hz`` (1.0 for a pure tone there)."""
    n = len(frame)
    coeff = 2 * math.cos(2 * math.pi * hz / rate)
    s1 = s2 = 0.0
    for x in frame:
        s1, s2 = x + coeff * s1 - s2, s1
    power = s1 * s1 + s2 * s2 - coeff * s1 * s2
    return 2 * power / (n * energy) if energy else 0.0


def _frame_tone(frame: array, rate: int) -> float | None:
    """The frame's frequency if it is a loud, pure tone in the beep band."""
    energy = sum(map(operator.mul, frame, frame))
    if 10 * math.log10(energy / len(frame) + 1.0) < MIN_LEVEL_DB:
        return None
    crossings = sum(1 for a, b in zip(frame, frame[1:], strict=False) if (a < 0) != (b < 0))
    hz = crossings * rate / (2 * len(frame))
    if not LOW_HZ <= hz <= HIGH_HZ:
        return None
    # The crossing count is off by up to one: look a little either side.
    step = rate / (2 * len(frame))
    best = max((goertzel_share(frame, rate, hz + d * step, energy), hz + d * step) for d in (-1, 0, 1))
    return best[1] if best[0] >= PURITY else None


def find_tones(samples: array, rate: int) -> list[Tone]:
    """Steady single-frequency tones of beep length on one leg."""
    size = max(1, int(rate * FRAME_SECONDS))
    tones, run = [], []
    frames = [_frame_tone(samples[i:i + size], rate) for i in range(0, len(samples) - size + 1, size)]
    for index, hz in enumerate(frames + [None]):
        if hz is not None and run and abs(hz - run[0][1]) <= STEADY * run[0][1]:
            run.append((index, hz))
            continue
        if run:
            seconds = len(run) * FRAME_SECONDS
            if MIN_TONE <= seconds <= MAX_TONE + 2 * FRAME_SECONDS:
                mean = sum(h for _, h in run) / len(run)
                tones.append(Tone(round(run[0][0] * FRAME_SECONDS, 2), round(seconds, 2), round(mean)))
        run = [(index, hz)] if hz is not None else []
    return tones


def verdict(tones: dict[str, list[Tone]], talk: dict[str, list[tuple[float, float]]],
            cue_hits: list[dict]) -> dict:
    """Voicemail or not, with the evidence.

    A beep after a greeting on the same leg is enough; so is a cue phrase from the leg
    that answered (the agent's, or a mono recording's), since a caller may well ask
    "can I leave a message?".
    """
    beeps = []
    for side, side_tones in tones.items():
        for tone in side_tones:
            spoken = sum(min(end, tone.at_seconds) - start for start, end in talk.get(side, [])
                         if start < tone.at_seconds)
            if spoken >= GREETING_SECONDS:
                beeps.append({"side": side, "at_seconds": tone.at_seconds, "seconds": tone.seconds,
                              "hz": tone.hz})
    cues = [{"phrase": hit["word"], "side": hit["side"], "at_seconds": hit["at_seconds"]}
            for hit in cue_hits if hit["side"] in ("agent", "mixed")]
    return {"detected": bool(beeps or cues), "beeps": beeps, "cues": cues}
