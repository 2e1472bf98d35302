"""Fixtures: the two carrier fakes, an app that reaches them, a pool to buy into.

This folder has no ``__init__.py`` on purpose: a package named ``numbers`` would shadow the
standard library's. Its modules are imported by their own names (``fakes``).
"""

from __future__ import annotations

import pytest
from fakes import FOR_SALE, PUBLIC_URL, TelnyxFake, TwilioFake

from factories import make_pool, make_site, numbers


@pytest.fixture
def twilio_fake():
    fake = TwilioFake(FOR_SALE, voice_url=f"{PUBLIC_URL}/webhooks/twilio/voice",
                      status_url=f"{PUBLIC_URL}/webhooks/twilio/status").start()
    yield fake
    fake.stop()


@pytest.fixture
def telnyx_fake():
    fake = TelnyxFake(FOR_SALE).start()
    yield fake
    fake.stop()


@pytest.fixture
def carrier_app(make_app, twilio_fake, telnyx_fake):
    return make_app(DNI_TWILIO_API_URL=twilio_fake.url, DNI_TELNYX_API_URL=telnyx_fake.url,
                    DNI_PUBLIC_URL=PUBLIC_URL, DNI_OUTBOUND_ALLOW_HOSTS="127.0.0.1")


@pytest.fixture
def admin(carrier_app):
    from factories import ADMIN_TOKEN, AdminClient

    return AdminClient(carrier_app.test_client(), ADMIN_TOKEN)


@pytest.fixture
def pool(admin):
    site = make_site(admin)
    return make_pool(admin, site, numbers=numbers(2, start=101, area="650"))
