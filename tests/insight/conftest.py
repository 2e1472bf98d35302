"""Session fixtures for the insight tests: generated calls (see ``studio.py``)."""

from __future__ import annotations

import shutil

import pytest

from .studio import TOOLS, Call, Studio


@pytest.fixture(scope="session")
def studio(tmp_path_factory) -> Studio:
    for tool in TOOLS:
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing: run `make audio-tools` (Debian's espeak-ng and sox)")
    return Studio(tmp_path_factory.mktemp("insight-audio"))


@pytest.fixture(scope="session")
def appointment_call(studio) -> Call:
    """A caller asks for an appointment; the agent answers and books it."""
    return studio.call("appointment", [
        ("agent", 0.5, "Thank you for calling, how can I help you today"),
        ("caller", 3.8, "Hello, I would like to book an appointment for next week"),
        ("agent", 8.0, "Sure, we can schedule you for Tuesday morning"),
        ("caller", 11.5, "That is great, thank you very much"),
        ("agent", 14.5, "You are welcome, goodbye"),
    ], total=17.0)


@pytest.fixture(scope="session")
def one_sided_call(studio) -> Call:
    """Only the caller talks; the other leg holds line noise."""
    return studio.call("one-sided", [
        ("caller", 1.0, "Hello, is anybody there"),
        ("caller", 5.0, "I am calling about the advertisement I saw online"),
        ("caller", 10.0, "Hello, can you hear me"),
    ], total=14.0)


@pytest.fixture(scope="session")
def voicemail_call(studio) -> Call:
    """A machine answers: greeting, a 1 kHz beep; the caller says a word and hangs up."""
    tone = studio.tone(1000, 0.8)
    call = studio.call("voicemail", [
        ("agent", 0.6, "Sorry, nobody is available to take your call"),
        ("agent", 4.0, "Please leave a message after the beep"),
        ("caller", 9.0, "Hi, this is John, call me back"),
    ], total=12.0, extra=[("agent", 7.2, tone)])
    call.tone_at = 7.2
    return call
