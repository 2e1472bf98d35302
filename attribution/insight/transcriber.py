"""Speech to text behind one small interface, offline only.

The default is pocketsphinx with the US English model inside its wheel: fast and
private, but its text is rough (telephone audio, a general language model), and every
transcript it makes says so (``rough: True``). Keyword spotting leans on its word
timings; nothing else should trust its wording.

Plugging another offline engine: write a factory that takes a model folder and returns an
object with ``name``, ``rough`` and ``transcribe(samples, rate) -> Transcript``, put its
package on the worker's path, and name it with two settings (read by the worker)::

    DNI_TRANSCRIBER=mypackage.engine:make_transcriber
    DNI_TRANSCRIBER_MODEL_DIR=/srv/models/english

``load_transcriber(spec, model_dir)`` imports the factory and calls it with the folder.
The engine must read its model from that folder and never reach the network: recordings
do not leave the machine.
"""

from __future__ import annotations

import importlib
import threading
from array import array
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from .audio import resample

MODEL_RATE = 16_000  # the bundled acoustic model is wideband
FRAMES_PER_SECOND = 100
NOT_WORDS = {"<s>", "</s>", "<sil>"}
# No second (flat) pass and a cap on active HMMs per frame: half the CPU of the defaults
# and, on generated telephone speech, the same words found (bench/insight.py).
FAST = {"fwdflat": False, "maxhmmpf": 5000}


@dataclass
class Word:
    word: str
    start: float  # seconds from the start of the audio given
    end: float
    confidence: float  # 0..1, the engine's own measure


@dataclass
class Transcript:
    text: str
    words: list[Word] = field(default_factory=list)
    rough: bool = True


@runtime_checkable
class Transcriber(Protocol):
    name: str

    def transcribe(self, samples: array, rate: int) -> Transcript: ...


class TranscriberError(RuntimeError):
    """A transcriber could not be loaded."""


def make_decoder(**options):
    from pocketsphinx import Decoder  # imported here: the web processes never load it

    return Decoder(samprate=MODEL_RATE, loglevel="ERROR", **options)


class PocketsphinxTranscriber:
    """The bundled engine: pocketsphinx, its US English model and language model."""

    name = "pocketsphinx"
    rough = True

    def __init__(self, **options):
        self._decoder = make_decoder(**{**FAST, **options})
        self._lock = threading.Lock()  # one decoder, one utterance at a time

    def transcribe(self, samples: array, rate: int) -> Transcript:
        audio = resample(samples, rate, MODEL_RATE) if rate != MODEL_RATE else samples
        with self._lock:
            decoder = self._decoder
            decoder.start_utt()
            decoder.process_raw(audio.tobytes(), full_utt=True)
            decoder.end_utt()
            words = []
            for seg in decoder.seg() or []:
                if seg.word in NOT_WORDS or seg.word.startswith("["):
                    continue  # silence and noise fillers
                words.append(Word(word=seg.word.split("(")[0],  # "to(2)": a variant pronunciation
                                  start=seg.start_frame / FRAMES_PER_SECOND,
                                  end=(seg.end_frame + 1) / FRAMES_PER_SECOND,
                                  confidence=round(min(1.0, max(0.0, seg.prob)), 3)))
        return Transcript(text=" ".join(w.word for w in words), words=words, rough=True)


_shared: dict[tuple, object] = {}
_shared_lock = threading.Lock()


def load_transcriber(spec: str | None = None, model_dir: str | None = None):
    """The transcriber a setting names (``module:factory``), else the bundled one.

    Loaded once per process: models are large and slow to read.
    """
    key = (spec, model_dir)
    with _shared_lock:
        if key not in _shared:
            if not spec:
                _shared[key] = PocketsphinxTranscriber()
            else:
                module_name, _, attribute = spec.partition(":")
                if not module_name or not attribute:
                    raise TranscriberError(f"transcriber must be 'module:factory', got {spec!r}")
                try:
                    factory = getattr(importlib.import_module(module_name), attribute)
                except (ImportError, AttributeError) as exc:
                    raise TranscriberError(f"cannot import transcriber {spec!r}: {exc}") from exc
                engine = factory(model_dir)
                if not isinstance(engine, Transcriber):
                    raise TranscriberError(f"{spec!r} made no transcriber (needs name and transcribe)")
                _shared[key] = engine
        return _shared[key]
