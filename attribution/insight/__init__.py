"""Conversation insight: what a call recording says, worked out on this machine.

``analyse(wav_bytes, keywords)`` reads a recording (``audio.py``), finds each leg's talk
(``talk.py``), a machine's greeting and beep (``voicemail.py``), the listed keywords
(``keywords.py``) and a rough transcript (``transcriber.py``), and returns the call's
``insight``. It is CPU work for the worker, never for a request: about a quarter of a
second of CPU per second of dual-channel call audio, most of it the recogniser
(``bench/insight.py``).

Using it: ``jobs.apply_insight`` writes the analysis and qualifies the call again (rules on
talk time and keywords: ``attribution.qualification``); ``queries`` finds calls by spotted
keyword or tag and buckets ``talk_share`` for reports; ``signals`` answers ``one_sided``,
``voicemail`` and the fraud signals from a call's stored insight.
"""

from __future__ import annotations

import datetime as dt
from array import array
from importlib import metadata

from . import keywords as kw_module
from . import talk, voicemail
from .audio import AGENT, CALLER, AudioError, read_wav, resample
from .keywords import Keyword, KeywordError, disposition, parse_keywords, tags
from .transcriber import MODEL_RATE, Transcriber, load_transcriber

__all__ = ["AudioError", "Keyword", "KeywordError", "analyse", "disposition", "parse_keywords", "tags"]

PAD_SECONDS = 0.25  # around each stretch of talk handed to the recogniser
JOIN_GAP = 0.6  # stretches closer than this are one utterance
MAX_PIECE_SECONDS = 30.0
ROUGH_LABEL = "rough automatic transcript: wording may be wrong"


def _engine(transcriber) -> str:
    if transcriber.name == "pocketsphinx":
        return f"pocketsphinx {metadata.version('pocketsphinx')}"
    return transcriber.name


def _pieces(segments: list[tuple[float, float]], samples: array, rate: int) -> list[tuple[float, array]]:
    """The leg's talk as padded utterances: (offset seconds, samples)."""
    spans: list[list[float]] = []
    for start, end in segments:
        start, end = max(0.0, start - PAD_SECONDS), end + PAD_SECONDS
        if spans and start - spans[-1][1] < JOIN_GAP and end - spans[-1][0] <= MAX_PIECE_SECONDS:
            spans[-1][1] = end
        else:
            spans.append([start, end])
    return [(start, samples[int(start * rate):int(end * rate)]) for start, end in spans]


def analyse(wav_bytes: bytes, keywords: list[Keyword] | list[dict] = (), *, caller_channel: int = 0,
            transcriber: Transcriber | None = None, transcript: bool = True,
            now: dt.datetime | None = None) -> dict:
    """The ``insight`` of one recording.

    ``keywords`` are ``Keyword``s or the site's list as dicts. Channel ``caller_channel``
    is the caller's leg (see ``audio.py`` for the carriers' conventions).
    """
    now = now or dt.datetime.now(dt.UTC)
    keywords = [k if isinstance(k, Keyword) else parse_keywords([k])[0] for k in keywords]
    transcriber = transcriber or load_transcriber()
    base = {"engine": _engine(transcriber), "analysed_at": now.isoformat(timespec="seconds")}
    try:
        recording = read_wav(wav_bytes)
    except AudioError as exc:
        return {"status": "unreadable", "error": str(exc), **base}
    sides = recording.sides(caller_channel)
    rate = recording.rate
    tones = {side: voicemail.find_tones(samples, rate) for side, samples in sides.items()}
    # A tone is loud enough to pass for talk: cut it out (with a frame either side).
    activities = {}
    for side, samples in sides.items():
        beeps = [(t.at_seconds - 0.05, t.at_seconds + t.seconds + 0.05) for t in tones[side]]
        activities[side] = talk.without(talk.voice_activity(samples, rate), beeps)
    summary = talk.summarise(activities, recording.seconds)
    if "mixed" in sides:
        summary["talk_seconds"] = {CALLER: None, AGENT: None, "mixed": summary["talk_seconds"]["mixed"]}

    hits, cue_hits, turns = [], [], []
    cues = [cue for cue in voicemail.CUE_KEYWORDS if cue not in keywords]
    for side, samples in sides.items():
        pieces = []
        for offset, piece in _pieces(activities[side].segments, samples, rate):
            audio = resample(piece, rate, MODEL_RATE)  # once, for both listeners
            words = transcriber.transcribe(audio, MODEL_RATE).words
            pieces.append((offset, audio, words))
            if words:
                turns.append({"side": side, "at_seconds": round(offset + words[0].start, 2),
                              "text": " ".join(w.word for w in words)})
        # One keyphrase search for the site's keywords and the voicemail cues together.
        for keyword, hit in kw_module.spot_pairs(keywords + cues, side, pieces):
            if keyword.means == voicemail.MEANS:
                cue_hits.append(hit)
            if keyword not in cues:
                hits.append(hit)
    timeline = {side: activities[side].segments for side in sides}
    machine = voicemail.verdict(tones, timeline, cue_hits)

    insight = {
        "status": "ok",
        "duration": round(recording.seconds, 2),
        "channels": len(recording.channels),
        **summary,
        "voicemail": machine["detected"],
        "voicemail_evidence": {"beeps": machine["beeps"], "cues": machine["cues"]},
        "keywords": sorted(hits, key=lambda h: h["at_seconds"]),
        "disposition": disposition(hits),
        "tags": tags(hits),
        "fraud_signals": tags(hits, "fraud") + (["one_sided"] if summary["one_sided"] else [])
        + (["voicemail"] if machine["detected"] else []),
        **base,
    }
    if transcript:
        insight["transcript"] = {
            "label": ROUGH_LABEL,
            "rough": getattr(transcriber, "rough", True),
            "turns": sorted(turns, key=lambda t: t["at_seconds"]),
        }
    return insight
