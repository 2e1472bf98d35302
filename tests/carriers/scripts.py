"""Scripted parties for the carrier simulators: callers (keys pressed and when, hang-up
time) and callee lines (answer after N s, busy, no answer, a voicemail that answers at
once, accept with 1, decline with 2 or silence).

Scripts are plain values, shared by the Twilio and the Telnyx simulator; each call keeps its
own cursor into a script's ``keys``. Every time is virtual seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Keys:
    """What a party types at one prompt: ``digits``, the first ``after`` seconds after the
    prompt finished playing, then one every ``gap`` seconds."""

    digits: str
    after: float = 1.0
    gap: float = 0.4


SILENCE = None  # a prompt the party lets pass without pressing anything


@dataclass(frozen=True)
class Caller:
    """The person calling a tracking number.

    ``keys`` answers the prompts the caller meets, in order (``SILENCE`` lets one pass; a
    prompt past the end of the list is silence too). The caller hangs up at ``hangup_at``
    (seconds after dialling) if given, and otherwise ``talk`` seconds after being connected
    (None: stays until the other side hangs up).
    """

    number: str = "+14158675309"
    keys: tuple[Keys | None, ...] = ()
    hangup_at: float | None = None
    talk: float | None = 60.0
    country: str = "US"
    state: str = "CA"
    city: str = "SAN FRANCISCO"
    zip: str = "94105"


@dataclass(frozen=True)
class Line:
    """A number the call is offered to.

    ``outcome`` is "answer", "busy", "no-answer" or "failed". An answering line picks up
    ``answer_after`` seconds after it starts ringing, answers whisper prompts with ``keys``
    (as a caller does), and hangs up ``talk`` seconds after answering if given (None: stays
    until the caller hangs up). A ``machine`` (voicemail) answers at once and never presses
    a key.
    """

    outcome: str = "answer"
    answer_after: float = 3.0
    keys: tuple[Keys | None, ...] = ()
    talk: float | None = None
    machine: bool = False

    @classmethod
    def answers(cls, after: float = 3.0, talk: float | None = None) -> Line:
        return cls("answer", after, talk=talk)

    @classmethod
    def accepts(cls, after: float = 3.0, key: str = "1", talk: float | None = None) -> Line:
        """Answers, and presses ``key`` when the whisper asks."""
        return cls("answer", after, keys=(Keys(key),), talk=talk)

    @classmethod
    def declines(cls, after: float = 3.0, key: str = "2") -> Line:
        return cls("answer", after, keys=(Keys(key),))

    @classmethod
    def silent(cls, after: float = 3.0) -> Line:
        """Answers and presses nothing."""
        return cls("answer", after, keys=(SILENCE,))

    @classmethod
    def hangs_up(cls, after: float = 3.0, talk: float = 2.0) -> Line:
        """Answers, then hangs up ``talk`` seconds later (during a whisper, say)."""
        return cls("answer", after, talk=talk)

    @classmethod
    def voicemail(cls, talk: float | None = None) -> Line:
        return cls("answer", 0.5, machine=True, talk=talk)

    @classmethod
    def busy(cls) -> Line:
        return cls("busy")

    @classmethod
    def no_answer(cls) -> Line:
        return cls("no-answer")

    @classmethod
    def fails(cls) -> Line:
        return cls("failed")


@dataclass
class Party:
    """One call's cursor into a script: which prompt comes next, and when it hangs up."""

    script: Caller | Line
    hangup_at: float | None = None  # absolute virtual time, once known
    prompts: int = 0
    pressed: list[str] = field(default_factory=list)

    def next_keys(self) -> Keys | None:
        if getattr(self.script, "machine", False):
            self.prompts += 1
            return SILENCE
        keys = self.script.keys
        answer = keys[self.prompts] if self.prompts < len(keys) else SILENCE
        self.prompts += 1
        return answer


@dataclass(frozen=True)
class Gathered:
    """What one prompt collected: ``digits``, how it ended ("digits": enough digits,
    "finish": the finish key, "timeout": silence after some digits, "silence": nothing),
    the finish key if pressed, and ``seconds`` from the end of the prompt."""

    digits: str
    how: str
    finished_on: str
    seconds: float


def gather(keys: Keys | None, *, first_timeout: float, digit_timeout: float,
           max_digits: int | None, finish_on: str = "", valid: str = "0123456789*#"
           ) -> Gathered:
    """Collect ``keys`` the way a carrier's DTMF gather does (shared by both simulators).

    The carrier waits ``first_timeout`` seconds for the first key and ``digit_timeout``
    between keys; a finish key ends the input and is not part of it; ``max_digits`` ends it
    as soon as that many are in. Keys outside ``valid`` are ignored.
    """
    if keys is None or not keys.digits or keys.after > first_timeout:
        return Gathered("", "silence", "", first_timeout)
    digits, at = "", keys.after
    for index, key in enumerate(keys.digits):
        if index and keys.gap > digit_timeout:
            return Gathered(digits, "timeout", "", at + digit_timeout)
        at = keys.after + index * keys.gap
        if finish_on and key in finish_on:
            return Gathered(digits, "finish", key, at)
        if key not in valid:
            continue
        digits += key
        if max_digits is not None and len(digits) >= max_digits:
            return Gathered(digits, "digits", "", at)
    return Gathered(digits, "timeout", "", at + digit_timeout)


def speech_seconds(text: str) -> float:
    """How long a text-to-speech prompt takes: about 150 words a minute, at least a second."""
    return max(1.0, math.ceil(len(text.split()) / 2.5 * 10) / 10)
