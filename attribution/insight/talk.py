"""Who talked, when, and for how long: energy voice activity per call leg.

Each leg is cut into 20 ms frames. A frame is speech when its energy stands well above
that leg's noise floor, the quietest frame within a few seconds of it, so a noisy line
and a clean one, or a line whose noise changes, are judged alike. A short hangover keeps the pauses between
words inside a stretch of talk, and a lone loud frame (a click) is not talk.
"""

from __future__ import annotations

import math
import operator
from array import array
from collections import deque
from dataclasses import dataclass

FRAME_SECONDS = 0.02
MARGIN_DB = 10.0  # above the noise floor
SILENT_DB = 30.0  # below this (dB over one LSB) nothing is speech, however quiet the line
HANGOVER_FRAMES = 15  # 300 ms: pauses between words stay inside the talk
ONSET_FRAMES = 3  # 60 ms of energy before a stretch counts: clicks do not
TAIL_FRAMES = 3  # a word's fading end, below the margin but still speech
# 3 s either side: long enough that a stretch of talk has a pause nearby, short enough
# that where line noise jumps in level, its louder side passes for talk at most that long.
FLOOR_REACH_FRAMES = 150


@dataclass
class Activity:
    """One leg's voice activity: speech stretches as (start, end) seconds."""

    segments: list[tuple[float, float]]
    seconds: float  # talk time: the stretches' total
    duration: float  # the leg's length


def frame_levels(samples: array, rate: int, frame_seconds: float = FRAME_SECONDS) -> list[float]:
    """Energy per frame in dB over one least significant bit."""
    size = max(1, int(rate * frame_seconds))
    levels = []
    mul = operator.mul
    for start in range(0, len(samples) - size + 1, size):
        frame = samples[start:start + size]
        power = sum(map(mul, frame, frame)) / size
        levels.append(10 * math.log10(power + 1.0))
    return levels


def noise_floor(levels: list[float], reach: int = FLOOR_REACH_FRAMES) -> list[float]:
    """Per frame, the quietest level within ``reach`` frames either side (a sliding minimum).

    The recording is whole, so the floor may look ahead: the line's noise shows in the
    pauses around a stretch of talk, however long, and a leg that opens with talk is judged
    by the pause after it.
    """
    floors, window = [], deque()  # indices of rising levels: the front is the window's minimum
    for i in range(len(levels) + reach):
        if i < len(levels):
            while window and levels[window[-1]] >= levels[i]:
                window.pop()
            window.append(i)
        centre = i - reach
        if centre >= 0:
            while window[0] < centre - reach:
                window.popleft()
            floors.append(levels[window[0]])
    return floors


def _loud_and_talking(levels: list[float]) -> tuple[list[bool], list[bool]]:
    """Per frame: loud (well above the noise floor) and talking (loud, or in the hangover)."""
    louds, talking, run, hang = [], [], 0, 0
    for level, floor in zip(levels, noise_floor(levels), strict=True):
        loud = level > SILENT_DB and level > floor + MARGIN_DB
        run = run + 1 if loud else 0
        if run >= ONSET_FRAMES:
            hang = HANGOVER_FRAMES
        elif hang:
            hang -= 1
        louds.append(loud)
        talking.append(run >= ONSET_FRAMES or hang > 0)
    return louds, talking


def voice_activity(samples: array, rate: int) -> Activity:
    """Speech stretches of one leg."""
    louds, talking = _loud_and_talking(frame_levels(samples, rate))
    segments, start, last_loud, previous_end = [], None, 0, 0
    for i, speaking in enumerate(talking + [False]):
        if speaking and start is None:
            start = i - ONSET_FRAMES + 1  # the onset frames were speech too
        if speaking and louds[i]:
            last_loud = i
        elif not speaking and start is not None:
            # The stretch ends with its last loud frame and a short fade, not the hangover.
            end = min(i, last_loud + 1 + TAIL_FRAMES)
            begin = max(0, start, previous_end)
            segments.append((round(begin * FRAME_SECONDS, 2), round(end * FRAME_SECONDS, 2)))
            previous_end = end
            start = None
    duration = len(samples) / rate
    return Activity(segments=segments, seconds=sum(e - s for s, e in segments), duration=duration)


def without(activity: Activity, spans: list[tuple[float, float]], shortest: float = 0.1) -> Activity:
    """The activity with ``spans`` (tones, say) cut out: a beep is not talk."""
    segments = list(activity.segments)
    for cut_start, cut_end in spans:
        kept = []
        for start, end in segments:
            for piece in ((start, min(end, cut_start)), (max(start, cut_end), end)):
                if piece[1] - piece[0] >= shortest:
                    kept.append((round(piece[0], 2), round(piece[1], 2)))
        segments = kept
    return Activity(segments=segments, seconds=sum(e - s for s, e in segments), duration=activity.duration)


def _silences(activities: list[Activity], duration: float) -> list[tuple[float, float]]:
    """Stretches where no leg speaks."""
    spans = sorted(seg for activity in activities for seg in activity.segments)
    gaps, cursor = [], 0.0
    for start, end in spans:
        if start > cursor:
            gaps.append((cursor, start))
        cursor = max(cursor, end)
    if duration > cursor:
        gaps.append((cursor, duration))
    return gaps


def is_one_sided(talk: dict[str, float], minimum: float = 3.0) -> bool:
    """One side talks and the other hardly at all: a parked or scripted call."""
    most, least = max(talk.values()), min(talk.values())
    return most >= minimum and least <= max(1.0, 0.05 * most)


def summarise(activities: dict[str, Activity], duration: float) -> dict:
    """The talk part of a call's insight, from each side's voice activity."""
    talk = {side: round(activity.seconds, 2) for side, activity in activities.items()}
    silences = _silences(list(activities.values()), duration)
    silent = sum(end - start for start, end in silences)
    firsts = {side: a.segments[0][0] for side, a in activities.items() if a.segments}
    return {
        "talk_seconds": talk,
        "silence_share": round(silent / duration, 3) if duration else 1.0,
        "longest_silence": round(max((e - s for s, e in silences), default=0.0), 2),
        "first_speaker": min(firsts, key=firsts.get) if firsts else None,
        "one_sided": is_one_sided(talk) if len(talk) == 2 else None,
        "timeline": {side: [[s, e] for s, e in a.segments] for side, a in activities.items()},
    }
