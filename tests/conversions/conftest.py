"""Fixtures: one running receiver per platform, with its clock frozen at samples.NOW."""

from __future__ import annotations

import pytest
import requests

from conversions.receivers import GA4Receiver, GoogleReceiver, MetaReceiver, MicrosoftReceiver
from conversions.samples import NOW


def _running(cls, **kw):
    receiver = cls(clock=lambda: NOW, **kw).start()
    yield receiver
    receiver.stop()


@pytest.fixture
def google_receiver():
    yield from _running(GoogleReceiver)


@pytest.fixture
def meta_receiver():
    yield from _running(MetaReceiver)


@pytest.fixture
def ga4_receiver():
    yield from _running(GA4Receiver)


@pytest.fixture
def microsoft_receiver():
    yield from _running(MicrosoftReceiver, goals={"Qualified call"})


@pytest.fixture
def session():
    with requests.Session() as s:
        yield s
