"""Real telephone audio made on the spot: espeak-ng speaks, sox shapes.

Each sentence is spoken once (a Klatt voice, which the bundled pocketsphinx model hears
well), trimmed of its leading and trailing silence, and resampled to 8 kHz 16-bit mono;
its true length is what ``soxi -D`` says. ``Studio.call`` places sentences on two legs at
chosen offsets over a faint line noise and merges the legs into one dual-channel WAV
(channel 0 the caller), as a carrier's recording would be. Used by the insight tests and
``bench/insight.py``.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

TOOLS = ("espeak-ng", "sox", "soxi")
VOICE = "en-us+klatt"
RATE = 8000
NOISE_VOLUME = 0.003  # faint hiss, about -50 dBFS: a quiet line, not digital silence


# Every sox call runs with -R (repeatable): the same noise and dither each run, so the
# recogniser hears the same audio every time.
def _run(*args: str) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout


def soxi_seconds(path: Path) -> float:
    return float(_run("soxi", "-D", str(path)))


@dataclass
class Placed:
    side: str
    text: str
    at: float
    seconds: float
    speed: int = 140
    voice: str = VOICE


@dataclass
class Call:
    """A generated recording and the truth about it."""

    path: Path
    seconds: float
    placed: list[Placed] = field(default_factory=list)

    def talk(self, side: str) -> float:
        return sum(p.seconds for p in self.placed if p.side == side)

    def when(self, side: str, text: str) -> float:
        return next(p.at for p in self.placed if p.side == side and p.text == text)

    def spoken_at(self, studio: Studio, side: str, text: str, word: str) -> float:
        """About when ``word`` was said: the sentence's start plus its words before it."""
        line = next(p for p in self.placed if p.side == side and p.text == text)
        before = text.lower().split(word)[0].strip(" ,")
        return line.at + (soxi_seconds(studio.say(before, line.speed, line.voice)) if before else 0.0)

    @property
    def wav(self) -> bytes:
        return self.path.read_bytes()


class Studio:
    def __init__(self, root: Path, voice: str = VOICE):
        self.root = root
        self.voice = voice

    def _name(self, *parts) -> Path:
        digest = hashlib.sha1(repr(parts).encode()).hexdigest()[:16]
        return self.root / f"{digest}.wav"

    def say(self, text: str, speed: int = 140, voice: str | None = None) -> Path:
        """A sentence as trimmed 8 kHz telephone audio (made once per folder)."""
        voice = voice or self.voice
        out = self._name("say", text, speed, voice)
        if not out.exists():
            raw = out.with_suffix(".raw.wav")
            _run("espeak-ng", "-v", voice, "-s", str(speed), "-w", str(raw), text)
            _run("sox", "-R", str(raw), "-r", str(RATE), "-b", "16", "-c", "1", str(out),
                 "silence", "1", "0.02", "0.5%", "reverse", "silence", "1", "0.02", "0.5%", "reverse")
            raw.unlink()
        return out

    def tone(self, hz: int, seconds: float) -> Path:
        out = self._name("tone", hz, seconds)
        if not out.exists():
            _run("sox", "-R", "-n", "-r", str(RATE), "-b", "16", "-c", "1", str(out),
                 "synth", str(seconds), "sine", str(hz), "vol", "0.5")
        return out

    def _leg(self, parts: list[tuple[float, Path]], total: float, tag: str) -> Path:
        """One leg: each part padded to its offset, mixed over line noise."""
        noise = self._name("noise", total, tag)
        _run("sox", "-R", "-n", "-r", str(RATE), "-b", "16", "-c", "1", str(noise),
             "synth", f"{total:.3f}", "whitenoise", "vol", str(NOISE_VOLUME))
        inputs = ["-v", "1", str(noise)]
        for n, (at, path) in enumerate(parts):
            padded = self._name("pad", tag, n)
            rest = total - at - soxi_seconds(path)
            _run("sox", "-R", str(path), str(padded), "pad", f"{at:.3f}", f"{max(0.0, rest):.3f}")
            inputs += ["-v", "1", str(padded)]
        leg = self._name("leg", tag)
        if len(inputs) > 3:
            _run("sox", "-R", "-m", *inputs, str(leg), "trim", "0", f"{total:.3f}")
        else:
            shutil.copy(noise, leg)
        return leg

    def call(self, name: str, script: list[tuple[str, float, str]], total: float,
             extra: list[tuple[str, float, Path]] = (), speed: int = 140,
             voices: dict[str, str] | None = None) -> Call:
        """A dual-channel call: ``script`` is (side, at seconds, sentence) lines.

        ``extra`` places other sounds (a tone) on a side without counting them as talk;
        ``voices`` gives a side its own espeak-ng voice.
        """
        placed, parts = [], {"caller": [], "agent": []}
        for side, at, text in script:
            voice = (voices or {}).get(side, self.voice)
            path = self.say(text, speed, voice)
            placed.append(Placed(side, text, at, soxi_seconds(path), speed, voice))
            parts[side].append((at, path))
        for side, at, path in extra:
            parts[side].append((at, path))
        legs = [self._leg(sorted(parts[side]), total, f"{name}-{side}") for side in ("caller", "agent")]
        out = self.root / f"{name}.wav"
        _run("sox", "-R", "-M", str(legs[0]), str(legs[1]), str(out))
        return Call(path=out, seconds=soxi_seconds(out), placed=placed)


