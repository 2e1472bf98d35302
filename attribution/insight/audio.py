"""Reading call recordings: WAV in, one list of samples per call leg out.

Carriers' conventions for two-channel recordings (the only kind that tells the sides apart):

- Twilio (`RecordingChannels=dual`, `record-from-answer-dual`, or a two-party recording
  fetched with `RequestedChannels=2`): the first channel holds the parent call, which for
  an inbound call we forward is the caller; the second holds the dialled leg (the buyer's
  or the business's phone). Recordings fetched as `.wav` are 8 kHz, 16-bit PCM.
- Telnyx (`channels: "dual"`): each leg on its own channel, the leg that was recorded
  (the caller's, for an inbound call) first.

So channel 0 is the caller and channel 1 the agent unless the caller says otherwise
(`caller_channel`). A mono recording mixes both sides: talk time is then not split.
G.711 mu-law and A-law WAVs are decoded too, for carriers or exports that keep them.
"""

from __future__ import annotations

import io
import math
import struct
import wave
from array import array
from dataclasses import dataclass
from fractions import Fraction

CALLER, AGENT = "caller", "agent"

PCM, MULAW, ALAW = 1, 7, 6  # WAVE format tags
EXTENSIBLE = 0xFFFE


class AudioError(ValueError):
    """The bytes are not a recording this module can read."""


@dataclass
class Recording:
    """A decoded recording: 16-bit samples per channel at ``rate`` Hz."""

    rate: int
    channels: list[array]

    @property
    def seconds(self) -> float:
        return len(self.channels[0]) / self.rate if self.channels else 0.0

    def sides(self, caller_channel: int = 0) -> dict[str, array]:
        """The caller's and the agent's samples; a mono recording has only ``mixed``."""
        if len(self.channels) == 1:
            return {"mixed": self.channels[0]}
        agent_channel = 1 if caller_channel == 0 else 0
        return {CALLER: self.channels[caller_channel], AGENT: self.channels[agent_channel]}


def _ulaw_table() -> array:
    table = array("h")
    for byte in range(256):
        u = ~byte & 0xFF
        magnitude = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4)
        table.append((0x84 - magnitude) if u & 0x80 else (magnitude - 0x84))
    return table


def _alaw_table() -> array:
    table = array("h")
    for byte in range(256):
        a = byte ^ 0x55
        exponent, mantissa = (a & 0x70) >> 4, a & 0x0F
        magnitude = (mantissa << 4) + 8 if exponent == 0 else ((mantissa << 4) + 0x108) << (exponent - 1)
        table.append(magnitude if a & 0x80 else -magnitude)
    return table


ULAW = _ulaw_table()
ALAW_TABLE = _alaw_table()


def _chunks(data: bytes):
    """RIFF chunks as (id, body) pairs."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise AudioError("not a RIFF/WAVE file")
    offset = 12
    while offset + 8 <= len(data):
        chunk_id, size = data[offset:offset + 4], struct.unpack_from("<I", data, offset + 4)[0]
        yield chunk_id, data[offset + 8:offset + 8 + size]
        offset += 8 + size + (size & 1)


def read_wav(data: bytes) -> Recording:
    """Decode a PCM16, 8-bit, mu-law or A-law WAV of any rate and channel count."""
    fmt = body = None
    for chunk_id, chunk in _chunks(data):
        if chunk_id == b"fmt ":
            fmt = chunk
        elif chunk_id == b"data":
            body = chunk
    if fmt is None or body is None or len(fmt) < 16:
        raise AudioError("WAV without fmt or data chunk")
    tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", fmt)
    if tag == EXTENSIBLE and len(fmt) >= 26:
        tag = struct.unpack_from("<H", fmt, 24)[0]  # the sub-format GUID starts with the tag
    if channels < 1 or rate < 1000:
        raise AudioError(f"unusable WAV: {channels} channels at {rate} Hz")
    if tag == PCM and bits == 16:
        samples = array("h")
        samples.frombytes(body[: len(body) - len(body) % 2])
        if samples.itemsize != 2:
            raise AudioError("this platform has no 16-bit array type")
        if struct.pack("=h", 1) != struct.pack("<h", 1):
            samples.byteswap()
    elif tag == PCM and bits == 8:
        samples = array("h", ((b - 128) << 8 for b in body))
    elif tag in (MULAW, ALAW) and bits == 8:
        table = ULAW if tag == MULAW else ALAW_TABLE
        samples = array("h", (table[b] for b in body))
    else:
        raise AudioError(f"unsupported WAV encoding: format {tag}, {bits} bits")
    usable = len(samples) - len(samples) % channels
    split = [samples[c:usable:channels] for c in range(channels)]
    return Recording(rate=rate, channels=split)


def write_wav(samples: array, rate: int) -> bytes:
    """Mono PCM16 WAV bytes (for engines that want a file)."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.tobytes())
    return buffer.getvalue()


_FILTERS: dict[tuple[int, int, int], tuple[int, list[list[float]]]] = {}


def _polyphase(up: int, down: int, half_taps: int) -> tuple[int, list[list[float]]]:
    """A Hann-windowed sinc low-pass split into ``up`` phases, cached per ratio.

    Phase r weighs input samples x[i + reach - m] for m = 0..2*reach; the result is the
    reach and the taps, ordered to match a window slice of the input.
    """
    key = (up, down, half_taps)
    if key not in _FILTERS:
        cutoff = 0.5 / max(up, down)  # cycles per sample of the upsampled signal
        span = half_taps * max(up, down)  # filter half-length in upsampled samples
        reach = span // up + 1
        phases = []
        for phase in range(up):
            taps = []
            for m in range(2 * reach + 1):
                t = (reach - m) * up + phase
                if abs(t) >= span:
                    taps.append(0.0)
                    continue
                x = 2 * cutoff * t
                sinc = 1.0 if t == 0 else math.sin(math.pi * x) / (math.pi * x)
                window = 0.5 + 0.5 * math.cos(math.pi * t / span)
                taps.append(2 * cutoff * sinc * window * up)
            phases.append(taps)
        _FILTERS[key] = (reach, phases)
    return _FILTERS[key]


def resample(samples: array, rate: int, target: int, half_taps: int = 8) -> array:
    """Rational polyphase resampling with a windowed-sinc low-pass, in plain Python.

    Telephone audio goes 8 kHz -> 16 kHz for the recogniser, whose model is wideband.
    """
    if rate == target or not samples:
        return array("h", samples)
    ratio = Fraction(target, rate).limit_denominator(1000)
    up, down = ratio.numerator, ratio.denominator
    reach, phases = _polyphase(up, down, half_taps)
    # A phase that lands on input samples exactly (integer upsampling) is a plain copy.
    identity = [all(abs(tap - (1.0 if m == reach else 0.0)) < 1e-9 for m, tap in enumerate(taps))
                for taps in phases]
    padded = [0.0] * reach + [float(v) for v in samples] + [0.0] * (reach + 1)
    out = array("h")
    width = 2 * reach + 1
    mul = float.__mul__
    for n in range(len(samples) * up // down):
        index, phase = divmod(n * down, up)
        if identity[phase]:
            value = padded[index + reach]
        else:
            value = sum(map(mul, phases[phase], padded[index:index + width]))
        out.append(-32768 if value < -32768 else 32767 if value > 32767 else int(round(value)))
    return out
